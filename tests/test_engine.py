"""The engine: schedules, checkpoint atomicity, and resume that ends exactly where an uninterrupted run ends."""
import json

import pytest
import torch
from torch import nn

from selfadapt.config.sections import EngineSettings as EngineConfig
from selfadapt.data.augment import Augment
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine.rundir import RunDir, load_checkpoint
from selfadapt.engine.trainer import Trainer, learning_rate
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import EvalData, Evaluator
from selfadapt.evaluators.registry import build_evaluators
from selfadapt.objectives import LogitLoss, SelfAdaptiveTraining


def make_parts(seed=0):
    gen = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, (64, 1, 6, 6), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 3, (64,), generator=gen)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    objective = LogitLoss(SelfAdaptiveTraining(labels, 3, momentum=0.8, start_epoch=1))
    train = DeviceLoader(images, labels, batch_size=16, shuffle=True, seed=5, augment=Augment("crop-flip", 1))
    test = DeviceLoader(images, labels, batch_size=64)
    return model, objective, train, test, labels


class Interrupt(Evaluator):
    """Stops training like Ctrl-C after the given epoch's training step."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def __call__(self, model, objective, data, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt
        return {}


def train(run_path, epochs, config_extra=None, interrupt_at=None):
    model, objective, train_loader, test_loader, labels = make_parts()
    run = RunDir(run_path, {"engine": {"name": "engine-test", **(config_extra or {}), "epochs": epochs}}).create()
    config = EngineConfig(epochs=epochs, lr=0.05, progress=False)
    evaluators = [*build_evaluators(["accuracy", "memorisation"], {"memorisation_every": 1}), Interrupt(interrupt_at)]
    clean = labels.clone()
    clean[:8] = (clean[:8] + 1) % 3   # the loader's labels differ from these on 8 samples
    data = EvalData(test_loader, DeviceLoader(train_loader.images, labels, batch_size=64), clean, 3)
    try:
        trainer = Trainer(model, objective, train_loader, config, evaluators=evaluators, eval_data=data, run=run)
        return trainer, trainer.fit()
    finally:
        run.close()   # as train_run does: the directory is free for the next command


def test_learning_rate_schedules():
    cosine = EngineConfig(epochs=10, lr=0.1)
    assert learning_rate(cosine, 0) == pytest.approx(0.1)
    assert learning_rate(cosine, 5) == pytest.approx(0.05)
    steps = EngineConfig(epochs=100, lr=0.1, schedule="multistep", milestones=(75, 90), gamma=0.1)
    assert [learning_rate(steps, e) for e in (0, 74, 75, 90)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    straight, history = train(tmp_path / "straight", 4)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", 4, interrupt_at=2)
    # a line written after the last checkpoint (interruption mid-save) is dropped on resume
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "stale": True}) + "\n")
    resumed, resumed_history = train(tmp_path / "resumed", 4)
    assert resumed.start_epoch == 2
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(straight.objective.loss.targets, resumed.objective.loss.targets)
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in h]
    assert strip(history) == strip(resumed_history)
    assert [m["epoch"] for m in resumed.run.metrics()] == [0, 1, 2, 3]


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    trainer, _ = train(tmp_path / "run", 2)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 2
    assert set(state) >= {"model", "optimizer", "objective", "processes", "config"}
    assert set(state["processes"][0]) == {"train_loader", "rng"}
    assert "loss.store.values" in state["objective"]
    assert not list((tmp_path / "run").glob(".checkpoint.pt.*")), "no temporary file is left behind"


def test_finished_run_does_nothing_and_more_epochs_extend_it(tmp_path):
    train(tmp_path / "run", 2)
    trainer, history = train(tmp_path / "run", 2)
    assert trainer.start_epoch == 2 and len(history) == 2
    trainer, history = train(tmp_path / "run", 3)
    assert [m["epoch"] for m in history] == [0, 1, 2]


def test_a_different_run_in_the_same_directory_is_refused(tmp_path):
    train(tmp_path / "run", 1)
    before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(SelfAdaptError, match="holds a different run"):
        train(tmp_path / "run", 1, {"lr": 1.0})
    assert (tmp_path / "run" / "config.json").read_text() == before


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SelfAdaptError, match="is not a readable selfadapt checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(SelfAdaptError, match="not a selfadapt checkpoint"):
        load_checkpoint(path)


def test_metrics_have_the_promised_fields(tmp_path):
    _, history = train(tmp_path / "run", 2)
    assert set(history[0]) >= {"epoch", "lr", "train_loss", "train_accuracy_given", "train_accuracy_clean",
                               "memorised_share", "predicted_clean_share", "corrected_target_share",
                               "test_accuracy", "seconds", "eval_seconds"}


def test_a_checkpoint_from_another_run_is_refused(tmp_path):
    train(tmp_path / "a", 1, {"lr": 0.5})
    train(tmp_path / "b", 1)
    (tmp_path / "a" / "checkpoint.pt").replace(tmp_path / "b" / "checkpoint.pt")
    with pytest.raises(SelfAdaptError, match="comes from another run"):
        train(tmp_path / "b", 2)


def test_a_long_cpu_run_is_announced_once_after_a_few_steps(capsys, monkeypatch):
    import selfadapt.engine.trainer as engine

    model, objective, train_loader, _, _ = make_parts()   # 4 steps an epoch
    Trainer(model, objective, train_loader, EngineConfig(epochs=3, lr=0.05, progress=False)).fit()
    assert "warning" not in capsys.readouterr().err, "a short run is not announced"
    monkeypatch.setattr(engine, "LONG_CPU_RUN_SECONDS", 0.0)
    model, objective, train_loader, _, _ = make_parts()
    trainer = Trainer(model, objective, train_loader, EngineConfig(epochs=1000, lr=0.05, progress=False))
    trainer.train_epoch(0)
    trainer.train_epoch(1)
    err = capsys.readouterr().err
    assert err.count("selfadapt: warning: this run's training takes about") == 1
    assert "4 steps an epoch, 1000 epochs to go" in err
