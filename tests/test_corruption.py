"""Label and input corruptions: realised statistics, invariants, determinism, replay, CIFAR-N."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from selfadapt.data import corruption
from selfadapt.data.corruption import CORRUPTIONS, INPUT_CORRUPTIONS, LABEL_CORRUPTIONS, NoiseRecord, corrupt, replay
from selfadapt.data.human_labels import HumanLabels, find_human_labels_file, load_human_labels
from selfadapt.errors import SelfAdaptError

CIFAR_N = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar-n"
needs_cifar10n = pytest.mark.skipif(not (CIFAR_N / "CIFAR-10_human.pt").is_file(),
                                    reason=f"CIFAR-10N file absent from {CIFAR_N}")
needs_cifar100n = pytest.mark.skipif(not (CIFAR_N / "CIFAR-100_human.pt").is_file(),
                                     reason=f"CIFAR-100N file absent from {CIFAR_N}")


def balanced_labels(n: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).permutation(np.arange(n) % num_classes))


def blank(n: int) -> torch.Tensor:
    return torch.zeros(n, 1, 1, 1, dtype=torch.uint8)


def distinct_pixel_images(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, 8, 8) images whose 64 pixel values are distinct within each channel and whose
    channels are arranged independently, so a pixel permutation can be recovered exactly."""
    rng = np.random.default_rng(seed)
    x = np.stack([np.stack([rng.permutation(64) + 64 * c for c in range(3)]) for _ in range(n)])
    return torch.from_numpy(x.reshape(n, 3, 8, 8).astype(np.uint8))


def recovered_permutation(original: torch.Tensor, new: torch.Tensor) -> np.ndarray:
    """perm with new[:, j] == original[:, perm[j]] for every channel, or an AssertionError."""
    o, m = original.reshape(3, -1).numpy(), new.reshape(3, -1).numpy()
    position = np.argsort(o[0])
    perm = position[m[0] - o[0].min()]
    np.testing.assert_array_equal(m, o[:, perm])  # all channels moved together
    return perm


def test_kind_sets_partition_the_corruptions():
    assert LABEL_CORRUPTIONS | INPUT_CORRUPTIONS | {"none"} == set(CORRUPTIONS)
    assert not LABEL_CORRUPTIONS & INPUT_CORRUPTIONS


def test_symmetric_realised_rate_and_uniform_draw():
    n, c, r = 50_000, 10, 0.4
    labels = balanced_labels(n, c)
    before = labels.clone()
    _, noisy, rec = corrupt(blank(n), labels, kind="symmetric", rate=r, seed=1, num_classes=c)
    assert torch.equal(labels, before)
    assert len(rec.indices) == round(r * n)
    assert np.all(np.diff(rec.indices) > 0) and rec.indices.dtype == np.int64
    assert abs(rec.realised_error_rate - r * (c - 1) / c) < 0.005
    assert rec.realised_error_rate == pytest.approx((noisy != labels).float().mean().item())
    untouched = np.setdiff1d(np.arange(n), rec.indices)
    assert torch.equal(noisy[untouched], labels[untouched])
    counts = np.bincount(rec.new_labels[rec.indices], minlength=c)
    expected = len(rec.indices) / c
    assert ((counts - expected) ** 2 / expected).sum() < 30  # chi-square, 9 dof: p ~ 4e-4
    np.testing.assert_array_equal(rec.new_labels, noisy.numpy())
    np.testing.assert_array_equal(rec.original_labels, labels.numpy())


def test_symmetric_exclusive_is_exactly_rate_and_uniform_over_other_classes():
    n, c, r = 50_000, 10, 0.4
    labels = balanced_labels(n, c)
    _, noisy, rec = corrupt(blank(n), labels, kind="symmetric-exclusive", rate=r, seed=2, num_classes=c)
    assert len(rec.indices) == round(r * n)
    assert rec.realised_error_rate == r
    np.testing.assert_array_equal(np.flatnonzero((noisy != labels).numpy()), rec.indices)
    shift = (rec.new_labels[rec.indices] - rec.original_labels[rec.indices]) % c
    counts = np.bincount(shift, minlength=c)
    assert counts[0] == 0
    expected = len(rec.indices) / (c - 1)
    assert ((counts[1:] - expected) ** 2 / expected).sum() < 28  # chi-square, 8 dof


