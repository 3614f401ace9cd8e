"""Pretrained Hugging Face backbones (--model hf:...), selfadapt embed and --freeze-backbone, on tiny
models of every family saved with save_pretrained in the test (the real loading code, no download)."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from hf_tiny import CIFAR_JPEGS, FAMILIES, cifar_folder, save_tiny, save_tiny_bert  # noqa: E402

from selfadapt import embedding  # noqa: E402
from selfadapt.cli import main  # noqa: E402
from selfadapt.data.registry import load_dataset  # noqa: E402
from selfadapt.errors import SelfAdaptError  # noqa: E402
from selfadapt.models import build_model  # noqa: E402
from selfadapt.models.hf import load_backbone  # noqa: E402

needs_cifar = pytest.mark.skipif(not CIFAR_JPEGS.is_file(), reason=f"{CIFAR_JPEGS} (real CIFAR-10 JPEGs) is absent")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {family: save_tiny(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    if not CIFAR_JPEGS.is_file():
        pytest.skip(f"{CIFAR_JPEGS} (real CIFAR-10 JPEGs) is absent")
    return cifar_folder(tmp_path_factory.mktemp("photos"), train_per_class=40, test_per_class=10)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFADAPT_CACHE", str(tmp_path / "cache"))


def reference_features(folder: Path, images: torch.Tensor) -> torch.Tensor:
    """What transformers itself gives: the processor on the uint8 images, the model's own forward,
    its pooled output (ViT: the class token, as ViTForImageClassification reads it)."""
    import transformers as t

    config = t.AutoConfig.from_pretrained(folder)
    tower = {"clip": t.CLIPVisionModel, "siglip": t.SiglipVisionModel}.get(config.model_type, t.AutoModel)
    model = tower.from_pretrained(folder).eval()
    processor = t.AutoImageProcessor.from_pretrained(folder)
    inputs = processor(images=[image.permute(1, 2, 0).numpy() for image in images], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    return out.last_hidden_state[:, 0] if config.model_type == "vit" else out.pooler_output.flatten(1)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_loads_and_its_features_equal_the_models_own_forward_pass(models, family):
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    model = build_model(f"hf:{models[family]}", num_classes=5).eval()
    with torch.no_grad():
        ours = model.features(images.float() / 255)
        logits = model(images.float() / 255)
    expected = reference_features(models[family], images)
    assert model.feature_dim == expected.shape[1] and logits.shape == (3, 5)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_resizing_inside_the_model_matches_the_processor_on_other_sizes(models):
    """A 24 x 40 photo: the short side resized to 32 (bicubic), the centre cropped to 28, normalised;
    the processor resizes uint8 with PIL, so pixels agree to rounding, not bit for bit."""
    import transformers as t

    loaded = load_backbone(f"hf:{models['dinov2']}")
    image = torch.randint(0, 256, (1, 3, 24, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    image = torch.nn.functional.avg_pool2d(image.float(), 3, 1, 1).round().to(torch.uint8)  # smooth, as photos are
    processor = t.AutoImageProcessor.from_pretrained(models["dinov2"])
    expected = processor(images=[image[0].permute(1, 2, 0).numpy()], return_tensors="pt")["pixel_values"]
    ours = loaded.input(image.float() / 255)
    assert ours.shape == expected.shape == (1, 3, 28, 28)
    assert (ours - expected).abs().mean() < 0.01 and (ours - expected).abs().max() < 0.1


def test_grey_images_are_repeated_to_rgb(models):
    model = build_model(f"hf:{models['resnet']}", num_classes=3, in_channels=1).eval()
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(grey), model(grey.expand(-1, 3, -1, -1)))


@needs_cifar
def test_embed_writes_what_features_reads_equal_to_transformers_and_byte_identical_twice(models, photos, tmp_path):
    out = tmp_path / "emb.npz"
    args = ["embed", "--model", f"hf:{models['dinov2']}", "--dataset", f"imagefolder:{photos}", "--device", "cpu",
            "--batch-size", "16", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    data = load_dataset(f"imagefolder:{photos}")
    with np.load(out) as npz:
        x, ids, classes = npz["X"], npz["ids"].tolist(), npz["classes"].tolist()
        assert json.loads(str(npz["info"]))["input_size"] == [28, 28] and npz["X_test"].shape == (30, 32)
    assert x.shape == (120, 32) and ids == data.train.files and classes == ["airplane", "cat", "ship"]
    torch.testing.assert_close(torch.from_numpy(x), reference_features(models["dinov2"], data.train.images),
                               rtol=1e-4, atol=1e-5)
    features = load_dataset(f"features:{out}")
    assert features.train.files == ids and torch.equal(features.train.labels, data.train.labels)
    assert main([*args, "--out", str(tmp_path / "again.npz")]) == 0
    assert (tmp_path / "again.npz").read_bytes() == out.read_bytes()
    assert not Path(f"{out}.parts").exists()


@pytest.mark.slow
def test_embed_killed_midway_resumes_to_the_same_bytes(models, tmp_path, monkeypatch):
    """A real process killed (SIGKILL) after its first chunks; the same command continues from the
    chunks on disk (not recomputed) and writes exactly what an uninterrupted run writes."""
    command = [sys.executable, "-m", "selfadapt", "embed", "--model", f"hf:{models['vit']}", "--dataset", "digits",
               "--device", "cpu", "--batch-size", "4", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out, parts = tmp_path / "emb.npz", tmp_path / "emb.npz.parts" / "train"
    process = subprocess.Popen([*command, "--out", str(out)], env=env)
    deadline = time.time() + 120
    while not (parts / "chunk-000001.npy").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in parts.glob("chunk-*.npy")}
    assert kept and not out.exists(), "the run finished before it could be interrupted"
    computed = []
    embed_rows = embedding._embed_rows
    monkeypatch.setattr(embedding, "_embed_rows", lambda *a: computed.append(a[2]) or embed_rows(*a))
    assert main([*command[3:], "--out", str(out)]) == 0  # the same command again (here in-process, 1 thread)
    train_chunks = -(-1297 // 64)  # chunks of 4 x 16 rows
    assert len(kept) < train_chunks and len(computed) == train_chunks - len(kept) + -(-500 // 64)
    assert main([*command[3:], "--out", str(tmp_path / "whole.npz")]) == 0
    assert out.read_bytes() == (tmp_path / "whole.npz").read_bytes()


def test_sat_head_on_cached_features_finds_injected_errors_and_reuses_the_cache(models, tmp_path, capsys):
    """Real digits through a tiny random ConvNeXt (whose pooled features a linear probe reads at
    about 96% test accuracy), 20% of the labels flipped; SAT trains a linear head on the cached features."""
    base = ["find-label-issues", "--model", f"hf:{models['convnext']}", "--dataset", "digits",
            "--noise", "symmetric-exclusive", "--noise-rate", "0.2", "--epochs", "30", "--batch-size", "64",
            "--device", "cpu", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "find-label-issues defaults: --freeze-backbone --augment none" in printed
    cached = sorted((tmp_path / "cache" / "features").glob("*.npy"))
    assert len(cached) == 2  # training and test images
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["label_issues"]["true_errors"] == 259 and summary["label_issues"]["f1"] > 0.7
    assert summary["final_test_accuracy"] > 0.85
    rows = list(csv.DictReader(open(tmp_path / "a" / "label_scores.csv", newline="")))
    assert len(rows) == 1297 and (tmp_path / "a" / "label_issues.png").is_file()  # tiles of the images
    assert main([*base, "--seed", "1", "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.count("features from the cache") == 2
    assert sorted((tmp_path / "cache" / "features").glob("*.npy")) == cached


def test_training_the_whole_network_scales_the_backbones_learning_rate(models, tmp_path):
    assert main(["train", "--model", f"hf:{models['convnext']}", "--dataset", "digits", "--subset", "64",
                 "--test-subset", "32", "--method", "sat", "--epochs", "2", "--batch-size", "32", "--lr", "0.05",
                 "--backbone-lr-scale", "0.2", "--augment", "none", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 0.2]
    assert groups[1]["lr"] == pytest.approx(groups[0]["lr"] * 0.2) and groups[0]["lr"] > 0
    backbone = list(build_model(f"hf:{models['convnext']}", num_classes=10).backbone.parameters())
    assert len(groups[0]["params"]) == 2 and len(groups[1]["params"]) == len(backbone)  # the head; the backbone


@pytest.mark.parametrize("flags,message", [
    (["--model", "resnet18", "--freeze-backbone"], "--freeze-backbone needs a pretrained backbone"),
    (["--model", "HF", "--head", "mlp"], "--head chooses the head on a frozen backbone"),
    (["--model", "HF", "--freeze-backbone", "--augment", "crop-flip"], "add --augment none"),
    (["--model", "HF", "--freeze-backbone", "--augment", "none", "--method", "trades"], "works on the images"),
    (["--model", "HF", "--width", "64"], "--width sets the hidden units of --head mlp only"),
])
def test_settings_a_frozen_backbone_cannot_serve_are_one_line(models, tmp_path, capsys, flags, message):
    flags = [f"hf:{models['vit']}" if f == "HF" else f for f in flags]
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--device", "cpu", *flags,
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and not (tmp_path / "run").exists()


def test_a_text_model_is_refused_as_not_an_image_model(tmp_path):
    with pytest.raises(SelfAdaptError, match="is a bert model \\(its input is input_ids\\), not an image model"):
        load_backbone(f"hf:{save_tiny_bert(tmp_path / 'bert')}")


def test_folders_that_hold_no_model_or_no_processor_are_one_line(models, tmp_path):
    with pytest.raises(SelfAdaptError, match="no such folder"):
        load_backbone(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SelfAdaptError, match="holds no config.json"):
        load_backbone(f"hf:{tmp_path / 'empty'}")
    model_only = tmp_path / "model-only"
    model_only.mkdir()
    (model_only / "config.json").write_bytes((models["vit"] / "config.json").read_bytes())
    with pytest.raises(SelfAdaptError, match="cannot load its image processor"):
        load_backbone(f"hf:{model_only}")


@pytest.mark.parametrize("name", ["hf:not a model id!", "hf:a/b/c", "hf:"])
def test_malformed_model_ids_are_one_line(name):
    with pytest.raises(SelfAdaptError, match="neither a folder nor a hub model id|needs a hub id"):
        load_backbone(name)


def test_a_model_the_hub_does_not_have_is_one_line(monkeypatch, tmp_path):
    """The hub's 404 for an unknown id (huggingface_hub's RepositoryNotFoundError, which transformers
    re-raises as an OSError) becomes one line; the download function is replaced, as no hub is reachable here."""
    import httpx2
    import transformers.utils.hub
    from huggingface_hub import constants
    from huggingface_hub.errors import RepositoryNotFoundError

    def not_found(repo_id, filename, **kwargs):
        url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
        raise RepositoryNotFoundError("404 Client Error: Repository Not Found",
                                      response=httpx2.Response(404, request=httpx2.Request("HEAD", url)))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("selfadapt.hub.unreachable", lambda: "")  # as if the hub answered
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(transformers.utils.hub, "hf_hub_download", not_found)
    with pytest.raises(SelfAdaptError, match="hf:nobody/no-such-model: no such model on the Hugging Face hub"):
        load_backbone("hf:nobody/no-such-model")


def test_offline_without_the_model_in_the_cache_is_one_line_naming_how_to_get_it(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "selfadapt", "embed", "--model", "hf:facebook/dinov2-small",
                             "--dataset", "digits", "--out", str(tmp_path / "e.npz")], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stdout == ""
    line = result.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("selfadapt: error: hf:facebook/dinov2-small is not in the ")
    assert "`hf download facebook/dinov2-small`" in line and "save_pretrained" in line
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.slow
def test_an_unreachable_hub_is_one_line_without_the_hub_clients_warnings(tmp_path):
    """The hub on (no HF_HUB_OFFLINE) but unreachable (a closed local port): one line, nothing else."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run([sys.executable, "-m", "selfadapt", "embed", "--model", "hf:facebook/dinov2-small",
                             "--dataset", "digits", "--out", str(tmp_path / "e.npz")], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    line = result.stderr.strip()
    assert line.count("\n") == 0 and "the hub cannot be reached" in line, result.stderr
    assert "`hf download facebook/dinov2-small`" in line


