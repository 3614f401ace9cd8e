"""The training step queues work and never waits for it: no .item(), no mask index, no host copy per step.

On a GPU each of those stalls the host once per step until the device has caught up. The checks run
on the CPU: :func:`forbid_host_sync` refuses what would synchronise on a GPU, and an epoch of the
engine runs with its inner loop (step, backward, optimiser, bookkeeping) inside it.
"""
import pytest
import torch

from selfadapt.config.sections import EngineSettings
from selfadapt.data.augment import Augment
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine.trainer import Trainer
from selfadapt.evaluators.base import EvalData
from selfadapt.evaluators.registry import build_evaluators
from selfadapt.models import build_model
from selfadapt.objectives.method import MethodContext
from selfadapt.objectives.registry import get_method
from selfadapt.targets import find_target_stores
from selfadapt.testing.host_sync import HostSyncError, count_host_syncs, forbid_host_sync


class GuardedLoader(DeviceLoader):
    """Yields batches with host syncs forbidden: the engine's code between two batches runs inside the guard."""

    def __iter__(self):
        with forbid_host_sync(self.device):
            yield from super().__iter__()


def one_epoch(method_name: str, options: dict):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 4, (96,), generator=gen)
    torch.manual_seed(0)
    model = build_model("cnn", num_classes=4, in_channels=3, image_size=8, width=4)
    method = get_method(method_name)
    objective = method.build(MethodContext(labels=labels, num_classes=4, epochs=1, model=model),
                             method.parse(options))
    train = GuardedLoader(images, labels, batch_size=32, shuffle=True, augment=Augment("crop-flip", 2))
    test = DeviceLoader(images, labels, batch_size=48)
    data = EvalData(test, test, None, 4)
    trainer = Trainer(model, objective, train, EngineSettings(epochs=1, progress=False),
                      evaluators=build_evaluators(["accuracy"], {}), eval_data=data)
    return trainer, trainer.fit()


@pytest.mark.parametrize("method, options", [("sat", {"sat_start_epoch": 0}), ("sat-sce", {"sat_start_epoch": 0}),
                                             ("ce", {}), ("trades", {"attack_steps": 2}),
                                             ("pgd-at", {"attack_steps": 2})])
def test_an_engine_epoch_never_waits_for_the_device_inside_its_loop(method, options):
    trainer, history = one_epoch(method, options)
    assert history[0]["train_loss"] > 0 and "test_accuracy" in history[0]
    for store in find_target_stores(trainer.objective).values():   # SAT's targets were updated in the guarded loop
        assert not torch.equal(store.values, torch.nn.functional.one_hot(trainer.objective.loss.given_labels, 4).float())


@pytest.mark.parametrize("name, step", [
    ("item", lambda x, m, i: x.sum().item()),
    ("bool", lambda x, m, i: bool(x.sum() > 0)),
    ("float", lambda x, m, i: float(x.sum())),
    ("tolist", lambda x, m, i: x.tolist()),
    ("mask index", lambda x, m, i: x[m]),               # the engine's old train-accuracy count
    ("mask assignment", lambda x, m, i: x.__setitem__(m, 0.0)),
    ("nonzero", lambda x, m, i: m.nonzero()),
    ("host copy", lambda x, m, i: torch.tensor(3.0, device=x.device)),  # the old SAT weight count
])
def test_the_guard_refuses_what_would_synchronise(name, step):
    x = torch.randn(6, 3)
    with pytest.raises(HostSyncError), forbid_host_sync():
        step(x, x[:, 0] > 0, torch.tensor([0, 2]))
    assert x.tolist() and torch.tensor(1.0).item() == 1.0   # everything is restored after the guard


def test_the_guard_lets_device_side_work_through():
    x, i = torch.randn(6, 3), torch.tensor([0, 2])
    with forbid_host_sync():
        x[i] = x[i] * 0.5                                   # index gather/scatter stays on the device
        count = ((x.argmax(1) == 1) & (x[:, 0] > 0)).sum()  # a mask product instead of a mask index
        weights = torch.stack([x.sum(), x.new_full((), 6.0)])
    assert count.dim() == 0 and weights.shape == (2,)
    assert count_host_syncs(lambda: 7) == (0, 7)             # nothing to count off CUDA
