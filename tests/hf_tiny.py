"""Tiny Hugging Face vision models of every supported family, built from a config and written with
``save_pretrained`` (model and image processor), so the tests exercise the real loading code with
no download. Also a small image folder of real CIFAR-10 JPEGs."""
from __future__ import annotations

import tarfile
from pathlib import Path

FAMILIES = ("vit", "dinov2", "convnext", "resnet", "swin", "clip", "siglip")
_ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (a worktree one level deeper looks one further up)
SHARED_DATA = next((p for p in (_ROOT.parent / "shared" / "data", _ROOT.parents[1] / "shared" / "data") if p.is_dir()),
                   _ROOT.parent / "shared" / "data")
CIFAR_JPEGS = SHARED_DATA / "cifar10-jpeg.tar.gz"
_TOWER = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def tiny_model(family: str):
    """``(model, image processor)`` of ``family``, randomly initialised (seed 0), for 32 x 32 images."""
    import torch
    import transformers as t

    torch.manual_seed(0)
    imagenet = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    if family == "vit":
        return (t.ViTModel(t.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                       image_size=32, patch_size=8)),
                t.ViTImageProcessor(size={"height": 32, "width": 32}))
    if family == "dinov2":  # the real processor's recipe: resize the short side, then a centre crop
        return (t.Dinov2Model(t.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                             image_size=28, patch_size=7)),
                t.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28},
                                    resample=3, **imagenet))
    if family == "convnext":
        return (t.ConvNextModel(t.ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1])),
                t.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0, **imagenet))
    if family == "resnet":
        return (t.ResNetModel(t.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 48], depths=[1, 1, 1, 1])),
                t.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0, **imagenet))
    if family == "swin":
        return (t.SwinModel(t.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                                         window_size=4)),
                t.ViTImageProcessor(size={"height": 32, "width": 32}, **imagenet))
    if family == "clip":  # the whole dual-tower checkpoint, as on the hub: selfadapt takes its vision tower
        return (t.CLIPModel(t.CLIPConfig(text_config=dict(_TOWER, vocab_size=100),
                                         vision_config=dict(_TOWER, image_size=32, patch_size=8), projection_dim=8)),
                t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}))
    if family == "siglip":
        return (t.SiglipModel(t.SiglipConfig(text_config=dict(_TOWER, vocab_size=100),
                                             vision_config=dict(_TOWER, image_size=32, patch_size=8))),
                t.SiglipImageProcessor(size={"height": 32, "width": 32}))
    raise ValueError(family)


def save_tiny(family: str, folder: Path) -> Path:
    model, processor = tiny_model(family)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_bert(folder: Path) -> Path:
    """A text model (with no image processor), saved like a vision one."""
    import transformers as t

    t.BertModel(t.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             vocab_size=100)).save_pretrained(folder)
    return folder


def cifar_folder(root: Path, train_per_class: int, test_per_class: int, classes=("airplane", "cat", "ship")) -> Path:
    """An image folder ``root/{train,test}/<class>/`` of the first real CIFAR-10 JPEGs of ``classes``."""
    wanted = {**{("train", c): train_per_class for c in classes}, **{("test", c): test_per_class for c in classes}}
    taken = dict.fromkeys(wanted, 0)
    with tarfile.open(CIFAR_JPEGS) as tar:
        for member in tar:
            parts = member.name.split("/")[-3:]
            key = tuple(parts[:2])
            if member.isfile() and key in wanted and taken[key] < wanted[key]:
                (root / key[0] / key[1]).mkdir(parents=True, exist_ok=True)
                (root / key[0] / key[1] / parts[2]).write_bytes(tar.extractfile(member).read())
                taken[key] += 1
            if taken == wanted:
                break
    return root
