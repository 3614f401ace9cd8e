"""ResNets for larger images: the ImageNet stem, ResNet-50, and torchvision's parameter counts."""
import pytest
import torch

from selfadapt.errors import SelfAdaptError
from selfadapt.models import build_model
from selfadapt.models.resnet import resolve_stem


@pytest.mark.parametrize("name,count", [("resnet18", 11_689_512), ("resnet34", 21_797_672),
                                        ("resnet50", 25_557_032)])
def test_imagenet_parameter_counts_match_the_standard_definitions(name, count):
    """torchvision's resnet18/34/50 with 1,000 classes (the counts of the original definitions)."""
    model = build_model(name, num_classes=1000, image_size=224, stem="imagenet")
    assert sum(p.numel() for p in model.parameters()) == count


def test_auto_stem_follows_the_image_size():
    small = build_model("resnet18", num_classes=10, image_size=32, width=4)
    large = build_model("resnet18", num_classes=10, image_size=224, width=4)
    assert small.backbone.stem[0].kernel_size == (3, 3) and small.backbone.stem[0].stride == (1, 1)
    assert large.backbone.stem[0].kernel_size == (7, 7) and isinstance(large.backbone.stem[-1], torch.nn.MaxPool2d)
    assert resolve_stem("auto", 127) == "cifar" and resolve_stem("auto", 128) == "imagenet"
    forced = build_model("resnet18", num_classes=10, image_size=224, width=4, stem="cifar")
    assert forced.backbone.stem[0].kernel_size == (3, 3)


def test_imagenet_stem_reduces_the_first_stage_four_times():
    """The point of the stem: at 128 px the first stage sees 32 x 32, as the CIFAR stem at 32 px."""
    seen = {}
    model = build_model("resnet18", num_classes=10, image_size=128, width=4)
    model.backbone.layers[0].register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
    model(torch.rand(2, 3, 128, 128))
    assert seen["shape"] == (2, 4, 32, 32)


def test_resnet50_trains_a_step_on_grey_images():
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=3, in_channels=1, image_size=64, width=4, stem="imagenet")
    loss = torch.nn.functional.cross_entropy(model(torch.rand(4, 1, 64, 64)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert model.feature_dim == 4 * 8 * 4 and all(p.grad is not None for p in model.parameters())


def test_unknown_stem_is_one_error():
    with pytest.raises(SelfAdaptError, match="unknown stem 'vit'; choose from auto, cifar, imagenet"):
        build_model("resnet18", num_classes=10, stem="vit")
