"""Batched augmentation and the device loader."""
import pytest
import torch

from selfadapt.data.augment import Augment, random_crop
from selfadapt.data.loader import DeviceLoader
from selfadapt.errors import SelfAdaptError


def test_random_crop_is_a_translation_with_zero_fill():
    images = torch.arange(1, 2 * 3 * 6 * 6 + 1, dtype=torch.int64).reshape(2, 3, 6, 6).to(torch.uint8)
    out = random_crop(images, 2, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(images, (2,) * 4)
    for b in range(2):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[b], padded[b, :, dy:dy + 6, dx:dx + 6])]
        assert matches, "each crop is one window of the zero-padded image"


def test_crop_offsets_cover_all_shifts_uniformly():
    images = torch.zeros(4000, 1, 5, 5, dtype=torch.uint8)
    images[:, :, 2, 2] = 255  # a single bright pixel: its new position reveals the shift
    out = random_crop(images, 1, torch.Generator().manual_seed(0))
    visible = out.flatten(1).argmax(1)
    counts = torch.bincount(visible, minlength=25).float()
    shifted = counts[counts > 0]
    assert len(shifted) == 9 and (shifted / 4000 - 1 / 9).abs().max() < 0.03


def test_flip_rate_and_content():
    images = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(2000, 1, 1, 1)
    out = Augment("flip")(images, torch.Generator().manual_seed(1))
    flipped = (out == images.flip(3)).flatten(1).all(1)
    same = (out == images).flatten(1).all(1)
    assert torch.all(flipped ^ same)
    assert abs(flipped.float().mean().item() - 0.5) < 0.05


def test_none_returns_input_and_unknown_kind_is_refused():
    images = torch.randint(0, 255, (3, 1, 4, 4), dtype=torch.uint8)
    assert torch.equal(Augment("none")(images, torch.Generator()), images)
    with pytest.raises(SelfAdaptError, match="unknown augmentation"):
        Augment("rotate")


def test_loader_yields_every_index_once_in_seeded_order():
    images = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1, 1)
    labels = torch.arange(10) % 3
    loader = DeviceLoader(images, labels, batch_size=4, shuffle=True, seed=7)
    seen = torch.cat([batch.index for batch in loader])
    assert sorted(seen.tolist()) == list(range(10))
    for (x,), y, index in loader:
        assert torch.equal(y, labels[index])
        assert torch.allclose(x.flatten(), index.float() / 255)
    again = DeviceLoader(images, labels, batch_size=4, shuffle=True, seed=7)
    assert torch.equal(torch.cat([batch.index for batch in again]), seen)


def test_loader_state_resumes_the_same_sequence():
    images = torch.randint(0, 255, (20, 1, 6, 6), dtype=torch.uint8)
    loader = DeviceLoader(images, torch.zeros(20, dtype=torch.long), batch_size=8, shuffle=True,
                          seed=1, augment=Augment("crop-flip", padding=2))
    list(loader)
    state = loader.state_dict()
    expected = [batch.x for batch in loader]
    loader.load_state_dict(state)
    for a, batch in zip(expected, loader):
        assert torch.equal(a, batch.x)


def test_views_are_independent_augmentations_of_the_same_samples():
    images = torch.randint(0, 255, (64, 1, 6, 6), dtype=torch.uint8)
    loader = DeviceLoader(images, torch.arange(64), batch_size=64, seed=2, augment=Augment("crop-flip", 2), views=2)
    (first, second), _, index = next(iter(loader))
    assert first.shape == second.shape == (64, 1, 6, 6) and torch.equal(index, torch.arange(64))
    assert not torch.equal(first, second), "each view draws its own crops and flips"
    per_view = [lambda x, g: x, lambda x, g: x.flip(3)]
    plain, flipped = next(iter(DeviceLoader(images, torch.arange(64), batch_size=64, augment=per_view))).views
    assert torch.equal(flipped, plain.flip(3))


@pytest.mark.parametrize("n,batch_size,world", [(10, 4, 2), (23, 8, 3), (9, 4, 2), (17, 8, 4), (16, 8, 2)])
def test_shards_split_every_global_batch_without_overlap(n, batch_size, world):
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    single = [b.index for b in DeviceLoader(images, torch.arange(n), batch_size=batch_size, shuffle=True, seed=4)]
    shards = [[b.index for b in DeviceLoader(images, torch.arange(n), batch_size=batch_size, shuffle=True, seed=4,
                                             shard=(rank, world))] for rank in range(world)]
    assert len({len(s) for s in shards}) == 1, "every process takes the same number of steps"
    steps = [torch.cat(parts) for parts in zip(*shards)]
    assert torch.equal(torch.cat(steps), torch.cat(single)), "the shards of a step are the global batch, in order"
    assert all(len(part) >= 1 and max(map(len, parts)) - min(map(len, parts)) <= 1
               for parts in zip(*shards) for part in parts)
    if len(single[-1]) >= world:
        assert [len(s) for s in steps] == [len(s) for s in single]
