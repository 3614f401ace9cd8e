"""Selective classification: losses against plain float64 references written from the papers'
formulas, risk-coverage metrics against brute force, the evaluator's protocol, bad input, and a
short real-data run."""
import itertools
import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from selfadapt.batch import Batch
from selfadapt.cli import main
from selfadapt.data.loader import DeviceLoader
from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators.base import EvalData
from selfadapt.evaluators.registry import build_evaluators
from selfadapt.evaluators.selective_metrics import (
    aurc,
    check_coverages,
    eaurc,
    fit_thresholds,
    paper_bisection,
    paper_order,
    paper_protocol,
    risk_coverage_curve,
    selective_risk,
)
from selfadapt.models import build_model
from selfadapt.objectives import DeepGamblers, Objective, SATSelective, SelectiveNet
from selfadapt.objectives.selective import softmax_scores


def softmax64(row):
    top = max(row)
    e = [math.exp(v - top) for v in row]
    return [v / sum(e) for v in e]


# ------------------------------------------------------------------------------------------
# losses

def sat_selective_reference(batches, labels, C, momentum, beta=0.0):
    """Per batch: the mean over its samples of -t_y log q_y - (1 - t_y) log q_abstain (+ beta H(p)),
    t the per-sample moving average of p = softmax(first C logits), q = softmax(all C + 1)."""
    targets = {i: [1.0 if c == int(labels[i]) else 0.0 for c in range(C)] for i in range(len(labels))}
    losses = []
    for logits, index in batches:
        total = 0.0
        for row, i in zip(logits.double().tolist(), index.tolist()):
            y = int(labels[i])
            p = softmax64(row[:C])
            targets[i] = [momentum * t + (1 - momentum) * pc for t, pc in zip(targets[i], p)]
            q = softmax64(row)
            loss = -targets[i][y] * math.log(q[y]) - (1 - targets[i][y]) * math.log(q[C])
            loss += beta * -sum(pc * math.log(pc) for pc in p)
            total += loss
        losses.append(total / len(index))
    return losses, targets


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_sat_selective_loss_matches_the_formula_over_several_updates(beta):
    torch.manual_seed(0)
    C, labels = 4, torch.tensor([0, 3, 1, 2, 2, 0])
    batches = [(3 * torch.randn(3, C + 1), torch.tensor([0, 4, 2])),
               (3 * torch.randn(4, C + 1), torch.tensor([4, 1, 0, 5])),    # 0 and 4 again: the average carries on
               (3 * torch.randn(2, C + 1), torch.tensor([4, 0]))]
    sat = SATSelective(labels, C, momentum=0.7, pretrain_epochs=2, entropy_weight=beta)
    expected, targets = sat_selective_reference(batches, labels, C, 0.7, beta)
    for (logits, index), want in zip(batches, expected):
        out = sat.training_step(lambda x: x, Batch([logits], labels[index], index), epoch=2)
        assert out.loss.item() == pytest.approx(want, rel=1e-5)
        assert out.logits.shape == (len(index), C), "logits for accuracy are the C class logits"
    for i, t in targets.items():
        assert sat.targets[i].tolist() == pytest.approx(t, abs=1e-6)


def test_sat_selective_targets_carry_no_gradient_and_pretraining_is_cross_entropy():
    torch.manual_seed(1)
    C, labels = 3, torch.tensor([2, 0, 1])
    logits = torch.randn(3, C + 1, requires_grad=True)
    sat = SATSelective(labels, C, momentum=0.9, pretrain_epochs=1)
    batch = Batch([logits], labels, torch.arange(3))
    loss = sat.training_step(lambda x: x, batch, epoch=0).loss
    assert loss.item() == pytest.approx(nn.functional.cross_entropy(logits[:, :C], labels).item())
    assert sat.targets.tolist() == torch.eye(C)[labels].tolist(), "no target update while pretraining"
    loss = sat.training_step(lambda x: x, batch, epoch=1).loss
    loss.backward()
    # cross-entropy against a constant soft target s: d loss / d z = (softmax(z) - s) / batch
    t_y = sat.targets.gather(1, labels[:, None])[:, 0].detach()
    soft = torch.zeros(3, C + 1).scatter_(1, labels[:, None], t_y[:, None])
    soft[:, C] = 1 - t_y
    assert torch.allclose(logits.grad, (torch.softmax(logits.detach(), 1) - soft) / 3, atol=1e-6)


