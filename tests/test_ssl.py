"""Self-supervised objectives, their view augmentations, LARS and the frozen-feature evaluators,
each against a plain reference (float64 loops / numpy written from the formulas) or its statistics."""
import importlib.util
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfadapt.cli import main
from selfadapt.config.run import RunConfig
from selfadapt.config.sections import EngineSettings
from selfadapt.data.loader import DeviceLoader
from selfadapt.data.registry import load_dataset
from selfadapt.data.ssl_augment import ViewAugment, ViewRecipe, ssl_view_augmentations
from selfadapt.engine.optim import LARS
from selfadapt.engine.trainer import learning_rate
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import EvalData
from selfadapt.evaluators.representation import KNNAccuracy, LinearProbe, frozen_features, knn_predict
from selfadapt.experiment import train_run
from selfadapt.objectives import BYOL, Batch, Progress, RotationPrediction, SelfSupervisedSAT, SimCLR
from selfadapt.objectives.ssl import collapse_metrics, ema_momentum, normalized_mse, nt_xent, rotate

needs_kornia = pytest.mark.skipif(importlib.util.find_spec("kornia") is None,
                                  reason="kornia (extra 'ssl') is not installed")


# ------------------------------------------------------------------------------------ augmentations


def _colourful(n, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, size, size), generator=gen, dtype=torch.uint8).repeat(n, 1, 1, 1)


@needs_kornia
@pytest.mark.parametrize("recipe", ["byol", "simclr"])
def test_views_stay_in_unit_range_and_differ_per_sample(recipe):
    images = _colourful(64)  # one image repeated: any difference between outputs is per-sample randomness
    for augment in ssl_view_augmentations(recipe, views=2, channels=3, image_size=16):
        out = augment(images, torch.Generator().manual_seed(1))
        assert out.shape == images.shape and out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        distinct = {tuple(row.flatten()[:64].tolist()) for row in out}
        assert len(distinct) == 64


@needs_kornia
def test_views_are_reproducible_from_the_generator_and_leave_global_rng_alone():
    augment = ssl_view_augmentations("byol", views=2, channels=3, image_size=16)[0]
    state = torch.get_rng_state()
    a = augment(_colourful(8), torch.Generator().manual_seed(5))
    b = augment(_colourful(8), torch.Generator().manual_seed(5))
    c = augment(_colourful(8), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def _binomial_ok(count, n, p):
    return abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p))


@needs_kornia
def test_greyscale_probability_of_the_recipe():
    n = 2000
    out = ssl_view_augmentations("byol", views=2, channels=3, image_size=16)[0](_colourful(n), torch.Generator())
    grey = ((out[:, 0] == out[:, 1]) & (out[:, 1] == out[:, 2])).flatten(1).all(1)
    assert _binomial_ok(int(grey.sum()), n, 0.2)


@needs_kornia
def test_solarisation_only_on_the_second_byol_view_with_probability_02():
    n = 2000
    bright = torch.randint(160, 256, (n, 3, 16, 16), dtype=torch.uint8)  # all values > 0.6
    plain = ViewRecipe(jitter_p=0.0, greyscale_p=0.0)
    solarised = ViewAugment(ViewRecipe(jitter_p=0.0, greyscale_p=0.0, solarize_p=0.2), channels=3, image_size=16)
    dark = solarised(bright, torch.Generator()).flatten(1).amax(1) <= 0.5  # solarised: x -> 1 - x below 0.4
    assert _binomial_ok(int(dark.sum()), n, 0.2)
    untouched = ViewAugment(plain, channels=3, image_size=16)(bright, torch.Generator()).flatten(1).amax(1) <= 0.5
    assert not untouched.any()
    first, second = ssl_view_augmentations("byol", views=2, channels=3, image_size=16)
    assert first.recipe.solarize_p == 0.0 and second.recipe.solarize_p == 0.2