def test_a_hub_model_in_the_cache_loads_offline(models, tmp_path):
    """The hub's cache layout (models--ORG--NAME/snapshots/REV/, refs/main), filled from a saved
    tiny model as `hf download` leaves it: loaded with the hub off."""
    snapshot = tmp_path / "hf" / "hub" / "models--tiny--dinov2" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for file in models["dinov2"].iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abc")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "SELFADAPT_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "selfadapt", "embed", "--model", "hf:tiny/dinov2", "--dataset",
                             "digits", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "e.npz")], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "e.npz") as npz:
        assert npz["X"].shape == (1297, 32) and json.loads(str(npz["info"]))["model"] == "hf:tiny/dinov2"


def test_a_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(SelfAdaptError, match=r"pip install 'selfadapt\[hf\]'"):
        load_backbone("hf:facebook/dinov2-small")


def test_embed_refuses_what_it_cannot_embed_before_writing(models, tmp_path):
    for flags, message in ((["--model", "resnet18"], "embed takes a pretrained backbone"),
                           (["--model", f"hf:{models['vit']}", "--out", str(tmp_path / "x.csv")], "must end in .npz")):
        args = ["--dataset", "digits", "--out", str(tmp_path / "x.npz"), *flags]
        with pytest.raises(SelfAdaptError, match=message):
            import argparse

            from selfadapt.apps import embed
            parser = argparse.ArgumentParser()
            embed.add_arguments(parser)
            embed.run(parser.parse_args(args))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_runs_started_together_share_one_computation_of_the_frozen_features(models, tmp_path):
    """Two runs of a grid on the same images and backbone (as `bench --jobs 2` starts them): one
    computes the features, the other waits and reads them; both train."""
    base = [sys.executable, "-m", "selfadapt", "train", "--dataset", "digits", "--model", f"hf:{models['dinov2']}",
            "--freeze-backbone", "--augment", "none", "--epochs", "1", "--method", "ce", "--device", "cpu",
            "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    runs = [subprocess.Popen([*base, "--seed", str(seed), "--out", str(tmp_path / f"run{seed}")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for seed in (0, 1)]
    printed = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], printed
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 2  # training and test images, once each
    assert not list((tmp_path / "cache" / "features").glob("*.parts"))


