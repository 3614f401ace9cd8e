"""Attacks checked for their defining properties on a model trained on real digits, against a plain
reference loop, and for leaving the model exactly as they found it."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.attacks import autoattack, fgsm, frozen, pgd, trades_attack
from selfadapt.data.registry import load_dataset
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.registry import build_evaluators
from selfadapt.models import build_model

EPS = 0.1


@pytest.fixture(scope="session")
def digits_model():
    """An MLP trained on the real digits training split (97% test accuracy); the test images in [0, 1]."""
    data = load_dataset("digits")
    x, y = data.train.images.float() / 255, data.train.labels
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8, width=64)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    return model, data.test.images.float() / 255, data.test.labels


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def cross_entropy(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def reference_pgd(model, x, y, eps, steps, step_size):
    """Madry et al.'s PGD as usually written: eval mode, uniform start, signed steps on the summed
    cross-entropy, clip to the eps ball, clip to [0, 1] (the start drawn from the global generator)."""
    model = copy.deepcopy(model).eval()
    x_adv = x + torch.empty_like(x).uniform_(-eps, eps)
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        grad, = torch.autograd.grad(loss, [x_adv])
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


def reference_trades_attack(model, x, eps, steps, step_size):
    """TRADES' inner loop (the authors' ``trades_loss``): start at ``x + 0.001 N(0, 1)``, signed steps
    on the summed KL from the clean prediction, clip to the eps ball and to [0, 1]."""
    model = copy.deepcopy(model).eval()
    clean = F.softmax(model(x), dim=1).detach()
    x_adv = x + 0.001 * torch.randn_like(x)
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.kl_div(F.log_softmax(model(x_adv), dim=1), clean, reduction="sum")
        grad, = torch.autograd.grad(loss, [x_adv])
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


def reference_pgd_unclipped_start(model, x, y, eps, steps, step_size):
    """The SAT authors' ``pgd_attack.py`` (TRADES' evaluation code): as :func:`reference_pgd`, but the
    random start ``x + U(-eps, eps)`` is not clipped to [0, 1] before the first gradient (``model``
    in eval mode)."""
    x_adv = x + torch.empty_like(x).uniform_(-eps, eps)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), [x_adv])
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


class InputRange(nn.Module):
    """The wrapped model, recording the smallest and largest pixel value it is called on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.low, self.high = model, 1.0, 0.0

    def forward(self, x):
        self.low, self.high = min(self.low, x.min().item()), max(self.high, x.max().item())
        return self.model(x)


ATTACKS = {
    "pgd": lambda m, x, y: pgd(m, x, y, eps=EPS, steps=10, step_size=0.025),
    "pgd-restarts": lambda m, x, y: pgd(m, x, y, eps=EPS, steps=5, step_size=0.025, restarts=3),
    "fgsm": lambda m, x, y: fgsm(m, x, y, eps=EPS),
    "trades": lambda m, x, y: trades_attack(m, x, eps=EPS, steps=10, step_size=0.025),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ATTACKS)
def test_attack_stays_in_the_eps_ball_and_the_unit_box(digits_model, name):
    model, x, y = digits_model
    torch.manual_seed(0)
    x_adv = ATTACKS[name](model, x, y)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    saturated = (x == 0) | (x == 1)                                   # digits have many black pixels
    assert saturated.float().mean() > 0.2
    moved = (x_adv - x).abs()[~saturated]
    assert (moved > EPS / 2).float().mean() > 0.5, "most free pixels move far inside the ball"


