"""SAT in a user's LightningModule (selfadapt.integrations.lightning): the example runs and finds the
injected label errors, a resumed run ends where an uninterrupted one does, and two real DDP processes
(gloo, the DistributedSampler's padding included) train like one."""
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="needs the lightning extra: pip install 'selfadapt[lightning]'")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from selfadapt import IndexedDataset, SelfAdaptError, SelfAdaptiveTraining  # noqa: E402
from selfadapt.integrations.lightning import SATCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec")  # inside Lightning 2.6 with torch 2.13

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "lightning_sat.py"
example = runpy.run_path(str(EXAMPLE))

EPOCHS, SUBSET = 6, 301  # 301 samples: batches of 32 leave an uneven last batch, and 2 processes a padded one


class StopAfter(pl.Callback):
    """Ends fit after epoch ``epoch`` (0-based), as a killed job would, once its checkpoint is written."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def fit(tmp_path, *, stop_after=None, resume=False, restore_rng=True):
    """The example's model on SUBSET digits for EPOCHS epochs in one process, shuffled by the global RNG."""
    pl.seed_everything(1, verbose=False)
    data = example["make_data"](subset=SUBSET)
    sat = SATCallback(SelfAdaptiveTraining(data["y"], num_classes=10, start_epoch="auto", momentum="auto",
                                           epochs=EPOCHS), restore_rng=restore_rng)
    callbacks = [sat, pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)]
    if stop_after is not None:
        callbacks.append(StopAfter(stop_after))
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, callbacks=callbacks, logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    model = example["Classifier"](sat, epochs=EPOCHS)
    loader = DataLoader(IndexedDataset(TensorDataset(data["x"], data["y"])), batch_size=32, shuffle=True)
    trainer.fit(model, loader, ckpt_path=tmp_path / "last.ckpt" if resume else None)
    return sat, model


def assert_same_state(a: dict, b: dict, exact=True):
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key].double(), b[key].double(), rtol=0, atol=1e-5, msg=key)


@pytest.mark.slow
def test_resume_from_a_lightning_checkpoint_continues_exactly(tmp_path):
    straight, straight_model = fit(tmp_path / "straight")
    assert straight.sat.start_epoch is not None and straight.sat.updates >= 2, "SAT must have started and moved"
    interrupted, _ = fit(tmp_path / "resumed", stop_after=2)
    assert interrupted.history[-1]["epoch"] == 2
    resumed, resumed_model = fit(tmp_path / "resumed", resume=True)
    assert [h["epoch"] for h in resumed.history] == list(range(EPOCHS))
    assert_same_state(resumed.sat.state_dict(), straight.sat.state_dict())
    assert_same_state(resumed_model.state_dict(), straight_model.state_dict())
    # without the generators in the checkpoint, Lightning's shuffled order differs after a resume
    fit(tmp_path / "no-rng", stop_after=2, restore_rng=False)
    other, _ = fit(tmp_path / "no-rng", resume=True, restore_rng=False)
    assert not torch.equal(other.sat.targets, straight.sat.targets)


@pytest.mark.slow
def test_a_checkpoint_of_another_training_set_is_refused(tmp_path):
    fit(tmp_path, stop_after=0)
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]["SATCallback"]
    sat = SATCallback(SelfAdaptiveTraining(torch.zeros(10, dtype=torch.long), num_classes=10, epochs=5))
    with pytest.raises(SelfAdaptError, match="cover 301 samples, this training set has 10"):
        sat.load_state_dict(state)


def test_loss_outside_a_trainer_says_what_to_do():
    sat = SATCallback(SelfAdaptiveTraining(torch.tensor([0, 1]), num_classes=2, epochs=5))
    with pytest.raises(SelfAdaptError, match="Trainer\\(callbacks="):
        sat.loss(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([0]))


def run_example(tmp_path, name, *flags):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    out = tmp_path / f"{name}.pt"
    subprocess.run([sys.executable, str(EXAMPLE), "--epochs", str(EPOCHS), "--subset", str(SUBSET),
                    "--save", str(out), *flags], check=True, env=env, cwd=tmp_path, timeout=300,
                   stdout=subprocess.DEVNULL)
    return torch.load(out, weights_only=True)


@pytest.mark.slow
def test_two_ddp_processes_give_the_targets_of_one(tmp_path):
    """Lightning's own DDP launcher (real processes, gloo): 2 x batch 16 against 1 x batch 32, both
    ordered by the DistributedSampler (the one-process run with a world of one)."""
    one = run_example(tmp_path, "one", "--devices", "1", "--strategy", "ddp", "--batch-size", "32")
    two = run_example(tmp_path, "two", "--devices", "2", "--strategy", "ddp", "--batch-size", "16")
    assert one["sat_state"]["schedule"][0] > 0, "SAT must have started"
    assert_same_state(two["sat_state"], one["sat_state"], exact=False)
    assert (two["targets"] - one["targets"]).abs().max() < 1e-5
    assert abs(two["test_accuracy"] - one["test_accuracy"]) < 1e-6


@pytest.mark.slow
def test_the_example_finds_the_injected_label_errors():
    result = example["main"](verbose=False)
    assert 1 <= result["start_epoch"] < 30 and 0 < result["momentum"] <= 0.6
    assert result["test_accuracy"] > 0.9
    assert result["precision"] > 0.8 and result["recall"] > 0.8
