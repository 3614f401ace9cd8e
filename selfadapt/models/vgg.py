"""VGG-16 with batch norm, the selective-classification network of Deep Gamblers and SAT.

Layout of the Deep Gamblers / SAT selective-classification code (itself a port of the
SelectiveNet Keras model): 13 convolutions, each conv-ReLU-BN, five max-pools, then
``Linear(512, 512)-ReLU-BN-Dropout`` before the linear head. ``dropout=p`` places channel dropout
as that code does, scaled by p / 0.5: ``0.6p`` after the first convolution, ``0.8p`` after every
other convolution not followed by a pool, ``p`` after the last pool and in the classifier, so
``dropout=0.5`` is exactly the reference network and ``dropout=0`` removes all of it.
Max-pools that would shrink the map below 1x1 are skipped (8x8 and 28x28 inputs still run) and the
last map is average-pooled to 1x1 (the identity for 32x32 inputs).

>>> import torch
>>> net = VGG(in_channels=1, image_size=8, width=8, dropout=0.5)
>>> net(torch.rand(2, 1, 8, 8)).shape
torch.Size([2, 64])
"""
from __future__ import annotations

from torch import nn

from selfadapt.models.resnet import conv_init

CFG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """Backbone only: images -> N x ``feature_dim`` (= 8 * width) features after the hidden FC layer."""

    def __init__(self, cfg=CFG16, *, in_channels: int = 3, image_size: int = 32, width: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        layers, cin, size = [], in_channels, image_size
        for i, v in enumerate(cfg):
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            cout = max(1, v * width // 64)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(cout)]
            if dropout > 0 and i + 1 < len(cfg) and cfg[i + 1] != "M":
                layers.append(nn.Dropout2d((0.6 if i == 0 else 0.8) * dropout))
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                   nn.Linear(cin, cin), nn.ReLU(inplace=True), nn.BatchNorm1d(cin), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.feature_dim = cin
        conv_init(self)

    def forward(self, x):
        return self.features(x)
