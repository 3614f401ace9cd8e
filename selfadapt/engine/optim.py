"""The optimiser and the learning-rate schedule of a run: SGD, Adam or LARS, and the lr per epoch.

LARS is the layer-wise adaptive optimiser of the self-supervised recipes (``--optimizer lars``).

The update is solo-learn's (from PyTorch Lightning Bolts; You et al. 2017): for every weight
matrix or kernel, the gradient plus weight decay is scaled by the trust ratio
``eta * ||p|| / (||g|| + wd ||p||)`` (with ``clip_lr``: divided by the learning rate and capped at 1),
then SGD with momentum applies it. Biases and normalisation parameters (one-dimensional tensors)
are excluded from the scaling and from weight decay, as in SimCLR and BYOL.

>>> model = torch.nn.Linear(4, 2)
>>> optimizer = LARS(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-5, eta=0.02)
>>> model(torch.randn(8, 4)).pow(2).mean().backward()
>>> optimizer.step()
"""
from __future__ import annotations

import math

import torch

from selfadapt.config.sections import EngineSettings
from selfadapt.errors import SelfAdaptError


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios; biases and norm parameters unscaled, undecayed."""

    def __init__(self, params, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02,
                 clip_lr: bool = True, exclude_bias_and_norm: bool = True, eps: float = 1e-8):
        if lr <= 0 or eta <= 0:
            raise ValueError(f"LARS needs lr > 0 and eta > 0, got lr {lr}, eta {eta}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      clip_lr=clip_lr, exclude_bias_and_norm=exclude_bias_and_norm, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1 or not group["exclude_bias_and_norm"]:
                    update = self._scaled(p, group)
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = update.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                    update = state["momentum_buffer"]
                p.add_(update, alpha=-group["lr"])
        return loss

    @staticmethod
    def _scaled(p: torch.Tensor, group: dict) -> torch.Tensor:
        """``(g + wd p) * eta ||p|| / (||g|| + wd ||p||)``, the ratio divided by the learning rate and
        capped at 1 when ``clip_lr``; the plain gradient where either norm is 0 (no device sync)."""
        g = p.grad
        p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
        ratio = group["eta"] * p_norm / (g_norm + group["weight_decay"] * p_norm + group["eps"])
        if group["clip_lr"]:
            ratio = torch.clamp(ratio / group["lr"], max=1.0)
        return torch.where((p_norm > 0) & (g_norm > 0), g.add(p, alpha=group["weight_decay"]) * ratio, g)


def learning_rate(config: EngineSettings, epoch: int) -> float:
    """The learning rate of 0-based ``epoch`` (a pure function of the epoch: nothing to checkpoint).

    With ``warmup_epochs = W`` the first W epochs ramp linearly to ``lr`` (``lr (e + 1) / (W + 1)``)
    and the schedule starts after them (the cosine spans the remaining epochs).
    """
    warmup = config.warmup_epochs
    if epoch < warmup:
        return config.lr * (epoch + 1) / (warmup + 1)
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * (epoch - warmup) / (config.epochs - warmup)))
    if config.schedule == "multistep":
        return config.lr * config.gamma ** sum(epoch >= m for m in config.milestones)
    return config.lr


def build_optimizer(config: EngineSettings, parameters) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "lars":
        return LARS(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                    eta=config.lars_eta)
    raise SelfAdaptError(f"unknown optimizer {config.optimizer!r}")