def test_count_rounds_rate_times_n():
    labels = balanced_labels(7, 2)
    _, _, rec = corrupt(blank(7), labels, kind="symmetric", rate=0.3, seed=0, num_classes=2)
    assert len(rec.indices) == 2  # round(2.1)


def test_asymmetric_cifar10_pairs_and_per_class_fraction():
    n, r = 20_000, 0.3
    labels = balanced_labels(n, 10)
    _, noisy, rec = corrupt(blank(n), labels, kind="asymmetric", rate=r, seed=3, num_classes=10,
                            dataset="cifar10")
    y, new = labels.numpy(), noisy.numpy()
    changed = new != y
    transitions = set(zip(y[changed].tolist(), new[changed].tolist()))
    assert transitions == {(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)}
    for c in range(10):
        share = changed[y == c].mean()
        assert share == (round(r * (y == c).sum()) / (y == c).sum() if c in (9, 2, 4, 3, 5) else 0.0)
    np.testing.assert_array_equal(rec.indices, np.flatnonzero(changed))


def test_asymmetric_cifar100_next_class_in_superclass_cyclic():
    rng = np.random.default_rng(0)
    fine_to_coarse = rng.permutation(np.arange(100) % 20)  # 20 superclasses x 5, scattered
    labels = balanced_labels(10_000, 100)
    coarse = torch.from_numpy(fine_to_coarse[labels.numpy()])
    _, noisy, rec = corrupt(blank(len(labels)), labels, kind="asymmetric", rate=0.5, seed=4,
                            num_classes=100, dataset="cifar100", coarse_labels=coarse)
    expected = {}
    for s in range(20):
        members = sorted(np.flatnonzero(fine_to_coarse == s).tolist())
        expected.update({c: members[(i + 1) % 5] for i, c in enumerate(members)})
    y, new = labels.numpy(), noisy.numpy()
    changed = new != y
    assert all(expected[a] == b for a, b in zip(y[changed], new[changed]))
    assert {(a, b) for a, b in zip(y[changed].tolist(), new[changed].tolist())} == set(expected.items())
    assert all(fine_to_coarse[a] == fine_to_coarse[b] for a, b in expected.items())
    for c in range(100):
        assert changed[y == c].sum() == round(0.5 * (y == c).sum())
    assert rec.realised_error_rate == pytest.approx(0.5, abs=0.002)
    assert rec.variant == "superclass"  # the default, recorded
    _, named, _ = corrupt(blank(len(labels)), labels, kind="asymmetric", rate=0.5, seed=4, num_classes=100,
                          dataset="cifar100", variant="superclass", coarse_labels=coarse)
    assert torch.equal(named, noisy)