@pytest.mark.slow
def test_pgd_raises_the_loss_beyond_clean_and_random_noise_and_orders_the_attacks(digits_model):
    model, x, y = digits_model
    torch.manual_seed(0)
    noise = (x + torch.empty_like(x).uniform_(-EPS, EPS).sign() * EPS).clamp(0, 1)   # a random corner of the ball
    x_fgsm = fgsm(model, x, y, eps=EPS)
    x_pgd = pgd(model, x, y, eps=EPS, steps=20, step_size=0.01)
    clean, random, fast, strong = (cross_entropy(model, z, y) for z in (x, noise, x_fgsm, x_pgd))
    assert clean < 0.2 and random < 2 * clean + 0.1 and strong > 5 * random
    acc = [accuracy(model, z, y) for z in (x, noise, x_fgsm, x_pgd)]
    assert acc[0] > 0.95 and acc[1] > 0.9                             # noise of the same size barely hurts
    assert acc[3] <= acc[2] <= acc[0] and acc[3] < acc[0] - 0.3      # PGD <= FGSM <= clean, and far below


def test_pgd_and_trades_attack_match_a_plain_reference_loop(digits_model):
    model, x, y = digits_model
    for attack, reference in [
        (lambda: pgd(model, x, y, eps=EPS, steps=7, step_size=0.02),
         lambda: reference_pgd(model, x, y, EPS, 7, 0.02)),
        (lambda: trades_attack(model, x, eps=EPS, steps=7, step_size=0.02),
         lambda: reference_trades_attack(model, x, EPS, 7, 0.02)),
    ]:
        torch.manual_seed(3)
        ours = attack()
        torch.manual_seed(3)
        expected = reference()
        assert torch.equal(ours, expected)


def test_pgd_never_queries_the_model_outside_the_image_range(digits_model):
    """Our choice (Madry et al.'s reference clips the random start since its later version): every
    input PGD feeds the model lies in [0, 1], and the result is the clipped-start reference's. The
    authors' unclipped start queries negative pixels on the digits' black background first and ends
    elsewhere: the test tells the two apart."""
    model, x, y = digits_model
    ours, theirs = InputRange(model), InputRange(model)
    torch.manual_seed(3)
    x_ours = pgd(ours, x, y, eps=EPS, steps=7, step_size=0.02)
    torch.manual_seed(3)
    x_theirs = reference_pgd_unclipped_start(theirs, x, y, EPS, 7, 0.02)
    torch.manual_seed(3)
    assert torch.equal(x_ours, reference_pgd(model, x, y, EPS, 7, 0.02))
    assert ours.low >= 0.0 and ours.high <= 1.0
    assert theirs.low < -EPS / 2 and not torch.equal(x_ours, x_theirs)


def test_restarts_keep_a_sample_fooled_once_it_is_fooled(digits_model):
    model, x, y = digits_model
    torch.manual_seed(1)
    single = accuracy(model, pgd(model, x, y, eps=0.05, steps=3, step_size=0.02), y)
    torch.manual_seed(1)
    restarted = accuracy(model, pgd(model, x, y, eps=0.05, steps=3, step_size=0.02, restarts=4), y)
    assert restarted < single


class BatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(32, 10)
        self.head.bias.requires_grad_(False)                           # one frozen parameter stays frozen

    def forward(self, x):
        return self.head(self.body(x))


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_leaves_parameters_batch_norm_statistics_and_mode_as_found(name):
    torch.manual_seed(0)
    model = BatchNormNet()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    model.train()
    model(x)                                                            # running statistics away from their init
    before = copy.deepcopy(model.state_dict())
    model.body[2].eval()                                                # a mixed mode, restored as it was
    ATTACKS[name](model, x, y)
    assert model.training and model.body[4].training and not model.body[2].training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters()), "no gradient reaches the model"
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, True, False]


