"""SAT in your own training loop, with a standard DataLoader: find the wrong labels of a noisy data set.

Real data (scikit-learn's 1,797 8x8 digits), 30% of the labels replaced by a different class, a small
MLP, 30 epochs. SAT starts and sets its momentum by itself (``"auto"``) and flags the labels whose
corrected target disagrees. Runs in a few seconds on a CPU: ``python examples/own_loop.py``.
"""
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from selfadapt import IndexedDataset, SelfAdaptiveTraining


def main(epochs: int = 30, noise_rate: float = 0.3, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).flatten(1) / 16.0
    clean = torch.tensor(digits.target)
    rng = np.random.default_rng(seed)                        # inject noise: a different class for 30%
    wrong = torch.tensor(rng.random(len(clean)) < noise_rate)
    labels = torch.where(wrong, (clean + torch.tensor(rng.integers(1, 10, len(clean)))) % 10, clean)

    # IndexedDataset adds each sample's position in the training set: SAT's targets are indexed by it
    loader = DataLoader(IndexedDataset(TensorDataset(images, labels)), batch_size=64, shuffle=True)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sat = SelfAdaptiveTraining(labels, num_classes=10, start_epoch="auto", momentum="auto", epochs=epochs)
    for epoch in range(epochs):
        for x, y, index in loader:
            loss = sat(model(x), y, index, epoch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        sat.end_epoch(epoch)                                  # lets the automatic start epoch decide

    issues = sat.suspected_label_errors()                    # most suspicious first
    hits = int(wrong[issues.index].sum())
    result = {"start_epoch": sat.start_epoch, "momentum": sat.momentum, "flagged": len(issues.index),
              "precision": hits / max(len(issues.index), 1), "recall": hits / int(wrong.sum())}
    print(f"SAT started at epoch {result['start_epoch']} with momentum {result['momentum']:.3f}; flagged "
          f"{result['flagged']} of {len(labels)} labels: precision {result['precision']:.3f}, "
          f"recall {result['recall']:.3f} ({int(wrong.sum())} labels were wrong)")
    return result


if __name__ == "__main__":
    main()