def test_asymmetric_cifar100_index_blocks_next_class_in_block_of_five(tmp_path):
    rng = np.random.default_rng(1)
    sizes = 40 + (np.arange(100) * 7) % 23  # uneven classes: the fraction holds per class
    labels = torch.from_numpy(rng.permutation(np.repeat(np.arange(100), sizes)))
    coarse = torch.from_numpy(rng.permutation(np.arange(100) % 20)[labels.numpy()])  # ignored
    kwargs = dict(kind="asymmetric", rate=0.4, seed=5, num_classes=100, dataset="cifar100",
                  variant="index-blocks", coarse_labels=coarse)
    _, noisy, rec = corrupt(blank(len(labels)), labels, **kwargs)
    y, new = labels.numpy(), noisy.numpy()
    changed = new != y
    transitions = {(a, b) for a, b in zip(y[changed].tolist(), new[changed].tolist())}
    successor = {c: 5 * (c // 5) + (c + 1) % 5 for c in range(100)}
    assert transitions == set(successor.items())  # each class goes only to its block successor
    assert successor[0] == 1 and successor[4] == 0 and successor[97] == 98 and successor[99] == 95
    for c in range(100):
        assert changed[y == c].sum() == round(0.4 * sizes[c])
    np.testing.assert_array_equal(rec.indices, np.flatnonzero(changed))
    assert rec.variant == "index-blocks" and rec.summary()["variant"] == "index-blocks"
    assert rec.realised_error_rate == pytest.approx(0.4, abs=0.002)
    rec.save(tmp_path / "noise.npz")
    loaded = NoiseRecord.load(tmp_path / "noise.npz")
    assert loaded.variant == "index-blocks"
    assert torch.equal(replay(loaded, blank(len(labels)), labels, **kwargs)[1], noisy)
    assert torch.equal(replay(loaded, blank(len(labels)), labels)[1], noisy)
    with pytest.raises(SelfAdaptError, match="variant differs"):
        replay(loaded, blank(len(labels)), labels, **{**kwargs, "variant": "superclass"})


@pytest.mark.parametrize("kind,dataset,variant,message", [
    ("asymmetric", "cifar100", "blocks", "unknown asymmetric noise variant 'blocks' for cifar100; choose from "
                                         "superclass, index-blocks"),
    ("asymmetric", "cifar10", "index-blocks", "asymmetric noise on cifar10 has no variant"),
    ("asymmetric", "", "superclass", "asymmetric noise on unnamed data has no variant"),
    ("symmetric", "cifar100", "index-blocks", "symmetric noise has no variant"),
    ("none", "cifar100", "superclass", "none noise has no variant"),
    ("gaussian", "cifar100", "index-blocks", "gaussian noise has no variant"),
    ("human", "cifar100", "index-blocks", "human noise takes its variant from human_labels"),
])
def test_variant_for_other_kinds_or_data_sets_is_refused(kind, dataset, variant, message):
    labels = balanced_labels(200, 100)
    with pytest.raises(SelfAdaptError, match=re.escape(message)) as info:
        corrupt(blank(200), labels, kind=kind, rate=0.2, seed=0, num_classes=100, dataset=dataset,
                variant=variant, human_labels=labels.numpy())
    assert "\n" not in str(info.value)


def test_human_variant_may_repeat_the_labels_variant():
    clean = balanced_labels(300, 10)
    human = np.where(np.arange(300) % 4 == 0, (clean.numpy() + 1) % 10, clean.numpy()).view(HumanLabels)
    human.variant, human.clean_labels = "worse", clean.numpy()
    kwargs = dict(kind="human", rate=0.0, seed=0, num_classes=10, dataset="cifar10", human_labels=human)
    _, noisy, rec = corrupt(blank(300), clean, variant="worse", **kwargs)
    assert rec.variant == "worse" and torch.equal(noisy, corrupt(blank(300), clean, **kwargs)[1])
    with pytest.raises(SelfAdaptError, match="they carry 'worse', not 'aggre'"):
        corrupt(blank(300), clean, variant="aggre", **kwargs)


def test_index_blocks_needs_the_100_cifar100_classes():
    with pytest.raises(SelfAdaptError, match="cifar100 asymmetric noise needs 100 classes, got 10"):
        corrupt(blank(100), balanced_labels(100, 10), kind="asymmetric", rate=0.2, seed=0, num_classes=10,
                dataset="cifar100", variant="index-blocks")


def test_asymmetric_generic_shifts_by_one():
    labels = balanced_labels(6 * 509, 6)
    _, noisy, rec = corrupt(blank(6 * 509), labels, kind="asymmetric", rate=0.3, seed=5, num_classes=6)
    y, new = labels.numpy(), noisy.numpy()
    changed = new != y
    np.testing.assert_array_equal(new[changed], (y[changed] + 1) % 6)
    for c in range(6):
        assert changed[y == c].sum() == 153  # round(0.3 * 509 = 152.7) per source class


def test_asymmetric_input_errors():
    labels = balanced_labels(100, 100)
    with pytest.raises(SelfAdaptError, match="coarse"):
        corrupt(blank(100), labels, kind="asymmetric", rate=0.2, seed=0, num_classes=100, dataset="cifar100")
    bad_coarse = torch.zeros(100, dtype=torch.long)
    bad_coarse[:50] = 1
    labels2 = torch.zeros(100, dtype=torch.long)  # one fine class in two superclasses
    with pytest.raises(SelfAdaptError, match="inconsistent"):
        corrupt(blank(100), labels2, kind="asymmetric", rate=0.2, seed=0, num_classes=100, dataset="cifar100",
                coarse_labels=bad_coarse)
    with pytest.raises(SelfAdaptError, match="10 classes"):
        corrupt(blank(100), labels2, kind="asymmetric", rate=0.2, seed=0, num_classes=100, dataset="cifar10")


@pytest.mark.parametrize("kind", ["random_pixels", "shuffled_pixels"])
def test_pixel_permutations(kind):
    images = distinct_pixel_images(200)
    before = images.clone()
    labels = balanced_labels(200, 10)
    out, noisy, rec = corrupt(images, labels, kind=kind, rate=0.5, seed=6, num_classes=10)
    assert torch.equal(images, before) and torch.equal(noisy, labels)
    assert len(rec.indices) == 100 and rec.realised_error_rate == 0.5
    np.testing.assert_array_equal(rec.new_labels, rec.original_labels)
    untouched = np.setdiff1d(np.arange(200), rec.indices)
    assert torch.equal(out[untouched], images[untouched])
    perms = np.stack([recovered_permutation(images[i], out[i]) for i in rec.indices])
    assert not np.any(np.all(perms == np.arange(64), axis=1))
    distinct = len(np.unique(perms, axis=0))
    assert distinct == (1 if kind == "shuffled_pixels" else len(perms))


def test_gaussian_matches_given_and_measured_statistics():
    rng = np.random.default_rng(0)
    target_mean, target_std = np.array([0.49, 0.48, 0.45]), np.array([0.20, 0.19, 0.21])
    images = torch.from_numpy(rng.integers(0, 256, (400, 3, 16, 16), dtype=np.uint8))
    labels = balanced_labels(400, 10)
    out, noisy, rec = corrupt(images, labels, kind="gaussian", rate=0.5, seed=7, num_classes=10,
                              mean=tuple(target_mean), std=tuple(target_std))
    assert torch.equal(noisy, labels) and len(rec.indices) == 200
    x = out[rec.indices].numpy() / 255.0
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), target_mean, atol=0.005)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), target_std, atol=0.01)
    untouched = np.setdiff1d(np.arange(400), rec.indices)
    assert torch.equal(out[untouched], images[untouched])
    # default: the given images' own per-channel statistics
    own = np.stack([rng.normal(m, s, (300, 16, 16)) for m, s in ((0.3, 0.05), (0.5, 0.1), (0.6, 0.1))], 1)  # < 0.01% clipped
    images = torch.from_numpy(np.rint(np.clip(own, 0, 1) * 255).astype(np.uint8))
    out, _, rec = corrupt(images, balanced_labels(300, 10), kind="gaussian", rate=1.0, seed=8, num_classes=10)
    x, ref = out.numpy() / 255.0, images.numpy() / 255.0
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), ref.mean(axis=(0, 2, 3)), atol=0.003)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), ref.std(axis=(0, 2, 3)), atol=0.003)
    with pytest.raises(SelfAdaptError, match=r"\[0, 1\] scale"):
        corrupt(images, balanced_labels(300, 10), kind="gaussian", rate=0.5, seed=8, num_classes=10,
                mean=(125.3, 123.0, 113.9), std=(0.2, 0.2, 0.2))
    # the default equals the dataset statistics passed explicitly (one measurement for both)
    explicit = corrupt(images, balanced_labels(300, 10), kind="gaussian", rate=1.0, seed=8, num_classes=10,
                       mean=ref.mean(axis=(0, 2, 3)).round(6), std=ref.std(axis=(0, 2, 3)).round(6))[0]
    assert torch.equal(explicit, out)
    empty, _, rec = corrupt(images[:0], balanced_labels(0, 10), kind="gaussian", rate=0.5, seed=8, num_classes=10)
    assert empty.shape == (0, 3, 16, 16) and len(rec.indices) == 0


