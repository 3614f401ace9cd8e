"""Streaming from the memory-mapped cache: the in-memory loader's batches, order, augmentation,
shards and resume; bounded memory; errors and early stops of the prefetch thread."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from selfadapt.data.augment import Augment
from selfadapt.data.diskimages import DiskImages, take
from selfadapt.data.loader import DeviceLoader
from selfadapt.data.stream import StreamLoader, make_loader


@pytest.fixture
def mapped(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (103, 3, 12, 12), dtype=np.uint8)
    pixels.tofile(tmp_path / "images.u8")
    return DiskImages(tmp_path / "images.u8", pixels.shape), torch.from_numpy(pixels)


def batches(loader, epochs=2):
    return [(tuple(v.clone() for v in b.views), b.y.clone(), b.index.clone()) for _ in range(epochs) for b in loader]


def assert_same(a, b):
    assert len(a) == len(b)
    for (views_a, y_a, i_a), (views_b, y_b, i_b) in zip(a, b):
        assert torch.equal(i_a, i_b) and torch.equal(y_a, y_b)
        assert all(torch.equal(u, v) for u, v in zip(views_a, views_b))


@pytest.mark.parametrize("augment", ["crop-flip", "rrc-flip", "none"])
def test_streamed_batches_equal_the_in_memory_ones(mapped, augment):
    images, pixels = mapped
    labels = torch.arange(len(pixels)) % 7
    kwargs = dict(batch_size=16, shuffle=True, seed=3, augment=Augment(augment), views=2)
    assert_same(batches(StreamLoader(images, labels, **kwargs)), batches(DeviceLoader(pixels, labels, **kwargs)))


def test_shards_and_a_selected_subset_match(mapped):
    images, pixels = mapped
    rows = torch.tensor([5, 90, 3, 44, 44, 17, 60, 1, 2, 99, 100])
    labels = torch.arange(len(rows))
    for rank in range(3):
        kwargs = dict(batch_size=4, shuffle=True, seed=1, augment=Augment("flip"), shard=(rank, 3))
        assert_same(batches(StreamLoader(take(images, rows), labels, **kwargs)),
                    batches(DeviceLoader(pixels[rows], labels, **kwargs)))


def test_resume_from_a_state_dict_gives_the_same_batches(mapped):
    images, pixels = mapped
    labels = torch.zeros(len(pixels), dtype=torch.long)
    kwargs = dict(batch_size=10, shuffle=True, seed=7, augment=Augment("crop-flip"))
    uninterrupted = StreamLoader(images, labels, **kwargs)
    batches(uninterrupted, epochs=1)
    state = uninterrupted.state_dict()
    expected = batches(uninterrupted, epochs=1)
    resumed = StreamLoader(images, labels, **kwargs)
    resumed.load_state_dict(state)
    assert_same(batches(resumed, epochs=1), expected)
    in_memory = DeviceLoader(pixels, labels, **kwargs)
    in_memory.load_state_dict(state)
    assert_same(batches(in_memory, epochs=1), expected)


def test_breaking_off_an_epoch_stops_the_prefetch_thread(mapped):
    images, _ = mapped
    loader = StreamLoader(images, torch.arange(103), batch_size=2, prefetch=1)
    for _ in loader:
        break
    import threading
    assert not [t for t in threading.enumerate() if t.name != "MainThread" and "gather" in str(t._target)]


def test_an_error_while_gathering_reaches_the_training_loop(tmp_path):
    np.zeros((4, 1, 2, 2), np.uint8).tofile(tmp_path / "short.u8")
    loader = StreamLoader(DiskImages(tmp_path / "short.u8", (8, 1, 2, 2)), torch.arange(8), batch_size=8)
    with pytest.raises((ValueError, TypeError)):
        list(loader)  # the file holds half the rows it claims


def test_make_loader_picks_by_the_images(mapped):
    images, pixels = mapped
    assert type(make_loader(images, torch.arange(103), batch_size=4)) is StreamLoader
    assert type(make_loader(pixels, torch.arange(103), batch_size=4)) is DeviceLoader


def test_mapped_images_index_like_a_tensor(mapped):
    images, pixels = mapped
    assert torch.equal(images[5], pixels[5]) and torch.equal(images[torch.tensor(7)], pixels[7])
    assert torch.equal(images[[9, 2, 9]], pixels[[9, 2, 9]]) and torch.equal(images[-1], pixels[-1])
    mask = torch.arange(103) % 5 == 0
    assert torch.equal(images.subset(mask).load(), pixels[mask])
    assert images.shape == pixels.shape and images.nbytes == pixels.numel() and len(images.subset([1, 2])) == 2
    with pytest.raises(IndexError):
        images[[103]]


RSS_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    from selfadapt.data.diskimages import DiskImages
    from selfadapt.data.stream import StreamLoader
    for path, n in zip(sys.argv[1::2], sys.argv[2::2]):
        n = int(n)
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident size
        loader = StreamLoader(DiskImages(path, (n, 3, 64, 64)), torch.zeros(n, dtype=torch.long), batch_size=256,
                              shuffle=True, seed=0)
        total = sum(int(batch.views[0].shape[0]) for batch in loader)
        peak = max(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
        print(total, peak * 1024)
""")


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """A 393 MB decoded set read through once: the process's peak stays near a small set's."""
    args = []
    for n in (2_000, 32_000):
        with open(tmp_path / f"{n}.u8", "wb") as f:
            f.truncate(n * 3 * 64 * 64)  # sparse: its pages read as zeros
        args += [str(tmp_path / f"{n}.u8"), str(n)]
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, *args], capture_output=True, text=True, check=True)
    (small, small_peak), (large, large_peak) = [map(int, line.split()) for line in out.stdout.splitlines()]
    assert (small, large) == (2_000, 32_000)
    assert large_peak - small_peak < 60 * 2**20, (small_peak, large_peak)  # the set grew by 369 MB
