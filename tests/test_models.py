"""Models: shapes, gradients, the standard parameter counts, normalisation inside, errors."""
import pytest
import torch
from torch import nn

from selfadapt.errors import SelfAdaptError
from selfadapt.models import MODELS, Classifier, Normalize, build_model, model_names


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny batches gain nothing from threads, and on a shared machine OpenMP spin-waits cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NAMES = ["resnet18", "resnet34", "resnet50", "preact-resnet18", "wrn-28-10", "wrn-34-10", "vgg16-bn", "cnn", "mlp", "linear"]


def test_registry_lists_every_model():
    assert model_names() == NAMES == list(MODELS)


def test_a_model_without_a_width_refuses_one():
    assert build_model("linear", num_classes=3, in_channels=1, image_size=4)(torch.rand(2, 1, 4, 4)).shape == (2, 3)
    with pytest.raises(SelfAdaptError, match="model linear has no width; drop --width"):
        build_model("linear", num_classes=3, width=8)


def small_width(name: str) -> int | None:
    return None if MODELS[name].width is None else max(1, MODELS[name].width // 4)


BIG = ("resnet18", "resnet34", "preact-resnet18", "wrn-28-10", "wrn-34-10", "vgg16-bn")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in NAMES])
@pytest.mark.parametrize("channels", [1, 3])
def test_forward_backward_shapes(name, channels):
    torch.manual_seed(0)
    width = small_width(name) if channels == 1 else None  # the default width once, cheaply elsewhere
    model = build_model(name, num_classes=7, in_channels=channels, image_size=8, width=width)
    assert isinstance(model, Classifier) and isinstance(model.head, nn.Linear)
    x = torch.rand(2, channels, 8, 8)
    feats = model.features(x)
    assert feats.shape == (2, model.feature_dim) == (2, model.head.in_features)
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_and_bf16_autocast(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, image_size=8, width=small_width(name))
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.shape == (2, 5) and logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    assert model.head.weight.grad is not None


@pytest.mark.parametrize("name,size", [("resnet18", 96), ("preact-resnet18", 28), ("vgg16-bn", 28),
                                       ("cnn", 28), ("cnn", 32), ("mlp", 28)])
def test_dataset_image_sizes(name, size):
    model = build_model(name, num_classes=10, in_channels=1, image_size=size, width=4 if name != "mlp" else 16)
    assert model(torch.rand(2, 1, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name,count", [("resnet18", 11_173_962), ("resnet34", 21_282_122),
                                        ("wrn-28-10", 36_479_194), ("wrn-34-10", 46_160_474)])
def test_standard_parameter_counts(name, count):
    model = build_model(name, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == count
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())  # buffers, not parameters


def test_width_one_resnet18_and_width_scaling():
    model = build_model("resnet18", num_classes=10, width=1)
    assert model.feature_dim == 8
    assert model(torch.rand(4, 3, 32, 32)).shape == (4, 10)
    assert build_model("wrn-28-10", num_classes=10, width=2).feature_dim == 128
    assert build_model("mlp", num_classes=10, width=64).feature_dim == 64


def test_normalize_is_inside_the_model():
    x = torch.rand(3, 3, 16, 16)
    torch.manual_seed(0)
    a = build_model("cnn", num_classes=4, image_size=16).eval()
    torch.manual_seed(0)
    b = build_model("cnn", num_classes=4, image_size=16, mean=[0.4914, 0.4822, 0.4465], std=[0.5, 0.5, 0.5]).eval()
    torch.manual_seed(0)
    c = build_model("cnn", num_classes=4, image_size=16).eval()
    with torch.no_grad():
        assert torch.equal(a(x), c(x))  # same seed, same model
        assert not torch.allclose(a(x), b(x))
        manual = a.head(a.backbone((x - 0.5) / 0.5))
        assert torch.allclose(a(x), manual, atol=1e-6)
    norm = Normalize([0.2, 0.4], [0.5, 0.25])
    assert torch.allclose(norm(torch.ones(1, 2, 1, 1)).flatten(), torch.tensor([1.6, 2.4]))
    assert not list(norm.parameters())


