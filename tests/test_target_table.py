"""SAT's N x C target table: built at about its own size (no int64 one-hot, no float copy, no clone),
in the dtype asked for (sat_table_dtype), updated in float32 and rounded once."""
import gc
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from selfadapt.objectives import MethodContext, SelfAdaptiveTraining, build_objective
from selfadapt.targets import TargetStore

CLEAR_REFS = Path("/proc/self/clear_refs")


def _kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def construction_peak(build) -> tuple[object, int]:
    """What ``build()`` returns and the most resident memory it added while running (the kernel's
    high-water mark VmHWM, reset through /proc/self/clear_refs just before)."""
    gc.collect()
    CLEAR_REFS.write_text("5")
    before = _kib("VmRSS")
    built = build()
    return built, _kib("VmHWM") - before


@pytest.mark.skipif(not CLEAR_REFS.exists(), reason="needs Linux's /proc/self/clear_refs to reset the peak")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_table_is_built_within_a_tenth_of_its_size(dtype):
    labels = torch.randint(0, 500, (100_000,), generator=torch.Generator().manual_seed(0))
    store, peak = construction_peak(lambda: TargetStore.one_hot(labels, 500, 0.9, dtype=dtype))
    size = store.values.numel() * store.values.element_size()
    assert store.values.dtype == dtype and peak <= 1.1 * size, f"peak {peak / size:.2f} x the table"
    del store
    sat, peak = construction_peak(lambda: SelfAdaptiveTraining(labels, 500, momentum="auto", start_epoch="auto",
                                                               epochs=10, dtype=dtype))
    assert peak <= 1.1 * size, f"SAT's construction peaked at {peak / size:.2f} x its table"
    _, old = construction_peak(lambda: F.one_hot(labels, 500).to(dtype).clone())  # what it did before
    assert old > 2.9 * size


def test_one_hot_rows_equal_torch_one_hot_and_unlabelled_rows_are_zero():
    labels = torch.randint(0, 7, (1000,), generator=torch.Generator().manual_seed(1))
    labels[::10] = -1
    values = TargetStore.one_hot(labels, 7, 0.5, rows=64).values
    expected = F.one_hot(labels.clamp_min(0), 7).float() * (labels >= 0)[:, None]
    assert torch.equal(values, expected)
    with pytest.raises(ValueError, match=r"labels must lie in \[-1, 7\)"):
        TargetStore.one_hot(torch.tensor([0, 7]), 7, 0.5)


def test_a_half_precision_table_is_updated_in_float32_and_rounded_once():
    store = TargetStore.one_hot(torch.tensor([0, 1]), 3, 0.9, dtype=torch.bfloat16)
    prediction = torch.tensor([[0.2, 0.3, 0.5]])
    store.update(torch.tensor([0]), prediction)
    expected = (0.9 * torch.tensor([[1.0, 0.0, 0.0]]) + 0.1 * prediction).to(torch.bfloat16)
    assert torch.equal(store.values[:1], expected) and torch.equal(store.values[1], torch.tensor([0.0, 1, 0]).bfloat16())


@pytest.mark.parametrize("name,dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16),
                                        ("float16", torch.float16)])
def test_the_table_dtype_is_a_sat_option(name, dtype):
    context = MethodContext(labels=torch.tensor([0, 1, 2, 1]), num_classes=3, epochs=5)
    for method in ("sat", "sat-sce"):
        objective = build_objective(method, context, {"sat_table_dtype": name, "sat_start_epoch": 0})
        assert objective.loss.store.values.dtype == dtype
        logits = torch.randn(2, 3, requires_grad=True)
        objective.loss(logits, torch.tensor([0, 1]), torch.tensor([0, 1]), 0).backward()
        assert logits.grad is not None and objective.loss.targets.dtype == dtype
