"""Shared test setup: one intra-op thread per test process.

The suite runs in two pytest-xdist workers on a 2-core machine; with PyTorch's default of one
thread per core each, small CPU models slow down many times over from oversubscription.
"""
import torch

torch.set_num_threads(1)
