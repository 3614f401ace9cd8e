"""L-inf attacks in [0, 1] pixel space: PGD, FGSM and TRADES' KL attack; AutoAttack behind an adapter.

Every model here takes images in [0, 1] and normalises them itself (:mod:`selfadapt.models`), so an
attack perturbs raw pixels and clamps to [0, 1]; the perturbation never leaves the eps ball. Each
attack runs under :func:`frozen`: the model (and everything inside it) in eval mode, so batch norm
uses and keeps its running statistics, and every parameter with ``requires_grad`` off, so no
gradient reaches the model (not even through attacks that call ``backward``, as AutoAttack's FAB
does); both are restored afterwards. The loops never read a value back to the host (no ``.item()``),
so on a GPU the steps queue without synchronising.

PGD's random start ``x + U(-eps, eps)`` is clipped to [0, 1] before the first gradient, as in Madry
et al.'s reference (MadryLab/cifar10_challenge ``pgd_attack.py``, which added that clip in a later
version), advertorch and torchattacks: the attack then only ever evaluates images of the threat
model. The SAT authors' evaluation (``pgd_attack.py`` of LayneH/self-adaptive-training, from TRADES)
leaves the start unclipped, so its first gradient is taken at pixels below 0 or above 1 wherever a
pixel lies within eps of either; the projection after each step makes every later iterate valid in
both. We keep the clip; ``benchmarks/pgd_random_start.py`` measures the difference, within the
noise of the start (PGD-20 accuracy, eps 0.1, 5 start seeds: a TRADES MLP on digits 86.16% clipped
against 86.08% unclipped; a TRADES CNN on Fashion-MNIST 55.04% against 55.04%).

>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
>>> x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
>>> x_adv = pgd(model, x, y, eps=0.1, steps=5, step_size=0.03)
>>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6) and bool(x_adv.min() >= 0) and bool(x_adv.max() <= 1)
True
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.errors import SelfAdaptError


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Eval mode and ``requires_grad=False`` on every parameter inside; each module's mode and each
    parameter's flag restored afterwards (also on error)."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Into the L-inf ball of radius ``eps`` around ``x``, then into [0, 1]."""
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)


def _input_gradient(loss_of: callable, x_adv: torch.Tensor) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_of(x_adv)
        return torch.autograd.grad(loss, [x_adv])[0]


def _cross_entropy_sum(model: nn.Module, y: torch.Tensor):
    return lambda x_adv: F.cross_entropy(model(x_adv).float(), y, reduction="sum")