@pytest.mark.parametrize("kind", [k for k in CORRUPTIONS if k != "human"])
def test_determinism_save_load_and_replay(kind, tmp_path):
    images, labels = distinct_pixel_images(60), balanced_labels(60, 10)
    kwargs = dict(kind=kind, rate=0.4, num_classes=10, dataset="cifar10")
    out1, y1, rec1 = corrupt(images, labels, seed=11, **kwargs)
    out2, y2, rec2 = corrupt(images, labels, seed=11, **kwargs)
    assert torch.equal(out1, out2) and torch.equal(y1, y2)
    np.testing.assert_array_equal(rec1.indices, rec2.indices)
    out3, y3, _ = corrupt(images, labels, seed=12, **kwargs)
    changed_anything = kind != "none"
    assert (not torch.equal(out1, out3) or not torch.equal(y1, y3)) == changed_anything
    rec1.save(tmp_path / "noise.npz")
    loaded = NoiseRecord.load(tmp_path / "noise.npz")
    for field in ("kind", "rate", "seed", "variant", "digest"):
        assert getattr(loaded, field) == getattr(rec1, field)
    for field in ("indices", "original_labels", "new_labels"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(rec1, field))
        assert getattr(loaded, field).dtype == np.int64
    assert loaded.summary() == rec1.summary()
    out4, y4 = replay(loaded, images, labels, seed=11, **kwargs)
    assert torch.equal(out4, out1) and torch.equal(y4, y1)
    with pytest.raises(SelfAdaptError, match="does not belong"):
        replay(loaded, images, (labels + 1) % 10)


