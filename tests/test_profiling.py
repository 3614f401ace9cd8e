"""--profile: every epoch's wall time split into exclusive phases that add up to it, in profile.json."""
import json

import pytest
import torch
from torch import nn

from selfadapt.config.run import RunConfig, differing_settings
from selfadapt.config.sections import EngineSettings
from selfadapt.data.augment import Augment
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine.profiling import PHASES, Profiler
from selfadapt.engine.rundir import RunDir
from selfadapt.engine.trainer import Trainer
from selfadapt.evaluators.base import EvalData
from selfadapt.evaluators.registry import build_evaluators
from selfadapt.objectives import LogitLoss, SelfAdaptiveTraining


def fit(tmp_path, profile, epochs=3):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (80, 1, 6, 6), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 3, (80,), generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 3))
    objective = LogitLoss(SelfAdaptiveTraining(labels, 3, momentum=0.9, start_epoch=1))
    train = DeviceLoader(images, labels, batch_size=16, shuffle=True, augment=Augment("crop-flip", 1))
    test = DeviceLoader(images, labels, batch_size=40)
    run = RunDir(tmp_path, {"engine": {"epochs": epochs}}).create()
    trainer = Trainer(model, objective, train, EngineSettings(epochs=epochs, progress=False, profile=profile),
                      evaluators=build_evaluators(["accuracy"], {}), eval_data=EvalData(test, test, None, 3), run=run)
    return trainer, trainer.fit()


def test_profile_phases_add_up_to_each_epoch_and_are_written(tmp_path, capsys):
    trainer, history = fit(tmp_path, profile=True)
    report = json.loads((tmp_path / "profile.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [0, 1, 2]
    for entry, record in zip(report["epochs"], history):
        assert set(entry["phases"]) == set(PHASES)
        assert entry["steps"] == len(trainer.train_loader) == 5
        assert sum(entry["phases"].values()) + entry["other"] == pytest.approx(entry["seconds"], rel=1e-9)
        assert min(entry["phases"].values()) >= 0 and entry["other"] >= 0
        for phase in ("data", "forward_loss", "backward", "optimizer", "evaluation", "checkpoint"):
            assert entry["phases"][phase] > 0, phase
        # the profile spans the training, the evaluators and the checkpoint of the epoch's record
        assert entry["seconds"] >= record["seconds"] + entry["phases"]["checkpoint"]
        assert entry["phases"]["evaluation"] <= record["seconds"] - record["train_seconds"]
    # SAT trains with plain cross-entropy before its start epoch: no target update in epoch 0
    assert report["epochs"][0]["phases"]["target_update"] == 0
    assert report["epochs"][1]["phases"]["target_update"] > 0
    assert report["steady"]["epochs"] == [1, 2]
    assert sum(report["steady"]["share"].values()) == pytest.approx(1.0)
    assert report["total"]["seconds"] == pytest.approx(sum(e["seconds"] for e in report["epochs"]))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("profile of epochs 1-2") and "target update" in line and str(tmp_path) in line


def test_without_profile_nothing_is_timed_or_instrumented(tmp_path, capsys):
    trainer, history = fit(tmp_path, profile=False, epochs=1)
    assert not (tmp_path / "profile.json").exists()
    assert trainer.profiler.epochs == [] and "update" not in vars(trainer.objective.loss.store)
    assert "profile" not in capsys.readouterr().out


def test_profiling_a_run_may_be_switched_on_when_it_resumes():
    a = RunConfig.from_flat({"dataset": "digits", "model": "mlp", "method": "ce"}).to_dict()
    b = RunConfig.from_flat({"dataset": "digits", "model": "mlp", "method": "ce", "profile": True}).to_dict()
    assert differing_settings(a, b) == []


def test_a_target_update_nested_in_forward_is_charged_to_itself_only():
    profiler = Profiler(torch.device("cpu"))
    store = SelfAdaptiveTraining(torch.tensor([0, 1, 1]), 2, momentum=0.9, start_epoch=0).store
    profiler.instrument(store)
    profiler.begin_epoch(0)
    with profiler.phase("forward_loss"):
        store.update(torch.tensor([0, 2]), torch.tensor([[0.2, 0.8], [0.6, 0.4]]))
    entry = profiler.end_epoch()
    assert entry["phases"]["target_update"] > 0 and entry["phases"]["forward_loss"] > 0
    assert torch.allclose(store.values, torch.tensor([[0.92, 0.08], [0.0, 1.0], [0.06, 0.94]]))
    assert store.update(torch.tensor([1]), torch.tensor([[1.0, 0.0]])).shape == (1, 2)  # between epochs: plain update