def sign_ascent(loss_of, x: torch.Tensor, start: torch.Tensor, *, eps: float, steps: int,
                step_size: float) -> torch.Tensor:
    """``steps`` of ``x_adv <- proj(x_adv + step_size * sign(grad loss))`` from ``start``."""
    x_adv = project(start, x, eps)
    for _ in range(steps):
        x_adv = project(x_adv + step_size * _input_gradient(loss_of, x_adv).sign(), x, eps)
    return x_adv.detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 20,
        step_size: float = 0.003, restarts: int = 1, random_start: bool = True) -> torch.Tensor:
    """PGD on the summed cross-entropy (Madry et al.) from a uniform random start in the eps ball.

    With ``restarts > 1`` each sample keeps the first restart that fools the model (else the last).
    Draws from torch's global random generator.
    """
    check_attack(eps, steps, step_size)
    if restarts < 1:
        raise SelfAdaptError(f"PGD restarts must be >= 1, got {restarts}")
    with frozen(model):
        loss_of = _cross_entropy_sum(model, y)
        best = None
        for _ in range(restarts):
            start = x + torch.empty_like(x).uniform_(-eps, eps) if random_start else x
            x_adv = sign_ascent(loss_of, x, start, eps=eps, steps=steps, step_size=step_size)
            if best is None:
                best = x_adv
                continue
            with torch.no_grad():
                still_correct = model(best).argmax(1) == y
            best = torch.where(still_correct.view(-1, *[1] * (x.dim() - 1)), x_adv, best)
        return best


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` on the cross-entropy (Goodfellow et al.), no random start."""
    check_attack(eps, 1, eps)
    with frozen(model):
        return sign_ascent(_cross_entropy_sum(model, y), x, x, eps=eps, steps=1, step_size=eps)


def trades_attack(model: nn.Module, x: torch.Tensor, *, eps: float = 0.031, steps: int = 10,
                  step_size: float = 0.007, init_std: float = 0.001) -> torch.Tensor:
    """TRADES' inner maximisation: from ``x + init_std * N(0, 1)``, ``steps`` signed-gradient steps
    on ``KL(softmax f(x) || softmax f(x_adv))`` (summed over the batch), projected to the eps ball
    and [0, 1] after every step (the authors' ``losses/trades.py``; the start is clamped to [0, 1]
    as well). The clean prediction is computed once: it is a constant of the gradient.
    """
    check_attack(eps, steps, step_size)
    with frozen(model):
        with torch.no_grad():
            clean = F.softmax(model(x).float(), dim=1)
        def kl(x_adv):
            return F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), clean, reduction="sum")
        start = x + init_std * torch.randn_like(x)
        return sign_ascent(kl, x, start, eps=eps, steps=steps, step_size=step_size)


def check_attack(eps: float, steps: int, step_size: float) -> None:
    """One clear line for a radius outside [0, 1], a negative step count or a non-positive step."""
    if not 0.0 <= eps <= 1.0:
        raise SelfAdaptError(f"attack eps must lie in [0, 1] (pixels are in [0, 1]), got {eps}")
    if steps < 0:
        raise SelfAdaptError(f"attack steps must be >= 0, got {steps}")
    if step_size <= 0:
        raise SelfAdaptError(f"attack step size must be > 0, got {step_size}")


# --------------------------------------------------------------------------------------------
# AutoAttack (Croce & Hein), the authors' package `pyautoattack`

AUTOATTACK_VERSIONS = ("standard", "plus", "rand")


def autoattack_class():
    """pyautoattack's ``AutoAttack``, or one clear line naming the extra that installs it."""
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise SelfAdaptError("AutoAttack needs the package pyautoattack: pip install 'selfadapt[adversarial]'") \
            from None
    return AutoAttack


@dataclass
class AutoAttackResult:
    """Accuracy on the clean images and after the whole ensemble (``robust_accuracy``), and after
    each attack in order (``after``: cumulative, as AutoAttack runs each on the points still robust)."""

    clean_accuracy: float
    robust_accuracy: float
    after: dict[str, float]
    n_examples: int


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, version: str = "standard",
               attacks: list[str] | None = None, batch_size: int = 500, seed: int = 0,
               state_path: str | Path | None = None) -> AutoAttackResult:
    """Run AutoAttack (L-inf, the package's parameters for ``version``) on ``x`` in [0, 1], with the
    model frozen as for every attack here.

    ``version="standard"`` is APGD-CE, APGD-T, FAB-T and Square, each on the points the attacks
    before it left robust; ``attacks=[...]`` runs only those (with the version's parameters).
    With ``state_path`` the evaluation resumes after an interruption from the last finished
    attack, and a finished evaluation is read back without attacking again. (The attacks are run
    one at a time with our own state file: pyautoattack 0.2.0's ``state_path`` writes the attack
    set as a string and then refuses every state file it wrote as "a different set of attacks".)

    Example: ``autoattack(model, x[:1000], y[:1000], eps=8/255).robust_accuracy``.
    """
    AutoAttack = autoattack_class()
    if not 0.0 <= eps <= 1.0:
        raise SelfAdaptError(f"AutoAttack eps must lie in [0, 1], got {eps}")
    if version not in AUTOATTACK_VERSIONS:
        raise SelfAdaptError(f"unknown AutoAttack version {version!r}; choose from {', '.join(AUTOATTACK_VERSIONS)}")
    # pyautoattack reseeds torch's global generator: fork it, so the caller's random draws stay as they were
    with frozen(model), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        runner = AutoAttack(model, norm="Linf", eps=eps, version=version, device=x.device, seed=seed)
        runner.verbose = False
        names = list(attacks) if attacks else list(runner.attacks_to_run)
        unknown = [a for a in names if a not in ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")]
        if unknown:
            raise SelfAdaptError(f"unknown AutoAttack attack {unknown[0]!r}")
        key = {"attacks": names, "version": version, "eps": eps, "n": len(y), "seed": seed}
        state = _load_state(state_path, key)
        if state is None:
            robust = _correct(model, x, y, batch_size)
            state = {**key, "clean": robust.float().mean().item(), "done": {}}
        else:
            robust = torch.tensor(state["robust"], dtype=torch.bool, device=x.device)
        for name in names:
            if name in state["done"]:
                continue
            index = robust.nonzero().flatten()
            if len(index):
                runner.attacks_to_run = [name]
                x_adv, _ = runner.run_standard_evaluation(x[index], y[index], batch_size=batch_size)
                robust[index] = _correct(model, x_adv, y[index], batch_size)
            state["done"][name] = robust.float().mean().item()
            state["robust"] = robust.tolist()
            _save_state(state_path, state)
    return AutoAttackResult(state["clean"], robust.float().mean().item(), dict(state["done"]), len(y))


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                          for i in range(0, len(y), batch_size)])


def _load_state(path: str | Path | None, key: dict) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SelfAdaptError(f"AutoAttack state {path} is unreadable ({e}); delete it to start over") from None
    if {k: state.get(k) for k in key} != key:
        raise SelfAdaptError(f"AutoAttack state {path} belongs to another evaluation; delete it to start over")
    return state


def _save_state(path: str | Path | None, state: dict) -> None:
    if path is not None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's parameters and buffers (names a resumable evaluation's state file)."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]