def test_none_and_zero_rate_change_nothing():
    images, labels = distinct_pixel_images(20), balanced_labels(20, 10)
    for kind, rate in (("none", 0.7), ("symmetric", 0.0), ("gaussian", 0.0)):
        out, y, rec = corrupt(images, labels, kind=kind, rate=rate, seed=0, num_classes=10)
        assert torch.equal(out, images) and torch.equal(y, labels)
        assert out.data_ptr() != images.data_ptr() and y.data_ptr() != labels.data_ptr()
        assert len(rec.indices) == 0 and rec.realised_error_rate == 0.0 and rec.rate == 0.0


def test_replay_detects_different_images_or_parameters():
    images, labels = distinct_pixel_images(50), balanced_labels(50, 10)
    _, _, rec = corrupt(images, labels, kind="gaussian", rate=0.4, seed=3, num_classes=10, mean=0.5, std=0.2)
    with pytest.raises(SelfAdaptError, match="differ"):
        replay(rec, images, labels, mean=0.4, std=0.2)
    with pytest.raises(SelfAdaptError, match="seed differs"):
        replay(rec, images, labels, seed=4, mean=0.5, std=0.2)
    _, _, rec = corrupt(images, labels, kind="random_pixels", rate=0.4, seed=3, num_classes=10)
    with pytest.raises(SelfAdaptError, match="differ"):
        replay(rec, distinct_pixel_images(50, seed=1), labels)


def test_summary_is_json_able():
    import json
    _, _, rec = corrupt(blank(100), balanced_labels(100, 10), kind="symmetric", rate=0.25, seed=0, num_classes=10)
    s = json.loads(json.dumps(rec.summary()))
    assert s["kind"] == "symmetric" and s["rate"] == 0.25 and s["seed"] == 0 and s["variant"] is None
    assert s["corrupted"] == 25 and s["realised_error_rate"] == rec.realised_error_rate


