"""Selective classification metrics on plain arrays: thresholds, selective risk, AURC and E-AURC.

A *score* ranks samples for abstention: higher means less confident, abstained on first (the
abstain probability, ``1 - max softmax``, ``1 - g``). A sample is kept at threshold ``t`` when its
score is ``<= t``. ``errors`` is a boolean array, ``True`` where the prediction is wrong.
Coverages are in percent, as the papers write them.

Two ways to pick a threshold for a target coverage:

- :func:`fit_thresholds` (the honest protocol): on a validation split, applied to the test set with
  :func:`selective_risk`, which reports the test coverage actually reached;
- :func:`paper_protocol` (the original code's): shuffle the test outputs with seed 10, set the first
  2,000 aside, and bisect a threshold on the remaining samples themselves to within 0.3 points
  of the target coverage.

>>> import numpy as np
>>> scores = np.array([0.1, 0.2, 0.3, 0.9]); errors = np.array([False, False, False, True])
>>> round(aurc(scores, errors), 4), round(optimal_aurc(0.25), 4)
(0.0625, 0.0342)
"""
from __future__ import annotations

import math
import random

import numpy as np

from selfadapt.errors import SelfAdaptError

COVERAGES: tuple[float, ...] = (100, 99, 98, 97, 95, 90, 85, 80, 75, 70, 60, 50, 40, 30, 20, 10)
PAPER_SEED = 10            # random.seed(10); random.shuffle(...) in the original evaluate()
PAPER_HELD_OUT = 2000      # the original sets the first 2,000 shuffled test outputs aside
PAPER_TOLERANCE = 0.3      # bisection stops within 0.3 points of the target coverage


def check_coverages(coverages) -> list[float]:
    """The coverages as floats; one outside (0, 100] is a :class:`SelfAdaptError`.

    >>> check_coverages([100, 95])
    [100.0, 95.0]
    """
    out = [float(c) for c in coverages]
    bad = [c for c in out if not 0.0 < c <= 100.0]
    if bad or not out:
        raise SelfAdaptError(f"a coverage must lie in (0, 100] (percent), got {bad[0] if bad else 'none'}")
    return out


def coverage_name(coverage: float) -> str:
    """``95.0 -> '95'``, ``97.5 -> '97.5'`` (as metric names write it)."""
    return f"{coverage:g}"


def _as_arrays(scores, errors) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    errors = np.asarray(errors, dtype=bool).reshape(-1)
    if scores.shape != errors.shape:
        raise ValueError(f"scores and errors differ in length: {scores.size} and {errors.size}")
    return scores, errors


def _expected_cumulative_errors(scores: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """``E_i`` for i = 1..n: errors among the i most confident samples, in expectation over the
    orders of tied scores (within a tied group the cumulative count rises linearly)."""
    order = np.argsort(scores, kind="stable")
    s, e = scores[order], errors[order].astype(np.float64)
    n = s.size
    # group boundaries of equal scores
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], n]
    group_errors = np.add.reduceat(e, starts) if n else e
    before = np.r_[0.0, np.cumsum(group_errors)[:-1]]
    size = (ends - starts).astype(np.float64)
    group = np.repeat(np.arange(starts.size), ends - starts)
    position = np.arange(1, n + 1) - starts[group]   # 1..k inside its group
    return before[group] + group_errors[group] * position / size[group]


def risk_coverage_curve(scores, errors) -> tuple[np.ndarray, np.ndarray]:
    """Coverage ``i / n`` and selective risk ``E_i / i`` of the i most confident samples, i = 1..n.

    Ties in the score are handled by expectation over the orders of the tied samples (a
    threshold cannot split them; every order is equally justified).

    >>> cov, risk = risk_coverage_curve([0.5, 0.5], [True, False])
    >>> cov.tolist(), risk.tolist()
    ([0.5, 1.0], [0.5, 0.5])
    """
    scores, errors = _as_arrays(scores, errors)
    n = scores.size
    if n == 0:
        return np.empty(0), np.empty(0)
    i = np.arange(1, n + 1, dtype=np.float64)
    return i / n, _expected_cumulative_errors(scores, errors) / i


def aurc(scores, errors) -> float:
    """Area under the risk-coverage curve (Geifman et al., ICLR 2019): the mean over i = 1..n of the
    selective risk of the i most confident samples, ties in expectation (see :func:`risk_coverage_curve`).

    >>> aurc([0.1, 0.9], [False, True])
    0.25
    """
    _, risk = risk_coverage_curve(scores, errors)
    return float(risk.mean()) if risk.size else float("nan")