def test_deep_gamblers_loss_matches_the_formula():
    torch.manual_seed(2)
    C, reward = 5, 2.2
    logits, y = 4 * torch.randn(6, C + 1), torch.tensor([0, 1, 2, 3, 4, 0])
    dg = DeepGamblers(C, reward=reward, pretrain_epochs=3)
    expected = 0.0
    for row, label in zip(logits.double().tolist(), y.tolist()):
        p = softmax64(row)
        expected += -math.log(p[label] + p[C] / reward)
    got = dg.training_step(lambda x: x, Batch([logits], y, torch.arange(6)), epoch=3).loss
    assert got.item() == pytest.approx(expected / 6, rel=1e-5)
    pretraining = dg.training_step(lambda x: x, Batch([logits], y, torch.arange(6)), epoch=2).loss
    assert pretraining.item() == pytest.approx(nn.functional.cross_entropy(logits[:, :C], y).item())
    with pytest.raises(SelfAdaptError, match="reward o must lie in"):
        DeepGamblers(C, reward=C + 0.5)


def test_selectivenet_loss_matches_the_formula():
    torch.manual_seed(3)
    f, h, y = torch.randn(8, 3), torch.randn(8, 3), torch.randint(0, 3, (8,))
    model = build_model("mlp", num_classes=3, in_channels=1, image_size=2, width=4)
    for coverage, g in ((0.8, torch.rand(8) * 0.5), (0.3, torch.rand(8) * 0.5 + 0.5)):   # penalty on, then off
        net = SelectiveNet(model, 3, coverage, lam=32.0, alpha=0.5)
        ce = [-math.log(softmax64(row)[label]) for row, label in zip(f.double().tolist(), y.tolist())]
        ce_h = [-math.log(softmax64(row)[label]) for row, label in zip(h.double().tolist(), y.tolist())]
        gs = g.double().tolist()
        risk = sum(lo * gi for lo, gi in zip(ce, gs)) / len(gs) / (sum(gs) / len(gs))
        penalty = 32.0 * max(0.0, coverage - sum(gs) / len(gs)) ** 2
        expected = 0.5 * (risk + penalty) + 0.5 * sum(ce_h) / len(ce_h)
        assert net.loss(f, g, h, y).item() == pytest.approx(expected, rel=1e-5)


def test_scores_and_predictions():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    scores = softmax_scores(logits)
    for row, sr, entropy in zip(logits.tolist(), scores["sr"].tolist(), scores["entropy"].tolist()):
        p = softmax64(row)
        assert sr == pytest.approx(1 - max(p)) and entropy == pytest.approx(-sum(v * math.log(v) for v in p))
    model = nn.Linear(2, 4)
    sat = SATSelective(torch.tensor([0, 1]), 3, pretrain_epochs=0, model=model)
    x = torch.randn(5, 2)
    class_logits, scores = sat.predict_with_scores(model, x)
    assert torch.equal(sat.predict(model, x), model(x)[:, :3]) and torch.equal(class_logits, model(x)[:, :3])
    assert torch.allclose(scores["abstain"], torch.softmax(model(x), 1)[:, 3])
    with pytest.raises(SelfAdaptError, match="needs a model with 4 outputs"):
        SATSelective(torch.tensor([0, 1]), 3, pretrain_epochs=0, model=nn.Linear(2, 3))
    with pytest.raises(SelfAdaptError, match="needs a model with 4 outputs"):
        SATSelective(torch.tensor([0, 1]), 3, pretrain_epochs=0).predict(nn.Linear(2, 3), x)