@needs_kornia
def test_crop_area_and_aspect_statistics():
    # channel 0 ramps along x, channel 1 along y: the range of each in a view is the crop's width / height share
    n, size = 2000, 32
    ramp = torch.arange(size) * 255 // (size - 1)
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, 0], images[:, 1] = ramp[None, None, :], ramp[None, :, None]
    recipe = ViewRecipe(jitter_p=0.0, greyscale_p=0.0, flip_p=0.0)
    out = ViewAugment(recipe, channels=3, image_size=size)(images, torch.Generator().manual_seed(0))
    width = out[:, 0].amax((1, 2)) - out[:, 0].amin((1, 2))
    height = out[:, 1].amax((1, 2)) - out[:, 1].amin((1, 2))
    area = width * height
    # scale uniform on [0.08, 1] (mean 0.54; infeasible large crops are clipped, so a little less)
    assert 0.42 < float(area.mean()) < 0.56 and float(area.min()) > 0.05
    assert 0.08 < float((area < 0.2).float().mean()) < 0.25
    assert float((width / height).log().abs().max()) < math.log(4 / 3) + 0.15  # ratio 3/4..4/3, pixel rounding


def test_unknown_recipe_and_channel_count_are_clear_errors():
    with pytest.raises(SelfAdaptError, match="unknown self-supervised augmentation"):
        ssl_view_augmentations("moco", views=2, channels=3, image_size=8)
    with pytest.raises(SelfAdaptError, match="1- or 3-channel"):
        ssl_view_augmentations("byol", views=2, channels=4, image_size=8)


# ------------------------------------------------------------------------------------ losses


def test_normalized_mse_matches_a_float64_loop():
    gen = torch.Generator().manual_seed(0)
    p, z = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen) * 3
    ref = 0.0
    for i in range(6):
        dot = sum(float(p[i, j]) * float(z[i, j]) for j in range(5))
        ref += 2 - 2 * dot / (math.sqrt(sum(float(v) ** 2 for v in p[i])) * math.sqrt(sum(float(v) ** 2 for v in z[i])))
    assert float(normalized_mse(p, z)) == pytest.approx(ref / 6, rel=1e-5)


def reference_nt_xent(z1, z2, t):
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n, total = len(z1), 0.0
    for i in range(2 * n):
        positive = i + n if i < n else i - n
        denominator = sum(math.exp(z[i] @ z[k] / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(z[i] @ z[positive] / t) / denominator)
    return total / (2 * n)


def test_nt_xent_matches_the_formula():
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    assert float(nt_xent(z1, z2, 0.2)) == pytest.approx(reference_nt_xent(z1.numpy(), z2.numpy(), 0.2), rel=1e-5)


def test_collapse_metrics_against_numpy():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(64, 8, generator=gen)
    metrics = collapse_metrics(z)
    u = z.double().numpy()
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    assert float(metrics["collapse_std"]) == pytest.approx(u.std(0, ddof=1).mean() * math.sqrt(8), rel=1e-5)
    s = np.linalg.svd(u - u.mean(0), compute_uv=False)
    p = s / s.sum()
    assert float(metrics["effective_rank"]) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-4)
    assert 0.8 < float(metrics["collapse_std"]) < 1.1 and float(metrics["effective_rank"]) > 6
    assert float(collapse_metrics(torch.ones(64, 8) + 1e-3 * z)["effective_rank"]) < 8
    assert float(collapse_metrics(torch.ones(64, 8))["collapse_std"]) == 0.0


def test_ema_momentum_follows_the_cosine():
    for f in (0.0, 0.3, 1.0):
        assert ema_momentum(0.99, f) == pytest.approx(1 - 0.01 * (math.cos(math.pi * f) + 1) / 2)


class _Tiny(nn.Module):
    """A model with a backbone, like selfadapt's Classifier."""

    def __init__(self, d_in=6, d=5):
        super().__init__()
        self.backbone = nn.Linear(d_in, d)
        self.feature_dim = d
        self.head = nn.Linear(d, 3)

    def features(self, x):
        return self.backbone(x)

    def forward(self, x):
        return self.head(self.features(x))


def _batch(n=8, d_in=6, seed=0, index=None):
    gen = torch.Generator().manual_seed(seed)
    views = (torch.randn(n, d_in, generator=gen), torch.randn(n, d_in, generator=gen))
    return Batch(views, torch.full((n,), -1), torch.arange(n) if index is None else index)


def _cos_loss(p, z):
    """2 - 2 cos, one pair at a time (float64)."""
    p, z = p.detach().double(), z.detach().double()
    return sum(2 - 2 * float(p[i] @ z[i] / (p[i].norm() * z[i].norm())) for i in range(len(p))) / len(p)


