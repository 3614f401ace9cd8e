"""ResNet-18/34 (He et al. 2016, BasicBlock) and ResNet-50 (Bottleneck), with a stem for the image size.

``stem="cifar"`` (as in the SAT code and kuangliu/pytorch-cifar): a 3x3 convolution of stride 1 and
no max-pool, so the first stage works at full resolution (right for 32 px; at 224 px it costs
about 49 times a 32 px image). ``stem="imagenet"`` (torchvision's): a 7x7 convolution of stride 2
and a 3x3 max-pool of stride 2, a quarter of the resolution from the first stage on.
:func:`resolve_stem` picks one from the image size (``"auto"``). Then four stages of widths
w, 2w, 4w, 8w (times 4 for Bottleneck) with strides 1, 2, 2, 2 and global average pooling.
``width`` is the base width w (64 in the papers; the double-descent experiments sweep 1..64).
The Bottleneck strides its 3x3 convolution (torchvision's "ResNet v1.5").

>>> import torch
>>> net = ResNet((2, 2, 2, 2), in_channels=3, width=64)
>>> net(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 512])
>>> ResNet((3, 4, 6, 3), block="bottleneck", stem="imagenet")(torch.rand(1, 3, 64, 64)).shape
torch.Size([1, 2048])
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


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand to ``4 * mid`` channels, each with BN; a projection
    shortcut where the shape changes; ReLU after the sum."""

    expansion = 4

    def __init__(self, cin: int, mid: int, stride: int = 1):
        super().__init__()
        cout = mid * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


STEMS = ("auto", "cifar", "imagenet")
IMAGENET_STEM_FROM = 128  # px: from here on "auto" takes the ImageNet stem (its 4x reduction then
# leaves the first stage at 32 px or more, what the CIFAR stem gives a 32 px image)


def resolve_stem(stem: str, image_size: int) -> str:
    """``cifar`` or ``imagenet``: ``stem`` itself, or for ``auto`` the one the image size calls for.

    >>> resolve_stem("auto", 32), resolve_stem("auto", 224), resolve_stem("cifar", 224)
    ('cifar', 'imagenet', 'cifar')
    """
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose from {', '.join(STEMS)}")
    if stem != "auto":
        return stem
    return "imagenet" if image_size >= IMAGENET_STEM_FROM else "cifar"


def _stem(kind: str, cin: int, width: int) -> nn.Sequential:
    if kind == "imagenet":
        return nn.Sequential(nn.Conv2d(cin, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))


class ResNet(nn.Module):
    """Backbone only: images -> N x ``feature_dim`` (8 * width; 32 * width with bottlenecks) features."""

    def __init__(self, blocks: tuple[int, ...], *, in_channels: int = 3, width: int = 64, block: str = "basic",
                 stem: str = "cifar"):
        super().__init__()
        self.stem = _stem(stem, in_channels, width)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            mid, stride = width * 2**i, 1 if i == 0 else 2
            for j in range(n):
                if block == "bottleneck":
                    layers.append(Bottleneck(cin, mid, stride if j == 0 else 1))
                    cin = mid * Bottleneck.expansion
                else:
                    layers.append(BasicBlock(cin, mid, stride if j == 0 else 1))
                    cin = mid
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = cin
        conv_init(self)

    def forward(self, x):
        return self.pool(self.layers(self.stem(x)))