def test_corrupt_record_file_raises(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz at all")
    with pytest.raises(SelfAdaptError, match="corrupt"):
        NoiseRecord.load(bad)
    partial = tmp_path / "partial.npz"
    with open(partial, "wb") as f:
        np.savez(f, kind=np.str_("symmetric"), rate=0.1)
    with pytest.raises(SelfAdaptError, match="missing"):
        NoiseRecord.load(partial)
    with open(partial, "wb") as f:  # an object array needs pickle: refused
        np.savez(f, **{k: np.array([{"a": 1}], dtype=object) for k in corruption._FIELDS})
    with pytest.raises(SelfAdaptError, match="corrupt"):
        NoiseRecord.load(partial)
    with pytest.raises(SelfAdaptError, match="not found"):
        NoiseRecord.load(tmp_path / "absent.npz")


@pytest.mark.parametrize("rate", [1.5, -0.1, float("nan")])
def test_rate_out_of_range(rate):
    with pytest.raises(SelfAdaptError, match="rate"):
        corrupt(blank(10), balanced_labels(10, 2), kind="symmetric", rate=rate, seed=0, num_classes=2)


def test_bad_input():
    labels = balanced_labels(10, 2)
    with pytest.raises(SelfAdaptError, match="unknown corruption"):
        corrupt(blank(10), labels, kind="salt", rate=0.1, seed=0, num_classes=2)
    with pytest.raises(SelfAdaptError, match="seed"):
        corrupt(blank(10), labels, kind="symmetric", rate=0.1, seed=-1, num_classes=2)
    with pytest.raises(SelfAdaptError, match="labels must lie"):
        corrupt(blank(10), labels + 5, kind="symmetric", rate=0.1, seed=0, num_classes=2)
    with pytest.raises(SelfAdaptError, match="9 images but 10 labels"):
        corrupt(blank(9), labels, kind="symmetric", rate=0.1, seed=0, num_classes=2)
    with pytest.raises(SelfAdaptError, match="uint8"):
        corrupt(blank(10).float(), labels, kind="gaussian", rate=0.1, seed=0, num_classes=2)
    with pytest.raises(SelfAdaptError, match="only for cifar10 and cifar100"):
        corrupt(blank(10), labels, kind="human", rate=0.0, seed=0, num_classes=2, dataset="svhn",
                human_labels=labels.numpy())
    with pytest.raises(SelfAdaptError, match="needs human_labels"):
        corrupt(blank(10), labels, kind="human", rate=0.0, seed=0, num_classes=10, dataset="cifar10")
    with pytest.raises(SelfAdaptError, match="only for cifar10 and cifar100"):
        find_human_labels_file("mnist", ".")


def test_human_with_plain_array_checks_alignment_heuristically():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, 2000)
    human = np.where(rng.random(2000) < 0.3, rng.integers(0, 10, 2000), clean)
    labels = torch.from_numpy(clean)
    _, noisy, rec = corrupt(blank(2000), labels, kind="human", rate=0.9, seed=0, num_classes=10,
                            dataset="cifar10", human_labels=human)
    np.testing.assert_array_equal(noisy.numpy(), human)
    assert rec.rate == rec.realised_error_rate == np.mean(human != clean) and rec.variant is None
    np.testing.assert_array_equal(rec.indices, np.flatnonzero(human != clean))
    with pytest.raises(SelfAdaptError, match="not aligned"):
        corrupt(blank(2000), torch.from_numpy(rng.permutation(clean)), kind="human", rate=0.0, seed=0,
                num_classes=10, dataset="cifar10", human_labels=human)


def test_find_human_labels_file(tmp_path):
    # only data_dir and data_dir/cifar-n: never a ../shared folder beside the repository
    with pytest.raises(SelfAdaptError, match="put the CIFAR-N file in") as info:
        find_human_labels_file("cifar10", tmp_path)
    assert "\n" not in str(info.value) and "shared" not in str(info.value)
    (tmp_path / "cifar-n").mkdir()
    (tmp_path / "cifar-n" / "CIFAR-100_human.pt").write_bytes(b"")
    assert find_human_labels_file("CIFAR100", tmp_path) == tmp_path / "cifar-n" / "CIFAR-100_human.pt"
    (tmp_path / "CIFAR-100_human.pt").write_bytes(b"")
    assert find_human_labels_file("cifar100", tmp_path) == tmp_path / "CIFAR-100_human.pt"


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_cifar_n_file_is_refused(tmp_path):
    marker = tmp_path / "executed"
    torch.save({"clean_label": _Exploit(marker), "worse_label": np.zeros(3)}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"clean_label": _Exploit(marker)}, f, protocol=2)
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(SelfAdaptError, match="not loaded"):
            load_human_labels(tmp_path / name, variant="worse")
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 20)
    with pytest.raises(SelfAdaptError, match="junk.pt"):
        load_human_labels(tmp_path / "junk.pt", variant="worse")
    with pytest.raises(SelfAdaptError, match="not found"):
        load_human_labels(tmp_path / "absent.pt", variant="worse")
    torch.save({"clean_label": np.zeros(5, np.int64)}, tmp_path / "other.pt")
    with pytest.raises(SelfAdaptError, match="not a CIFAR-N label file"):
        load_human_labels(tmp_path / "other.pt", variant="worse")