def sr64(row):
    """1 - max softmax in float64 as rest / (1 + rest), rest = sum of exp(z_j - z_top) but one top."""
    values = sorted(row, reverse=True)
    rest = sum(math.exp(v - values[0]) for v in values[1:])
    return rest / (1 + rest)


def confident_logits(n=2000, seed=0):
    """Logits of a confident 10-class model: top-class margins 9 to 40 (float32 rounds 1 - max softmax
    to 0 or to multiples of 6e-8 from a margin of about 16)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=gen)
    logits[:, 0] += 9 + 31 * torch.rand(n, generator=gen)
    return logits


def test_softmax_response_keeps_the_ranking_that_float32_one_minus_max_softmax_ties():
    logits = confident_logits()
    old = (1.0 - torch.softmax(logits, dim=1).max(dim=1).values).numpy()   # the former formula
    new = softmax_scores(logits)["sr"].numpy()
    reference = np.array([sr64(row) for row in logits.double().tolist()])
    assert len(np.unique(reference)) == len(logits)                          # no true ties
    assert len(np.unique(old)) < 0.5 * len(logits) and (old == 0).sum() > 300
    assert len(np.unique(new)) == len(logits) and (new > 0).all()
    assert np.array_equal(np.argsort(new), np.argsort(reference))           # the float64 ranking, kept
    np.testing.assert_allclose(new, reference, rtol=1e-5)
    tie = softmax_scores(torch.tensor([[3.0, 3.0, -50.0], [0.0, 0.0, 0.0]]))["sr"].tolist()
    assert tie == pytest.approx([0.5, 2 / 3])                                # tied top classes


def test_aurc_of_a_confident_model_with_the_kept_ranking():
    """Errors more likely the smaller the margin, inside the float32-tied confident group too: the ties
    score its errors at the group's mean position (AURC's expectation over tied orders); the kept
    ranking gives the float64 reference's AURC, lower, and E-AURC lower by the same amount (the
    optimum depends only on the error rate)."""
    logits = confident_logits()
    reference = np.array([sr64(row) for row in logits.double().tolist()])
    order = np.argsort(reference, kind="stable")                             # most confident first
    errors = np.zeros(len(order), dtype=bool)
    errors[order] = np.random.default_rng(0).random(len(order)) < 0.3 * np.arange(len(order)) / len(order)
    plain = float(np.mean(np.cumsum(errors[order]) / np.arange(1, len(order) + 1)))
    old = (1.0 - torch.softmax(logits, dim=1).max(dim=1).values).double().numpy()
    new = softmax_scores(logits)["sr"].double().numpy()
    assert aurc(new, errors) == pytest.approx(plain, rel=1e-12)
    assert aurc(old, errors) > aurc(new, errors) + 0.02                      # 11.1% -> 6.9% here
    assert eaurc(old, errors) - eaurc(new, errors) == pytest.approx(aurc(old, errors) - aurc(new, errors))


def test_selectivenet_g_score_is_one_minus_g_without_rounding():
    model = build_model("mlp", num_classes=3, in_channels=1, image_size=4, width=8).eval()
    net = SelectiveNet(model, num_classes=3, coverage=0.8).eval()
    with torch.no_grad():
        net.selector[-1].bias.fill_(30.0)                                    # g = sigmoid(s) rounds to 1
        x = torch.rand(64, 1, 4, 4)
        _, s, _ = net.heads(model, x)
        score = net.predict_with_scores(model, x)[1]["g"]
    expected = [1 / (1 + math.exp(v)) for v in s.double().tolist()]
    assert score.tolist() == pytest.approx(expected, rel=1e-5)
    assert (1.0 - torch.sigmoid(s) == 0).all() and len(set(score.tolist())) == len(set(s.tolist())) > 50


# ------------------------------------------------------------------------------------------
# metrics

def aurc_brute_force(scores, errors):
    """The mean over every order of the tied scores of the mean risk of the i most confident."""
    groups = [[i for i in range(len(scores)) if scores[i] == s] for s in sorted(set(scores))]
    values = []
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = [i for g in orders for i in g]
        wrong = np.cumsum([errors[i] for i in order])
        values.append(np.mean(wrong / np.arange(1, len(order) + 1)))
    return float(np.mean(values))


def test_aurc_and_eaurc_against_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 8))
        scores = rng.integers(0, 3, n).astype(float)             # many ties
        errors = rng.random(n) < 0.4
        assert aurc(scores, errors) == pytest.approx(aurc_brute_force(list(scores), list(errors)))
        r = errors.mean()
        optimal = r if r == 1 else r + (1 - r) * math.log(1 - r)
        assert eaurc(scores, errors) == pytest.approx(aurc(scores, errors) - optimal)
    scores, errors = rng.random(500), rng.random(500) < 0.2
    order = np.argsort(scores)
    coverage, risk = risk_coverage_curve(scores, errors)
    assert risk == pytest.approx(np.cumsum(errors[order]) / np.arange(1, 501))
    assert coverage[-1] == 1.0 and aurc(scores, errors) == pytest.approx(risk.mean())
    perfect = errors.astype(float)                                # every error ranked last
    assert eaurc(perfect, errors) == pytest.approx(0.0, abs=2e-3), "a perfect ranking is near the optimum"


def test_thresholds_keep_the_share_asked_for_and_report_what_they_keep():
    rng = np.random.default_rng(1)
    val, test = rng.random(1000), rng.random(800)
    errors = rng.random(800) < 0.3
    coverages = [100, 95, 90, 80, 37.5, 10]
    thresholds = fit_thresholds(val, coverages)
    for coverage, threshold in zip(coverages, thresholds):
        assert (val <= threshold).mean() == pytest.approx(math.ceil(coverage * 10) / 1000)
        reached, error = selective_risk(test, errors, threshold)
        kept = test <= threshold
        assert reached == kept.mean() and error == pytest.approx(errors[kept].mean())
    assert selective_risk([0.5, 0.7], [True, False], 0.1) == (0.0, pytest.approx(float("nan"), nan_ok=True))
    with pytest.raises(SelfAdaptError, match=r"coverage must lie in \(0, 100\]"):
        check_coverages([95, 120])
    with pytest.raises(SelfAdaptError):
        check_coverages([0])


def original_bisection(abortion, correct, expected_coverage):
    """The original code's ``bisection_method`` (SAT-selective-cls / Deep Gamblers), transcribed."""
    results = []
    upper = 1.
    while True:
        passed_up = torch.sum((abortion <= upper).long()).item()
        if passed_up / len(correct) * 100. < expected_coverage[0]:
            upper *= 2.
        else:
            break
    test_thres = 1.
    for coverage in expected_coverage:
        mask = abortion <= test_thres
        passed = torch.sum(mask.long()).item()
        lower = 0.
        while math.fabs(passed / len(correct) * 100. - coverage) > 0.3:
            if passed / len(correct) * 100. > coverage:
                upper = min(test_thres, upper)
                test_thres = (test_thres + lower) / 2
            elif passed / len(correct) * 100. < coverage:
                lower = max(test_thres, lower)
                test_thres = (test_thres + upper) / 2
            mask = abortion <= test_thres
            passed = torch.sum(mask.long()).item()
        results.append((passed / len(correct), torch.sum(correct[mask].long()).item() / passed))
    return results


