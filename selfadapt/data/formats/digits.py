"""``digits``: scikit-learn's bundled 1,797 real 8x8 digits (no files needed), split 1,297 / 500."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from selfadapt.data.types import DataFormat, Dataset, LoadOptions, image_set, with_stats

DIGITS_TEST_SIZE = 500  # digits: 1297 train / 500 test, stratified, numpy RandomState(0)
DIGIT_CLASSES = [str(d) for d in range(10)]


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """The fixed split of scikit-learn's 1797 digits: (train rows, test rows), each ascending.

    Stratified: every class gives ``DIGITS_TEST_SIZE / 1797`` of its images to the test set
    (largest remainders round up), drawn with ``numpy.random.RandomState(0)``, whose stream numpy
    keeps fixed across versions. ``load_dataset("digits").train`` row ``i`` is
    ``load_digits()`` row ``digits_split()[0][i]``.

    Example
    -------
    >>> train_rows, test_rows = digits_split()
    >>> len(train_rows), len(test_rows)
    (1297, 500)
    """
    from sklearn.datasets import load_digits

    return _stratified_split(load_digits().target)


def _stratified_split(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, counts = np.unique(target, return_counts=True)
    exact = counts * DIGITS_TEST_SIZE / len(target)
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:DIGITS_TEST_SIZE - quota.sum()]] += 1
    rng = np.random.RandomState(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(target == c))[:q] for c, q in zip(classes, quota)])
    is_test = np.zeros(len(target), bool)
    is_test[test] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _load_digits(root: Path, options: LoadOptions) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)[:, None]  # values 0..16
    target = digits.target
    train_rows, test_rows = _stratified_split(target)
    train, test = image_set(pixels[train_rows], target[train_rows]), image_set(pixels[test_rows], target[test_rows])
    return with_stats("digits", train, test, list(DIGIT_CLASSES))


FORMATS = [DataFormat("digits", "scikit-learn's 1,797 8x8 digits (bundled, no files needed)", _load_digits)]