def test_cifar_n_file_of_int32_arrays_and_numpy_scalars_is_read(tmp_path):
    clean = np.arange(12, dtype=np.int32) % 4
    torch.save({"clean_label": clean, "noisy_label": (clean + 1) % 4, "count": np.int64(12)}, tmp_path / "c.pt")
    noisy = load_human_labels(tmp_path / "c.pt", variant="noisy")
    assert noisy.dtype == np.int64 and noisy.variant == "noisy"
    np.testing.assert_array_equal(noisy, (clean + 1) % 4)
    np.testing.assert_array_equal(noisy.clean_labels, clean)


@needs_cifar10n
def test_cifar10n_real_noise_levels_and_alignment():
    path = find_human_labels_file("cifar10", CIFAR_N.parent)  # the data folder, passed explicitly
    assert path == CIFAR_N / "CIFAR-10_human.pt"
    clean = load_human_labels(path, variant="clean")
    assert clean.shape == (50_000,) and clean.dtype == np.int64
    canonical = CIFAR_N.parent / "cifar10-canonical-labels.npz"
    if canonical.is_file():
        np.testing.assert_array_equal(np.load(canonical)["train"], np.asarray(clean))
    labels = torch.from_numpy(np.asarray(clean).copy())
    images = blank(50_000)
    expected = {"worse": (0.40, 0.01), "aggre": (0.09, 0.005), "random1": (0.17, 0.01)}
    for variant, (rate, tol) in expected.items():
        human = load_human_labels(path, variant=variant)
        _, noisy, rec = corrupt(images, labels, kind="human", rate=0.0, seed=0, num_classes=10,
                                dataset="cifar10", human_labels=human)
        assert rec.variant == variant and rec.rate == rec.realised_error_rate
        assert abs(rec.realised_error_rate - rate) < tol, (variant, rec.realised_error_rate)
        np.testing.assert_array_equal(noisy.numpy(), np.asarray(human))
    # a subset in another order is aligned through source_index
    worse = load_human_labels(path, variant="worse")
    subset = torch.from_numpy(np.random.default_rng(0).choice(50_000, 3_000, replace=False))
    _, noisy, rec = corrupt(blank(3_000), labels[subset], kind="human", rate=0.0, seed=0, num_classes=10,
                            dataset="cifar10", source_index=subset, human_labels=worse)
    np.testing.assert_array_equal(noisy.numpy(), np.asarray(worse)[subset.numpy()])
    with pytest.raises(SelfAdaptError, match="not aligned"):  # exact check, even on a tiny subset
        corrupt(blank(20), labels[subset[:20]], kind="human", rate=0.0, seed=0, num_classes=10,
                dataset="cifar10", human_labels=worse)
    with pytest.raises(SelfAdaptError, match="choose from"):
        load_human_labels(path, variant="noisy")


@needs_cifar100n
def test_cifar100n_noisy_rate():
    path = find_human_labels_file("cifar100", CIFAR_N)
    assert path == CIFAR_N / "CIFAR-100_human.pt"
    labels = torch.from_numpy(np.asarray(load_human_labels(path, variant="clean")).copy())
    noisy_labels = load_human_labels(path, variant="noisy")
    _, noisy, rec = corrupt(blank(50_000), labels, kind="human", rate=0.0, seed=0, num_classes=100,
                            dataset="cifar100", human_labels=noisy_labels)
    assert rec.variant == "noisy"
    assert abs(rec.realised_error_rate - 0.40) < 0.01
    with pytest.raises(SelfAdaptError, match="do not fit"):
        corrupt(blank(50_000), labels % 10, kind="human", rate=0.0, seed=0, num_classes=10,
                dataset="cifar10", human_labels=noisy_labels)