def test_a_second_process_embedding_into_the_same_folder_is_one_line_naming_the_first(models, tmp_path):
    from selfadapt.engine.lock import DirectoryLock

    parts = tmp_path / "emb.npz.parts" / "train"
    parts.mkdir(parents=True)
    holder = DirectoryLock(parts).acquire()  # as another process's embed holds it
    holder.announce()
    try:
        with pytest.raises(SelfAdaptError, match="the folder of finished chunks .* is in use by another selfadapt "
                                                 "process \\(PID"):
            main_raising(["embed", "--model", f"hf:{models['vit']}", "--dataset", "digits", "--device", "cpu",
                          "--no-progress", "--out", str(tmp_path / "emb.npz")])
    finally:
        holder.release()
    assert not (tmp_path / "emb.npz").exists()


def main_raising(argv):
    """The command's function itself (its error raised, not printed)."""
    from selfadapt.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)


def test_the_feature_cache_key_follows_the_images_and_the_weights(models, tmp_path):
    from selfadapt.embedding import module_digest
    from selfadapt.frozen_backbone import cached_features

    extractor = load_backbone(f"hf:{models['vit']}").extractor()
    key = module_digest(extractor)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    first = cached_features(extractor, key, images, device="cpu", what="x", verbose=False)
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 1
    assert torch.equal(cached_features(extractor, key, images, device="cpu", what="x", verbose=False), first)
    cached_features(extractor, key, images.flip(0), device="cpu", what="x", verbose=False)
    with torch.no_grad():
        extractor[1].model.embeddings.patch_embeddings.projection.weight.add_(1)
    cached_features(extractor, module_digest(extractor), images, device="cpu", what="x", verbose=False)
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 3