def test_state_dict_round_trip_keeps_normalisation():
    a = build_model("mlp", num_classes=3, in_channels=1, image_size=8, mean=[0.1], std=[0.3]).eval()
    b = build_model("mlp", num_classes=3, in_channels=1, image_size=8).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(a(x), b(x))


def test_convolutions_use_kaiming_init():
    model = build_model("resnet18", num_classes=10, width=16)
    w = model.backbone.layers[-1].conv2.weight  # 128 x 128 x 3 x 3, fan_out = 1152
    assert abs(w.std().item() - (2 / 1152) ** 0.5) < 0.005


def dropout_rates(model: nn.Module) -> list[float]:
    return sorted({m.p for m in model.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d))})


def test_dropout_is_honoured():
    vgg = build_model("vgg16-bn", num_classes=10, width=8, dropout=0.5)
    assert dropout_rates(vgg) == pytest.approx([0.3, 0.4, 0.5])  # the Deep Gamblers / SAT selective network
    x = torch.rand(4, 3, 32, 32)
    vgg.train()
    assert not torch.equal(vgg(x), vgg(x))
    vgg.eval()
    assert torch.equal(vgg(x), vgg(x))
    wrn = build_model("wrn-28-10", num_classes=10, width=1, dropout=0.3)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in wrn.modules())
    assert dropout_rates(build_model("vgg16-bn", num_classes=10, width=8, dropout=0.25)) == pytest.approx(
        [0.15, 0.2, 0.25])
    plain = build_model("vgg16-bn", num_classes=10, width=8, dropout=0.0)
    assert all(m.p == 0 for m in plain.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d)))
    torch.manual_seed(0)
    a = plain(x)
    torch.manual_seed(1)
    assert torch.equal(a, plain(x))  # train mode, other random state: nothing is dropped


@pytest.mark.parametrize("name", NAMES)
def test_default_dropout_per_model(name):
    expected = {"vgg16-bn": 0.5, "resnet18": None, "resnet34": None, "resnet50": None, "preact-resnet18": None,
                "linear": None}.get(name, 0.0)
    assert MODELS[name].dropout == expected
    model = build_model(name, num_classes=3, image_size=8, width=small_width(name))
    if name == "vgg16-bn":
        assert dropout_rates(model) == pytest.approx([0.3, 0.4, 0.5])  # the reference network by default
    else:
        assert dropout_rates(model) in ([], [0.0])  # off, as before
    assert dropout_rates(build_model(name, num_classes=3, image_size=8, width=small_width(name),
                                     dropout=0.0)) in ([], [0.0])


def test_unknown_name_and_bad_arguments_raise():
    with pytest.raises(SelfAdaptError, match="resnet18, resnet34, resnet50, preact-resnet18"):
        build_model("resnet101", num_classes=10)
    with pytest.raises(SelfAdaptError, match="one value per channel"):
        build_model("cnn", num_classes=10, in_channels=1, mean=[0.5, 0.5, 0.5])
    with pytest.raises(SelfAdaptError, match="one value per channel"):
        build_model("cnn", num_classes=10, std=[0.2])
    with pytest.raises(SelfAdaptError, match="std must be positive"):
        build_model("cnn", num_classes=10, in_channels=1, std=[0.0])
    with pytest.raises(SelfAdaptError, match="no dropout option.*vgg16-bn"):
        build_model("resnet18", num_classes=10, dropout=0.5)
    with pytest.raises(SelfAdaptError, match="dropout must lie"):
        build_model("mlp", num_classes=10, dropout=1.0)
    with pytest.raises(SelfAdaptError, match="width must be a positive integer"):
        build_model("resnet18", num_classes=10, width=0)
    with pytest.raises(SelfAdaptError, match="num_classes"):
        build_model("mlp", num_classes=0)