def test_frozen_restores_the_model_after_an_error():
    model = BatchNormNet().train()
    with pytest.raises(RuntimeError), frozen(model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("inside")
    assert model.training and model.head.weight.requires_grad and not model.head.bias.requires_grad


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: pgd(m, x, y, eps=1.5), "eps must lie in \\[0, 1\\]"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, steps=-1), "steps must be >= 0"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, step_size=0), "step size must be > 0"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, restarts=0), "restarts must be >= 1"),
    (lambda m, x, y: autoattack(m, x, y, eps=0.1, attacks=["apgd-nope"]), "unknown AutoAttack attack 'apgd-nope'"),
    (lambda m, x, y: autoattack(m, x, y, eps=0.1, version="fast"), "unknown AutoAttack version 'fast'"),
])
def test_bad_attack_settings_are_one_clear_error(call, message):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(SelfAdaptError, match=message):
        call(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------------
# AutoAttack through pyautoattack (the `adversarial` extra, which `make test` installs; offline, CPU)


class Quantised(nn.Module):
    """A step function in front of the model: zero input gradient almost everywhere (gradient masking)."""

    def __init__(self, model, levels=8):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


@pytest.mark.slow
def test_autoattack_is_at_least_as_strong_as_pgd(digits_model):
    model, x, y = digits_model
    x, y = x[:60], y[:60]
    torch.manual_seed(0)
    pgd_accuracy = accuracy(model, pgd(model, x, y, eps=EPS, steps=20, step_size=0.01), y)
    state = torch.get_rng_state()
    result = autoattack(model, x, y, eps=EPS, attacks=["apgd-ce", "apgd-t"])
    assert torch.equal(torch.get_rng_state(), state), "the caller's random generator is left as it was"
    assert result.clean_accuracy == pytest.approx(accuracy(model, x, y))
    assert list(result.after) == ["apgd-ce", "apgd-t"] and result.n_examples == 60
    assert result.after["apgd-ce"] >= result.after["apgd-t"] == result.robust_accuracy
    assert result.robust_accuracy <= pgd_accuracy < result.clean_accuracy


@pytest.mark.slow
def test_gradient_masking_fools_pgd_but_not_square(digits_model):
    model, x, y = digits_model
    masked = Quantised(model).eval()
    x, y = x[:40], y[:40]
    torch.manual_seed(0)
    pgd_accuracy = accuracy(masked, pgd(masked, x, y, eps=0.2, steps=20, step_size=0.02), y)
    square = autoattack(masked, x, y, eps=0.2, attacks=["square"])
    assert square.clean_accuracy > 0.85 and pgd_accuracy > 0.85, "PGD sees no gradient: the model looks robust"
    assert square.robust_accuracy < 0.2, "Square needs no gradient"


def test_autoattack_resumes_from_its_state_file_and_refuses_another_evaluation(digits_model, tmp_path, monkeypatch):
    model, x, y = digits_model
    x, y = x[:30], y[:30]
    state = tmp_path / "aa.json"
    first = autoattack(model, x, y, eps=0.2, attacks=["apgd-ce"], state_path=state)
    assert state.is_file()

    def no_attack(*args, **kwargs):
        raise AssertionError("a finished attack runs again")
    monkeypatch.setattr("pyautoattack.AutoAttack.run_standard_evaluation", no_attack)
    assert autoattack(model, x, y, eps=0.2, attacks=["apgd-ce"], state_path=state) == first
    with pytest.raises(SelfAdaptError, match="belongs to another evaluation"):
        autoattack(model, x, y, eps=0.1, attacks=["apgd-ce"], state_path=state)
    state.write_text("{not json")
    with pytest.raises(SelfAdaptError, match="unreadable"):
        autoattack(model, x, y, eps=0.2, attacks=["apgd-ce"], state_path=state)


def test_missing_pyautoattack_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pyautoattack", None)
    with pytest.raises(SelfAdaptError, match=r"pip install 'selfadapt\[adversarial\]'"):
        build_evaluators(["accuracy", "autoattack"], {})         # when the run is built, before any training
    with pytest.raises(SelfAdaptError, match=r"pip install 'selfadapt\[adversarial\]'"):
        autoattack(nn.Linear(2, 2), torch.rand(2, 2), torch.tensor([0, 1]), eps=0.1)