def test_byol_loss_and_momentum_update_match_a_plain_reference():
    torch.manual_seed(0)
    model = _Tiny()
    byol = BYOL(model, feature_dim=5, proj_hidden=7, proj_dim=4, pred_hidden=7, base_momentum=0.9)
    batch = _batch()
    out = byol.training_step(model, batch, 0)
    x1, x2 = batch.views
    q1, q2 = byol.predictor(byol.projector(model.features(x1))), byol.predictor(byol.projector(model.features(x2)))
    t1, t2 = byol.target.projector(byol.target.model.features(x1)), byol.target.projector(byol.target.model.features(x2))
    assert out.loss.item() == pytest.approx(_cos_loss(q1, t2) + _cos_loss(q2, t1), rel=1e-5)
    out.loss.backward()
    assert all(p.grad is None for p in byol.target.parameters())  # stop-gradient on the target branch
    before = [p.clone() for p in byol.target.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    byol.after_step(model, Progress(0, 0, 2, 1))  # fraction 0.5: momentum 1 - 0.1 / 2
    m = 1 - 0.1 * (math.cos(math.pi * 0.5) + 1) / 2
    online = list(model.parameters()) + list(byol.projector.parameters())
    for t, b, o in zip(byol.target.parameters(), before, online):
        torch.testing.assert_close(t, m * b + (1 - m) * o)


@pytest.mark.parametrize("encoder,unit_views", [("momentum", True), ("online", True), ("momentum", False)])
def test_ssl_sat_loss_and_target_update_match_a_plain_reference(encoder, unit_views):
    torch.manual_seed(0)
    model = _Tiny()
    sat = SelfSupervisedSAT(model, num_samples=20, feature_dim=5, proj_hidden=7, proj_dim=4, pred_hidden=7,
                            alpha=0.7, encoder=encoder, seed=3, unit_views=unit_views)
    assert (sat.target is None) == (encoder == "online")
    np.testing.assert_allclose(sat.targets.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    again = SelfSupervisedSAT(model, num_samples=20, feature_dim=5, proj_hidden=7, proj_dim=4, pred_hidden=7, seed=3)
    assert torch.equal(sat.targets, again.targets)  # seeded random unit vectors
    index = torch.tensor([3, 9, 0, 17, 5, 11, 2, 8])
    batch = _batch(index=index)
    table = sat.targets.clone().double()
    out = sat.training_step(model, batch, 0)
    x1, x2 = batch.views
    q1, q2 = (sat.predictor(sat.projector(model.features(x))) for x in (x1, x2))
    t = table[index]
    assert out.loss.item() == pytest.approx(_cos_loss(q1, t) + _cos_loss(q2, t), rel=1e-5)
    branch = sat.target if encoder == "momentum" else (lambda x: sat.projector(model.features(x)))
    with torch.no_grad():
        z1, z2 = branch(x1).double(), branch(x2).double()
    sat.after_step(model, Progress(0, 0, 4, 1))
    for row, i in enumerate(index.tolist()):
        z = (z1[row] / z1[row].norm() + z2[row] / z2[row].norm()) / 2 if unit_views else (z1[row] + z2[row]) / 2
        moved = 0.7 * table[i] + 0.3 * z
        torch.testing.assert_close(sat.targets[i].double(), moved / moved.norm(), rtol=1e-5, atol=1e-6)
    untouched = sorted(set(range(20)) - set(index.tolist()))
    assert torch.equal(sat.targets[untouched].double(), table[untouched])


def test_simclr_and_rotation_losses():
    torch.manual_seed(0)
    model = _Tiny()
    simclr = SimCLR(feature_dim=5, proj_hidden=7, proj_dim=4, temperature=0.2)
    batch = _batch()
    z1, z2 = (simclr.projector(model.features(x)).detach().numpy() for x in batch.views)
    assert simclr.training_step(model, batch, 0).loss.item() == pytest.approx(reference_nt_xent(z1, z2, 0.2), rel=1e-5)

    images = torch.randn(8, 3, 4, 4)
    turns = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    rotated = rotate(images, turns)
    for i in range(8):
        torch.testing.assert_close(rotated[i], torch.rot90(images[i], int(turns[i]), dims=(1, 2)))

    class Conv(_Tiny):
        def __init__(self):
            super().__init__(d_in=48)

        def features(self, x):
            return self.backbone(x.flatten(1))

    conv = Conv()
    rotation = RotationPrediction(feature_dim=5)
    batch = Batch((images, images.flip(3)), torch.full((8,), -1), torch.arange(8))
    ref = 0.0
    for v, x in enumerate(batch.views):
        k = (torch.arange(8) + 1 + 2 * v) % 4
        xs = torch.stack([torch.rot90(x[i], int(k[i]), dims=(1, 2)) for i in range(8)])
        ref += F.cross_entropy(rotation.rotation_head(conv.features(xs)).double(), k).item() / 2
    assert rotation.training_step(conv, batch, 1).loss.item() == pytest.approx(ref, rel=1e-5)


def test_two_view_methods_reject_one_view_and_models_without_a_backbone():
    model = _Tiny()
    one_view = Batch((torch.randn(4, 6),), torch.full((4,), -1), torch.arange(4))
    with pytest.raises(SelfAdaptError, match="needs 2 augmented views"):
        BYOL(model, feature_dim=5, proj_hidden=4, proj_dim=4, pred_hidden=4).training_step(model, one_view, 0)
    plain = nn.Linear(6, 5)
    with pytest.raises(SelfAdaptError, match="model.features"):
        SimCLR(feature_dim=5, proj_hidden=4, proj_dim=4).training_step(plain, _batch(n=4), 0)


# ------------------------------------------------------------------------------------ LARS, schedule


def test_lars_step_matches_the_formula_and_skips_biases():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    optimizer = LARS(layer.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2, eta=0.02)
    layer(torch.randn(8, 4)).pow(2).mean().backward()
    gw, gb = layer.weight.grad.clone(), layer.bias.grad.clone()
    optimizer.step()
    ratio = min(0.02 * w0.norm() / (gw.norm() + 1e-2 * w0.norm() + 1e-8) / 0.5, 1.0)
    torch.testing.assert_close(layer.weight.detach(), w0 - 0.5 * ratio * (gw + 1e-2 * w0))
    torch.testing.assert_close(layer.bias.detach(), b0 - 0.5 * gb)  # no scaling, no decay


def test_warmup_then_cosine():
    config = EngineSettings(epochs=10, lr=1.0, warmup_epochs=2, schedule="cosine")
    assert [learning_rate(config, e) for e in (0, 1)] == pytest.approx([1 / 3, 2 / 3])
    assert learning_rate(config, 2) == pytest.approx(1.0)
    assert learning_rate(config, 6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))


# ------------------------------------------------------------------------------------ evaluators


def test_knn_predict_matches_a_numpy_reference():
    gen = torch.Generator().manual_seed(4)
    memory, labels, queries = torch.randn(50, 6, generator=gen), torch.randint(0, 3, (50,), generator=gen), \
        torch.randn(20, 6, generator=gen)
    m = memory.double().numpy(); m /= np.linalg.norm(m, axis=1, keepdims=True)
    expected = []
    for q in queries.double().numpy():
        s = m @ (q / np.linalg.norm(q))
        votes = np.zeros(3)
        for j in np.argsort(-s)[:10]:
            votes[labels[j]] += math.exp(s[j] / 0.1)
        expected.append(int(votes.argmax()))
    assert knn_predict(queries, memory, labels, 3, k=10, temperature=0.1, chunk=7).tolist() == expected


class _Identity(nn.Module):
    def features(self, x):
        return x.flatten(1)


def _separable(n, seed):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    centres = torch.eye(4)[:, :, None, None].expand(4, 4, 2, 2) * 200
    x = (centres[y] + torch.rand(n, 4, 2, 2, generator=gen) * 40).to(torch.uint8)
    return x, y


def test_knn_and_linear_probe_on_separable_synthetic_features():
    (xt, yt), (xs, ys) = _separable(200, 0), _separable(80, 1)
    data = EvalData(DeviceLoader(xs, ys, batch_size=32), DeviceLoader(xt, yt, batch_size=32), None, 4)
    assert KNNAccuracy(k=20)(_Identity(), None, data, 0)["knn_accuracy"] == 1.0
    result = LinearProbe(weight_decays=[1e-3, 10.0])(_Identity(), None, data, 0)
    assert result["linear_accuracy"] == 1.0 and result["linear_val_accuracy"] == 1.0
    # shuffled training labels: the probe learns nothing and the kNN is at chance
    shuffled = EvalData(data.test, DeviceLoader(xt, yt[torch.randperm(200)], batch_size=32), None, 4)
    assert KNNAccuracy(k=20)(_Identity(), None, shuffled, 0)["knn_accuracy"] < 0.6


def test_frozen_features_need_a_backbone():
    loader = DeviceLoader(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1]), batch_size=2)
    with pytest.raises(SelfAdaptError, match="model.features"):
        frozen_features(nn.Linear(4, 2), loader)


