"""CIFAR ResNet-18/34 (He et al. 2016, BasicBlock), as in the SAT code and kuangliu/pytorch-cifar.

A 3x3 stem of stride 1 and no max-pool (CIFAR images are small), four stages of widths
w, 2w, 4w, 8w with strides 1, 2, 2, 2, then global average pooling. ``width`` is the base width w
(64 in the papers; the double-descent experiments sweep 1..64).

>>> import torch
>>> net = ResNet((2, 2, 2, 2), in_channels=3, width=64)
>>> net(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 512])
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def conv_init(module: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) for convolutions, BN to (1, 0): the torchvision defaults."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Backbone only: images -> N x ``feature_dim`` (= 8 * width) pooled features."""

    def __init__(self, blocks: tuple[int, ...], *, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout, stride = width * 2**i, 1 if i == 0 else 2
            layers += [BasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = cin
        conv_init(self)

    def forward(self, x):
        return self.pool(self.layers(self.stem(x)))

