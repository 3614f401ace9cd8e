"""Wide ResNet (Zagoruyko & Komodakis 2016): WRN-28-10 for noisy labels, WRN-34-10 for TRADES.

Three groups of (depth - 4) / 6 pre-activation blocks with widths 16k, 32k, 64k (k the widen
factor) and strides 1, 2, 2 after a 16-channel 3x3 stem; dropout between the two convolutions of
each block; a final BN-ReLU and global average pooling. Same structure as the TRADES WRN-34-10
(without its unused ``sub_block1``, which only inflated the parameter count).

>>> import torch
>>> net = WideResNet(depth=16, widen_factor=2, in_channels=3)
>>> net(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 128])
"""
from __future__ import annotations

from selfadapt.models.preact_resnet import PreActNet


class WideResNet(PreActNet):
    """Backbone only: images -> N x ``feature_dim`` (= 64 * widen_factor) pooled features."""

    def __init__(self, depth: int = 28, widen_factor: int = 10, *, in_channels: int = 3, dropout: float = 0.0):
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        stages = [(16 * widen_factor * 2**i, stride, n) for i, stride in enumerate((1, 2, 2))]
        super().__init__(16, stages, in_channels=in_channels, dropout=dropout)
