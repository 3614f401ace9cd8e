"""SAT in your own LightningModule: train through noisy labels and find the wrong ones.

Real data (scikit-learn's 1,797 8x8 digits: 1,297 to train, 500 to test), 30% of the training labels
replaced by a different class, a small MLP, 30 epochs. SAT's start epoch and momentum are
automatic. Prints the test accuracy and how well the corrected targets flag the wrong labels.

    python examples/lightning_sat.py                          # one process, a few seconds on a CPU
    python examples/lightning_sat.py --out runs/lsat          # checkpoints; run it again to resume
    python examples/lightning_sat.py --devices 2 --strategy ddp   # two processes (gloo on the CPU)

Needs ``pip install 'selfadapt[lightning]'``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from selfadapt import IndexedDataset, SelfAdaptiveTraining
from selfadapt.integrations.lightning import SATCallback


def make_data(noise_rate: float = 0.3, seed: int = 0, subset: int | None = None) -> dict:
    """Digits as float features in [0, 1]; ``noise_rate`` of the training labels moved to another class."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=500, stratify=digits.target, random_state=seed)
    if subset is not None:
        x_train, y_train = x_train[:subset], y_train[:subset]
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(y_train)) < noise_rate
    given = np.where(wrong, (y_train + rng.integers(1, 10, len(y_train))) % 10, y_train)
    as_float = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return {"x": as_float(x_train), "y": torch.tensor(given), "wrong": torch.tensor(wrong),
            "x_test": as_float(x_test), "y_test": torch.tensor(y_test)}


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


class Classifier(pl.LightningModule):
    """A plain LightningModule; the only SAT line is the loss in ``training_step``."""

    def __init__(self, sat: SATCallback, *, epochs: int, lr: float = 0.1):
        super().__init__()
        self.net, self.sat, self.epochs, self.lr = make_net(), sat, epochs, lr

    def training_step(self, batch, batch_idx):
        x, y, index = batch                                  # IndexedDataset adds each sample's index
        return self.sat.loss(self.net(x), y, index)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.epochs)}


def main(epochs: int = 30, batch_size: int = 64, *, out: str | None = None, devices: int = 1,
         strategy: str = "auto", subset: int | None = None, seed: int = 0, verbose: bool = True) -> dict:
    pl.seed_everything(seed, verbose=False)
    data = make_data(seed=seed, subset=subset)
    sat = SATCallback(SelfAdaptiveTraining(data["y"], num_classes=10, start_epoch="auto", momentum="auto",
                                           epochs=epochs))
    callbacks = [sat]
    if out is not None:  # a checkpoint after every epoch; the same command resumes from the last one
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=out, save_last=True, save_top_k=0))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=devices, strategy=strategy,
                         callbacks=callbacks, logger=False, enable_checkpointing=out is not None,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)
    model = Classifier(sat, epochs=epochs)
    loader = DataLoader(IndexedDataset(TensorDataset(data["x"], data["y"])), batch_size=batch_size, shuffle=True)
    last = Path(out, "last.ckpt") if out is not None else None
    trainer.fit(model, loader, ckpt_path=last if last is not None and last.is_file() else None)

    with torch.no_grad():
        accuracy = (model.net.eval()(data["x_test"]).argmax(1) == data["y_test"]).float().mean().item()
    issues = sat.sat.suspected_label_errors()                # corrected label != given label, most confident first
    hits = int(data["wrong"][issues.index.cpu()].sum())
    result = {"test_accuracy": accuracy, "start_epoch": sat.sat.start_epoch, "momentum": sat.sat.momentum,
              "flagged": len(issues.index), "precision": hits / max(len(issues.index), 1),
              "recall": hits / max(int(data["wrong"].sum()), 1), "targets": sat.sat.targets.cpu(),
              "sat_state": sat.sat.state_dict(), "is_main": trainer.is_global_zero}
    if verbose and trainer.is_global_zero:
        print(f"test accuracy {accuracy:.4f}; SAT started at epoch {result['start_epoch']} with momentum "
              f"{result['momentum']:.3f}; flagged {result['flagged']} of {len(data['y'])} training labels: "
              f"precision {result['precision']:.3f}, recall {result['recall']:.3f} "
              f"({int(data['wrong'].sum())} were wrong)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--out", help="checkpoint folder (resumes from its last.ckpt)")
    parser.add_argument("--devices", type=int, default=1, help="processes (CPU)")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    parser.add_argument("--subset", type=int, help="train on the first N training samples only")
    parser.add_argument("--save", help="write the final targets and SAT state here (torch.save, main process)")
    args = parser.parse_args()
    result = main(args.epochs, args.batch_size, out=args.out, devices=args.devices, strategy=args.strategy,
                  subset=args.subset)
    if args.save and result["is_main"]:
        torch.save({k: result[k] for k in ("targets", "sat_state", "test_accuracy")}, args.save)