def test_paper_protocol_is_the_original_step_for_step():
    rng = np.random.default_rng(2)
    scores, correct = rng.random(5000) ** 3 * 1.5, rng.random(5000) < 0.9
    coverages = [100, 99, 98, 97, 95, 90, 85, 80, 75, 70, 60, 50, 40, 30, 20, 10]
    shuffled = list(range(5000))
    random.seed(10)
    random.shuffle(shuffled)
    assert paper_order(5000).tolist() == shuffled
    rest = np.asarray(shuffled[2000:])
    want = original_bisection(torch.tensor(scores[rest]), torch.tensor(correct[rest]), coverages)
    got, n = paper_protocol(scores, ~correct, coverages)
    assert n == 3000
    for (cov, acc), (reached, error) in zip(want, got):
        assert reached == pytest.approx(cov) and error == pytest.approx(1 - acc)
        assert abs(reached * 100 - coverages[want.index((cov, acc))]) <= 0.3
    assert paper_bisection([0.2, 0.2, 0.2, 0.2], [False] * 4, [50])[0][0] == 1.0, "ties: stops, does not hang"


# ------------------------------------------------------------------------------------------
# the evaluator

class TableModel(nn.Module):
    """Predicts ``table[i]`` for the image whose single pixel is ``i / 255``."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))

    def forward(self, x):
        return self.table[(x.flatten(1)[:, 0] * 255).round().long()]


def test_risk_coverage_fits_thresholds_on_validation_and_reports_the_test_set(tmp_path):
    rng = np.random.default_rng(3)
    n_val, n_test, C = 120, 100, 3
    table = rng.normal(size=(n_val + n_test, C)) * rng.uniform(0.2, 4, size=(n_val + n_test, 1))
    labels = torch.as_tensor(rng.integers(0, C, n_val + n_test))
    image = torch.arange(n_val + n_test, dtype=torch.uint8).reshape(-1, 1, 1, 1)
    val = DeviceLoader(image[:n_val], labels[:n_val], batch_size=50)
    test = DeviceLoader(image[n_val:], labels[n_val:], batch_size=64)
    data = EvalData(test, val, None, C, val=val, run_dir=tmp_path)
    evaluator, cheap = build_evaluators(["risk-coverage", "selective-val"], {"selective_coverages": [100, 90, 50],
                                                                             "selective_val_every": 1})
    out = evaluator(TableModel(table), Objective(), data, 0)

    p = torch.softmax(torch.as_tensor(table), 1).numpy()
    sr = 1 - p.max(1)
    wrong = p.argmax(1) != labels.numpy()
    for coverage in (100, 90, 50):
        k = math.ceil(coverage * n_val / 100)
        threshold = np.inf if coverage == 100 else np.sort(sr[:n_val])[k - 1]
        kept = sr[n_val:] <= threshold
        assert out[f"coverage_{coverage}_sr"] == pytest.approx(kept.mean())
        assert out[f"selective_error_{coverage}_sr"] == pytest.approx(wrong[n_val:][kept].mean())
    assert out["test_aurc"] == out["test_aurc_sr"] == pytest.approx(aurc(sr[n_val:], wrong[n_val:]))
    assert out["test_eaurc_entropy"] == pytest.approx(eaurc((-p * np.log(p)).sum(1)[n_val:], wrong[n_val:]))
    saved = np.load(tmp_path / "selective_scores.npz")
    assert saved["wrong"].tolist() == wrong[n_val:].tolist() and str(saved["primary"]) == "sr"
    assert cheap(TableModel(table), Objective(), data, 0)["val_aurc"] == pytest.approx(aurc(sr[:n_val],
                                                                                                 wrong[:n_val]))
    with pytest.raises(SelfAdaptError, match="validation split"):
        evaluator(TableModel(table), Objective(), EvalData(test, val, None, C), 0)


# ------------------------------------------------------------------------------------------
# the command line, on real data

SELECTIVE = ["--dataset", "digits", "--model", "mlp", "--width", "64", "--epochs", "6", "--batch-size", "64",
             "--lr", "0.05", "--augment", "none", "--device", "cpu", "--no-progress", "--val-size", "300"]


@pytest.mark.parametrize("flags, message", [
    (["--method", "sat-selective", "--selective-coverages", "95,0"], "each lie in (0, 100]"),
    (["--method", "deep-gamblers", "--selective-coverages", "101"], "each lie in (0, 100]"),
    (["--method", "sat-selective", "--sat-pretrain-epochs", "2", "--val-size", "5000"], "leaves nothing to train on"),
    (["--method", "sat-selective", "--sat-pretrain-epochs", "6"], "selective SAT"),
    (["--method", "deep-gamblers", "--gamblers-pretrain-epochs", "2", "--gamblers-reward", "11"],
     "reward o must lie in"),
])
def test_bad_selective_settings_give_one_line(tmp_path, capsys, flags, message):
    assert main(["train", *SELECTIVE, *flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_risk_coverage_needs_a_validation_split(tmp_path, capsys):
    flags = [f for f in SELECTIVE if f not in ("--val-size", "300")]
    assert main(["train", *flags, "--method", "sat-selective", "--sat-pretrain-epochs", "2",
                 "--out", str(tmp_path / "run")]) == 2
    assert "--val-size" in capsys.readouterr().err


@pytest.mark.slow
def test_sat_selective_trains_on_real_data_and_its_abstain_score_ranks_errors_last(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SELECTIVE, "--method", "sat-selective", "--sat-pretrain-epochs", "2",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("val_aurc" in m for m in metrics) and "test_aurc" in metrics[-1]
    error = 1 - summary["final_test_accuracy"]
    assert 0 < error < 0.2
    # the abstain probability ranks the errors far better than chance (chance: AURC = error)
    assert summary["final_test_aurc_abstain"] < 0.5 * error
    assert summary["final_selective_error_80_abstain"] < error
    assert summary["final_coverage_100_abstain"] == 1.0
    saved = np.load(out / "selective_scores.npz")
    assert saved["score_abstain"].shape == saved["wrong"].shape and str(saved["primary"]) == "abstain"


@pytest.mark.slow
def test_report_tables_average_over_seeds_and_put_the_own_score_first(tmp_path):
    from selfadapt.apps.selective import markdown, mean_curve, plot_risk_coverage, plot_validation_aurc

    rng = np.random.default_rng(4)
    runs = []
    for seed, error in ((0, 0.02), (1, 0.04)):
        summary = {"final_test_accuracy": 0.9, "seconds": 10.0,
                   "final_test_aurc_abstain": 0.01, "final_test_aurc_sr": 0.03,
                   "final_test_eaurc_abstain": 0.005, "final_test_eaurc_sr": 0.02,
                   "final_selective_error_80_abstain": error, "final_coverage_80_abstain": 0.79 + seed / 100}
        wrong = rng.random(50) < 0.1
        metrics = [{"epoch": e, "val_aurc_abstain": 0.1 / (e + 1), "val_aurc_sr": 0.05} for e in range(3)]
        runs.append({"name": f"sat-selective-none-s{seed}", "label": "sat-selective", "seed": seed, "summary": summary,
                     "metrics": metrics,
                     "scores": {"primary": np.array("abstain"), "wrong": wrong, "score_abstain": rng.random(50),
                                "score_sr": rng.random(50)}})
    text = markdown(runs, "selfadapt bench GRID --out OUT")
    rows = [line for line in text.splitlines() if line.startswith("| sat-selective | ")]
    assert rows[0].startswith("| sat-selective | abstain (own) | ") and "| sr |" in rows[1]
    assert "3.00 ± 1.41 (79.5)" in rows[0], "80%: mean ± sample std of 2% and 4%, mean coverage reached"
    assert "| 1.00 ± 0.00 | 0.50 ± 0.00 | 2 |" in rows[0]
    grid = np.linspace(0.1, 1, 10)
    curves = [np.interp(grid, *risk_coverage_curve(r["scores"]["score_sr"], r["scores"]["wrong"])) for r in runs]
    assert mean_curve(runs, "sr", grid) == pytest.approx(np.mean(curves, axis=0))
    assert plot_risk_coverage(runs, tmp_path / "rc.png").stat().st_size > 1000
    assert plot_validation_aurc(runs, tmp_path / "val.png").stat().st_size > 1000
