"""The shape every selfadapt model has: [0, 1] images -> normalisation -> backbone features -> head."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std as buffers (saved, moved with the model).

    >>> Normalize([0.5], [0.25])(torch.ones(1, 1, 2, 2)).flatten().tolist()
    [2.0, 2.0, 2.0, 2.0]
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """normalize -> backbone features -> linear head. Inputs are images in [0, 1] (float, N x C x H x W):
    normalisation lives INSIDE the model so training, evaluation and adversarial attacks all see [0,1].

    >>> from selfadapt.models.small import MLP
    >>> model = Classifier(Normalize([0.5], [0.5]), MLP(in_channels=1, image_size=8, hidden=32), num_classes=3)
    >>> model(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(self, normalize: Normalize, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.feature_dim: int = backbone.feature_dim
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x):
        """Penultimate features, N x ``feature_dim`` (for linear probes and self-supervised work)."""
        return self.backbone(self.normalize(x))

    def forward(self, x):
        return self.head(self.features(x))
