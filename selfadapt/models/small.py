"""Small, fast networks for CPU runs, demos and tests: a 3-layer CNN and an MLP.

``CNN``: three conv-maxpool-BN-ReLU stages of widths w, 2w, 4w (w = 16 by default), then the map
average-pooled to 3x3 and flattened (keeping coarse position, which the classic MNIST-style
datasets need); reaches about 90% on Fashion-MNIST in two epochs on a CPU.
``MLP``: flatten, then ``depth`` hidden ``Linear-ReLU(-Dropout)`` layers of ``hidden`` units.

>>> import torch
>>> CNN(in_channels=1, image_size=28)(torch.rand(2, 1, 28, 28)).shape
torch.Size([2, 576])
>>> MLP(in_channels=1, image_size=28)(torch.rand(2, 1, 28, 28)).shape
torch.Size([2, 512])
"""
from __future__ import annotations

from torch import nn

from selfadapt.models.resnet import conv_init


class CNN(nn.Module):
    """Backbone only: images -> N x ``feature_dim`` (= 4 * width * 9) features."""

    def __init__(self, *, in_channels: int = 3, image_size: int = 32, width: int = 16, dropout: float = 0.0):
        super().__init__()
        layers, cin, size = [], in_channels, image_size
        for cout in (width, 2 * width, 4 * width):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=False))
            if size >= 2:  # pool before BN-ReLU (as airbench): a quarter of the elementwise work
                layers.append(nn.MaxPool2d(2))
                size //= 2
            layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.feature_dim = cin * 9
        conv_init(self)

    def forward(self, x):
        return self.features(x)


class MLP(nn.Module):
    """Backbone only: images -> N x ``feature_dim`` (= hidden) features of the last hidden layer."""

    def __init__(self, *, in_channels: int = 3, image_size: int = 32, hidden: int = 512, depth: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        layers, din = [nn.Flatten()], in_channels * image_size**2
        for _ in range(depth):
            layers += [nn.Linear(din, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            din = hidden
        self.features = nn.Sequential(*layers)
        self.feature_dim = din  # the input size when depth is 0 (a linear model)

    def forward(self, x):
        return self.features(x)