def optimal_aurc(error_rate: float) -> float:
    """The AURC of a perfect ranking at overall error ``r``: ``r + (1 - r) ln(1 - r)`` (Geifman et al.'s
    continuous approximation; 0 at r = 0 and 1 at r = 1).

    >>> optimal_aurc(0.0), optimal_aurc(1.0)
    (0.0, 1.0)
    """
    r = float(error_rate)
    return r if r >= 1.0 else r + (1.0 - r) * math.log1p(-r)


def eaurc(scores, errors) -> float:
    """Excess AURC: :func:`aurc` minus :func:`optimal_aurc` at the overall error rate."""
    scores, errors = _as_arrays(scores, errors)
    return aurc(scores, errors) - optimal_aurc(errors.mean()) if errors.size else float("nan")


def fit_thresholds(scores, coverages=COVERAGES) -> list[float]:
    """Per coverage c (percent), the threshold keeping a share c of ``scores`` (``score <= t``): the
    ``ceil(c n / 100)``-th smallest score; ``inf`` at 100 (keep everything, whatever the test scores).

    >>> fit_thresholds([0.4, 0.1, 0.3, 0.2], [100, 50, 10])
    [inf, 0.2, 0.1]
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    if scores.size == 0:
        raise SelfAdaptError("cannot fit coverage thresholds on an empty validation split")
    out = []
    for c in check_coverages(coverages):
        k = math.ceil(c * scores.size / 100.0 - 1e-9)
        out.append(math.inf if c >= 100.0 else float(scores[max(k, 1) - 1]))
    return out


def selective_risk(scores, errors, threshold: float) -> tuple[float, float]:
    """``(coverage, selective error)`` keeping ``score <= threshold``; the error is ``nan`` when
    nothing is kept.

    >>> selective_risk([0.1, 0.5, 0.9], [False, True, True], 0.5)
    (0.6666666666666666, 0.5)
    """
    scores, errors = _as_arrays(scores, errors)
    kept = scores <= threshold
    count = int(kept.sum())
    coverage = count / scores.size if scores.size else float("nan")
    return coverage, (float(errors[kept].mean()) if count else float("nan"))


def paper_order(n: int, seed: int = PAPER_SEED) -> np.ndarray:
    """The original's shuffle of n test outputs: ``random.seed(10); random.shuffle(list)``.

    >>> paper_order(5).tolist() == sorted(paper_order(5).tolist()) == [0, 1, 2, 3, 4]
    False
    """
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return np.asarray(order, dtype=np.int64)


def paper_bisection(scores, errors, coverages=COVERAGES, tolerance: float = PAPER_TOLERANCE,
                    max_steps: int = 200) -> list[tuple[float, float]]:
    """``(coverage, selective error)`` per target coverage, the threshold bisected on the same samples
    it is reported on until the coverage lies within ``tolerance`` points of the target: the
    original ``bisection_method`` step for step (thresholds start at 1, the upper bound doubles until
    the first coverage is reached and carries over). Where ties make the tolerance unreachable it
    stops after ``max_steps`` halvings (the original loops for ever).

    >>> paper_bisection([0.1, 0.2, 0.3, 0.4], [False, False, True, True], [100, 50])
    [(1.0, 0.5), (0.5, 0.0)]
    """
    scores, errors = _as_arrays(scores, errors)
    coverages = check_coverages(coverages)
    n = scores.size
    if n == 0:
        raise SelfAdaptError("the paper protocol needs at least one test sample")
    if scores.min() < 0:
        raise ValueError("the paper's bisection assumes scores >= 0")

    def passed(t):
        return int((scores <= t).sum()) / n * 100.0

    upper, steps = 1.0, 0
    while passed(upper) < coverages[0] and steps < 2000:
        upper *= 2.0
        steps += 1
    out, threshold = [], 1.0
    for coverage in coverages:
        lower = 0.0
        kept = passed(threshold)
        for _ in range(max_steps):
            if abs(kept - coverage) <= tolerance:
                break
            if kept > coverage:
                upper = min(threshold, upper)
                threshold = (threshold + lower) / 2.0
            else:
                lower = max(threshold, lower)
                threshold = (threshold + upper) / 2.0
            kept = passed(threshold)
        out.append(selective_risk(scores, errors, threshold))
    return out


def paper_protocol(scores, errors, coverages=COVERAGES, *, held_out: int = PAPER_HELD_OUT,
                   seed: int = PAPER_SEED) -> tuple[list[tuple[float, float]], int]:
    """The published tables' protocol: shuffle with ``seed``, set the first ``held_out`` samples
    aside (none when there are not more than twice as many samples), then :func:`paper_bisection`
    on the rest. Returns the per-coverage results and the number of samples they are reported on.
    """
    scores, errors = _as_arrays(scores, errors)
    order = paper_order(scores.size, seed)
    skip = held_out if scores.size > 2 * held_out else 0
    rest = order[skip:]
    return paper_bisection(scores[rest], errors[rest], coverages), int(rest.size)
