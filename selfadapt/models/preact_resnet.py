"""Pre-activation ResNet-18 (He et al. 2016, "Identity Mappings in Deep Residual Networks").

CIFAR layout as in :mod:`selfadapt.models.resnet` (3x3 stem, no max-pool, widths w..8w), with
BN-ReLU before each convolution and a final BN-ReLU before pooling, as in the paper.

>>> import torch
>>> net = PreActResNet((2, 2, 2, 2), in_channels=1, width=16)
>>> net(torch.rand(2, 1, 28, 28)).shape
torch.Size([2, 128])
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from selfadapt.models.resnet import conv_init


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-(dropout)-conv; a projecting shortcut reads the pre-activated input."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class PreActNet(nn.Module):
    """A 3x3 stem, stages of pre-activation blocks, then BN-ReLU and global average pooling.

    ``stages`` lists ``(width, stride, blocks)``; the first block of a stage carries its stride.
    Backbone only: images -> N x ``feature_dim`` (the last stage's width) pooled features.
    """

    def __init__(self, stem_width: int, stages: list[tuple[int, int, int]], *, in_channels: int = 3,
                 dropout: float = 0.0):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)
        layers, cin = [], stem_width
        for cout, stride, n in stages:
            layers += [PreActBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1, dropout) for j in range(n)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = cin
        conv_init(self)

    def forward(self, x):
        return self.pool(self.layers(self.stem(x)))


class PreActResNet(PreActNet):
    """Stages of widths w, 2w, 4w, 8w with strides 1, 2, 2, 2: ``feature_dim`` = 8 * width."""

    def __init__(self, blocks: tuple[int, ...], *, in_channels: int = 3, width: int = 64):
        stages = [(width * 2**i, 1 if i == 0 else 2, n) for i, n in enumerate(blocks)]
        super().__init__(width, stages, in_channels=in_channels)