@pytest.mark.slow
def test_knn_and_linear_probe_on_real_digits_pixels():
    digits = load_dataset("digits")
    data = EvalData(DeviceLoader(digits.test.images, digits.test.labels, batch_size=256),
                    DeviceLoader(digits.train.images, digits.train.labels, batch_size=256), None, 10)
    assert KNNAccuracy(k=20)(_Identity(), None, data, 0)["knn_accuracy"] > 0.9
    probe = LinearProbe(weight_decays=[1e-3, 1e-1, 10.0])(_Identity(), None, data, 0)
    assert probe["linear_accuracy"] > 0.9 and probe["linear_weight_decay"] in (1e-3, 1e-1, 10.0)


# ------------------------------------------------------------------------------------ runs


def _config(method, **extra):
    return RunConfig.from_flat({"dataset": "digits", "model": "cnn", "method": method, "epochs": 2,
                                "batch_size": 128, "subset": 256, "seed": 0, "evaluators": ["knn"],
                                "knn_k": 20, "progress": False, **extra})


@needs_kornia
@pytest.mark.slow
def test_pretraining_never_reads_the_labels():
    small = {"ssl_proj_hidden": 32, "ssl_pred_hidden": 32, "ssl_proj_dim": 16}
    clean = train_run(_config("ssl-sat", **small), verbose=False)
    noisy = train_run(_config("ssl-sat", noise="symmetric", noise_rate=0.8, **small), verbose=False)
    assert not torch.equal(clean.data.labels, noisy.data.labels)
    for a, b in zip(clean.model.state_dict().values(), noisy.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(clean.objective.targets, noisy.objective.targets)
    history = clean.summary
    assert "final_knn_accuracy" in history and "final_collapse_std" in history


def test_cli_rejects_an_unknown_view_recipe(capsys, tmp_path):
    assert main(["train", "--dataset", "digits", "--method", "byol", "--ssl-views", "moco", "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 2
    assert "unknown ssl_views 'moco'" in capsys.readouterr().err


@needs_kornia
@pytest.mark.slow
def test_eval_reruns_knn_and_linear_probe_on_a_self_supervised_checkpoint(tmp_path, capsys):
    run = tmp_path / "byol"
    assert main(["train", "--dataset", "digits", "--model", "cnn", "--method", "byol", "--subset", "200",
                 "--epochs", "1", "--ssl-proj-hidden", "32", "--ssl-pred-hidden", "32", "--knn-k", "20",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu", "--evaluators", "knn,linear-probe"]) == 0
    out = capsys.readouterr().out
    assert "knn_accuracy" in out and "linear_accuracy" in out


@needs_kornia
def test_unlabeled_split_is_trained_on_but_never_labelled(monkeypatch):
    import selfadapt.experiment as experiment

    extra = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    monkeypatch.setattr(experiment, "load_unlabeled_split", lambda name, data_dir=None: extra)
    small = {"ssl_proj_hidden": 16, "ssl_pred_hidden": 16, "ssl_proj_dim": 8}
    parts = experiment.build_run(_config("ssl-sat", unlabeled=True, **small), device="cpu", verbose=False)
    assert len(parts.train_loader.labels) == 256 + 40 and (parts.train_loader.labels[256:] == -1).all()
    assert len(parts.objective.targets) == 256 + 40
    assert len(parts.eval_data.train.labels) == 256  # the kNN memory holds labelled images only
    with pytest.raises(SelfAdaptError, match="--unlabeled adds images without labels"):
        _config("ce", unlabeled=True)


def test_missing_kornia_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "kornia", None)
    monkeypatch.setitem(sys.modules, "kornia.augmentation", None)
    with pytest.raises(SelfAdaptError, match=r"selfadapt\[ssl\]"):
        ssl_view_augmentations("byol", views=2, channels=3, image_size=8)
