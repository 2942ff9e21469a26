"""mnv3's model against torchvision's MobileNetV3, the published numbers and the paper's formulas.

Every expected value here is either torchvision's (its models, its published parameter counts) or
the paper's (formulas, tables); none is a recorded output of mnv3 itself.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

# Imported from the submodules, so the tests run even where `import mnv3` resolves to a bare
# namespace package (a stale editable install); test_public_api checks the package's exports.
from mnv3.layers import HardSigmoid, HardSwish, Sigmoid, Swish
from mnv3.model import MobileNetV3, build_model
from mnv3.spec import SpecError, load_spec
from mnv3.torchvision_compat import from_torchvision, randomize_weights_, to_torchvision

TV_BUILDERS = {"small": torchvision.models.mobilenet_v3_small, "large": torchvision.models.mobilenet_v3_large}

# Published parameter counts: torchvision's model cards (1000 classes) and the 10-class heads.
PUBLISHED_PARAMS = {
    ("small", 1000): 2_542_856,
    ("large", 1000): 5_483_032,
    ("small", 10): 1_528_106,
    ("large", 10): 4_214_842,
}

VARIANTS = [
    ("small", 1000, 1.0),
    ("large", 1000, 1.0),
    ("small", 10, 1.0),
    ("large", 10, 1.0),
    ("small", 1000, 0.75),
    ("large", 1000, 0.75),
    ("small", 10, 0.75),
    ("large", 10, 0.75),
]


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())




def random_tv(arch: str, num_classes: int = 10, width_mult: float = 1.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_weights_(TV_BUILDERS[arch](num_classes=num_classes, width_mult=width_mult), seed)


# ------------------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize("arch,num_classes,width", VARIANTS)
def test_parameter_count_equals_torchvision(arch, num_classes, width):
    ours = build_model(arch, num_classes=num_classes, width_mult=width)
    theirs = TV_BUILDERS[arch](num_classes=num_classes, width_mult=width)
    assert n_params(ours) == n_params(theirs)
    if width == 1.0:
        assert n_params(ours) == PUBLISHED_PARAMS[(arch, num_classes)]


@pytest.mark.parametrize("arch,num_classes,width", VARIANTS)
def test_state_dict_keys_and_shapes_equal_torchvision(arch, num_classes, width):
    ours = build_model(arch, num_classes=num_classes, width_mult=width).state_dict()
    theirs = TV_BUILDERS[arch](num_classes=num_classes, width_mult=width).state_dict()
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


# ------------------------------------------------------------------------------ weight transfer


@pytest.mark.parametrize("arch,width,sizes", [("small", 1.0, (224, 32)), ("large", 1.0, (224, 32)), ("small", 0.75, (32,))])
def test_from_torchvision_eval_outputs_equal(arch, width, sizes):
    tv = random_tv(arch, width_mult=width).eval()
    ours = from_torchvision(tv)
    assert isinstance(ours, MobileNetV3) and not ours.training
    torch.manual_seed(1)
    for size in sizes:
        batch = 1 if size > 64 else 2  # one image at 224 keeps the test fast
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            expected, got = tv(x), ours(x)
        assert got.shape == expected.shape == (batch, 10)
        assert (got - expected).abs().max().item() <= 1e-5
        # The comparison means something: the output depends on the input far beyond the tolerance.
        with torch.no_grad():
            assert (tv(torch.randn_like(x)) - expected).abs().max().item() > 1e-2


def test_from_torchvision_detects_a_different_weight():
    """Negative control: one changed BN statistic must show up in the outputs at the 1e-5 level."""
    tv = random_tv("small").eval()
    ours = from_torchvision(tv)
    with torch.no_grad():
        ours.features[5].block[1][1].running_var.mul_(1.5)
        x = torch.randn(1, 3, 32, 32)
        assert (ours(x) - tv(x)).abs().max().item() > 1e-5


@pytest.mark.parametrize("arch", ["small", "large"])
@pytest.mark.parametrize("size,batch", [(224, 2), (32, 4)])
def test_from_torchvision_train_forward_equal(arch, size, batch):
    tv = random_tv(arch).train()
    ours = from_torchvision(tv)
    assert ours.training
    x = torch.randn(batch, 3, size, size)
    torch.manual_seed(1234)
    expected = tv(x)
    torch.manual_seed(1234)
    got = ours(x)
    assert (got - expected).abs().max().item() <= 1e-5
    # BN running statistics moved the same way (and did move).
    tv_state, our_state = tv.state_dict(), ours.state_dict()
    moved = 0
    for key, value in tv_state.items():
        if key.endswith(("running_mean", "running_var")):
            assert torch.allclose(our_state[key], value, rtol=0, atol=1e-6), key
        elif key.endswith("num_batches_tracked"):
            assert our_state[key].item() == value.item() == 1, key
            moved += 1
    assert moved > 0
    # Dropout was active: an eval forward gives different logits.
    with torch.no_grad():
        assert (ours.eval()(x) - got.detach()).abs().max().item() > 1e-4


@pytest.mark.parametrize("arch,width", [("small", 1.0), ("large", 1.0), ("large", 0.75)])
def test_round_trip_is_identical(arch, width):
    tv = random_tv(arch, num_classes=1000, width_mult=width)
    back = to_torchvision(from_torchvision(tv))
    assert isinstance(back, torchvision.models.MobileNetV3)
    original, returned = tv.state_dict(), back.state_dict()
    assert list(returned) == list(original)
    for key in original:
        assert torch.equal(returned[key], original[key]), key


@pytest.mark.parametrize(
    "arch,kwargs,input_shape",
    [
        ("small", {"in_channels": 1}, (2, 1, 28, 28)),  # MNIST
        ("small", {"drop_first_strides": 2}, (2, 3, 32, 32)),  # CIFAR-10 "stride 1" model
        ("large", {"in_channels": 1}, (2, 1, 28, 28)),
        ("large", {"in_channels": 1, "drop_first_strides": 2}, (2, 1, 28, 28)),
    ],
)
def test_to_torchvision_of_custom_stem_gives_equal_outputs(arch, kwargs, input_shape):
    torch.manual_seed(0)
    ours = randomize_weights_(build_model(arch, num_classes=10, **kwargs), seed=3).eval()
    tv = to_torchvision(ours).eval()
    assert isinstance(tv, torchvision.models.MobileNetV3)
    assert tv.features[0][0].in_channels == input_shape[1]
    x = torch.randn(*input_shape)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert (got - expected).abs().max().item() <= 1e-5
    assert (expected[0] - expected[1]).abs().max().item() > 1e-2


def test_from_torchvision_rejects_dilated_model():
    with pytest.raises(ValueError, match="dilated"):
        from_torchvision(torchvision.models.mobilenet_v3_small(dilated=True))


def _quantizable_large() -> nn.Module:
    from torchvision.models import quantization

    return quantization.mobilenet_v3_large(weights=None, quantize=False, num_classes=10).eval()


def test_from_torchvision_takes_the_unfused_quantizable_float_model():
    """The model the fused-model error points to does convert, with equal outputs."""
    tv = randomize_weights_(_quantizable_large(), seed=3)
    ours = from_torchvision(tv).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max().item() <= 1e-5


FUSED_MESSAGE = (r"fused or quantized models are not supported \(features\.0\.1 \(torch\.nn\.modules\.linear\.Identity\) "
                 r"comes from fuse_model\(\) or quantization\); pass the unfused float model, e\.g\. "
                 r"torchvision\.models\.quantization\.mobilenet_v3_large\(quantize=False\) before fuse_model\(\)")


def test_from_torchvision_rejects_a_fused_model_by_name():
    tv = _quantizable_large()
    tv.fuse_model()
    with pytest.raises(ValueError, match=FUSED_MESSAGE):
        from_torchvision(tv)


def test_from_torchvision_rejects_a_fused_conv_bn_relu():
    """Fusing a conv, its BatchNorm and a ReLU leaves one ConvReLU2d, named in the message."""
    tv = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    torch.ao.quantization.fuse_modules(tv.features[1].block[0], [["0", "1", "2"]], inplace=True)
    with pytest.raises(ValueError, match=r"not supported \(features\.1\.block\.0\.0 \(torch\.ao\.nn\.intrinsic\..*\.ConvReLU2d\)"):
        from_torchvision(tv)


def test_from_torchvision_rejects_a_quantized_model():
    from torchvision.models import quantization

    tv = quantization.mobilenet_v3_large(weights=None, quantize=True, num_classes=10)
    with pytest.raises(ValueError, match="fused or quantized models are not supported"):
        from_torchvision(tv)


# ------------------------------------------------------------------------------ activations


@pytest.fixture(scope="module")
def grid() -> torch.Tensor:
    x = torch.arange(-8000, 8001, dtype=torch.float64) / 1000  # step 0.001 over [-8, 8]
    # The kinks of the hard functions lie on the grid exactly.
    for point in (-8.0, -3.0, 0.0, 3.0, 8.0):
        assert (x == point).sum() == 1
    return x


def test_hard_swish_matches_torch_and_paper_formula(grid):
    got = HardSwish()(grid)
    assert torch.allclose(got, nn.Hardswish()(grid), rtol=0, atol=1e-12)
    assert torch.allclose(got, grid * F.relu6(grid + 3) / 6, rtol=0, atol=1e-12)
    value = lambda v: HardSwish()(torch.tensor([v], dtype=torch.float64)).item()  # noqa: E731
    assert value(-3.0) == 0.0 and value(3.0) == 3.0 and value(0.0) == 0.0
    assert value(-8.0) == 0.0 and value(8.0) == 8.0  # zero below -3, the identity above 3
    assert value(1.5) == pytest.approx(1.5 * 4.5 / 6)


def test_hard_sigmoid_matches_torch_and_paper_formula(grid):
    got = HardSigmoid()(grid)
    assert torch.allclose(got, nn.Hardsigmoid()(grid), rtol=0, atol=1e-12)
    assert torch.allclose(got, F.relu6(grid + 3) / 6, rtol=0, atol=1e-12)
    value = lambda v: HardSigmoid()(torch.tensor([v], dtype=torch.float64)).item()  # noqa: E731
    assert value(0.0) == 0.5 and value(-3.0) == 0.0 and value(3.0) == 1.0
    assert value(1.5) == pytest.approx(0.75)


def test_swish_and_sigmoid_match_their_formulas(grid):
    sigmoid = 1.0 / (1.0 + torch.exp(-grid))
    assert torch.allclose(Sigmoid()(grid), sigmoid, rtol=0, atol=1e-12)
    assert torch.allclose(Swish()(grid), grid * sigmoid, rtol=0, atol=1e-12)
    assert torch.allclose(Swish()(grid), nn.SiLU()(grid), rtol=0, atol=1e-12)


def test_hard_activations_approximate_the_smooth_ones(grid):
    # Section 5.2: h-swish is close to swish (max gap about 0.14, at |x| near 3).
    gap = (HardSwish()(grid) - Swish()(grid)).abs().max().item()
    assert 0.05 < gap < 0.2


# ------------------------------------------------------------------------------ shapes


def _expected_spatial(size: int, halvings: int) -> int:
    for _ in range(halvings):
        size = (size + 1) // 2  # k x k conv, padding (k-1)/2, stride 2: ceil(size / 2)
    return size


@pytest.mark.parametrize("arch", ["small", "large"])
@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("drop", [0, 2])
@pytest.mark.parametrize("mode,batch", [("eval", 1), ("train", 2)])
def test_output_shapes(arch, in_channels, size, drop, mode, batch):
    model = build_model(arch, num_classes=10, in_channels=in_channels, drop_first_strides=drop)
    model.train(mode == "train")
    x = torch.randn(batch, in_channels, size, size)
    with torch.no_grad():
        features = model.features(x)
        logits = model(x)
    # Both tables halve the resolution five times (stem plus four bnecks).
    side = _expected_spatial(size, 5 - drop)
    assert features.shape == (batch, 6 * (96 if arch == "small" else 160), side, side)
    assert logits.shape == (batch, 10)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ["small", "large"])
@pytest.mark.parametrize("width", [0.5, 0.75, 1.25])
def test_width_mult_scales_channels_to_multiples_of_8(arch, width):
    spec = load_spec(arch)
    model = build_model(arch, width_mult=width)
    base = build_model(arch)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.out_channels % 8 == 0 and m.in_channels % 8 in (0, 3) for m in convs)
    # The stem and each block's output, against the spec's width-1 channels times the multiplier.
    outs = [model.features[0].out_channels] + [b.out_channels for b in model.features[1:-1]]
    targets = [spec.stem.out * width] + [row.out * width for row in spec.blocks]
    for got, target in zip(outs, targets):
        assert got % 8 == 0 and 0.9 * target <= got < target + 8, (got, target)
    assert model.classifier[0].out_features % 8 == 0
    assert model.classifier[0].out_features == pytest.approx(spec.head.hidden * width, abs=4)
    assert (n_params(model) < n_params(base)) == (width < 1)


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    "arch,kwargs,pattern",
    [
        ("small", {"num_classes": 0}, r"num_classes must be a positive integer, got 0"),
        ("small", {"num_classes": 2.5}, r"num_classes must be a positive integer"),
        ("small", {"in_channels": -1}, r"in_channels must be a positive integer, got -1"),
        ("small", {"width_mult": 0}, r"width_mult must be a positive number .*got 0"),
        ("small", {"width_mult": "x"}, r"width_mult must be a positive number .*got 'x'"),
        ("small", {"dropout": 1.5}, r"dropout must be a probability in \[0, 1\), got 1.5"),
        ("small", {"drop_first_strides": 9}, r"drop_first_strides must be an integer from 0 to 5 .*got 9"),
        ("large", {"drop_first_strides": -1}, r"drop_first_strides must be an integer from 0 to 5 .*got -1"),
        ("small", {"drop_first_strides": True}, r"drop_first_strides must be an integer from 0 to 5 .*got True"),
        ("medium", {}, r"unknown arch 'medium'.*'small'.*'large'"),
    ],
)
def test_bad_build_model_arguments_name_the_argument(arch, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_model(arch, **kwargs)


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


def test_public_api():
    """`import mnv3` gives the real package with its documented exports (fails on a stale editable install)."""
    import mnv3

    assert mnv3.__file__ is not None, "mnv3 imports as a namespace package: reinstall with `pip install -e .`"
    assert mnv3.build_model is build_model and mnv3.MobileNetV3 is MobileNetV3
    assert mnv3.from_torchvision is from_torchvision and mnv3.to_torchvision is to_torchvision
    assert mnv3.HardSwish is HardSwish and mnv3.HardSigmoid is HardSigmoid and mnv3.SpecError is SpecError


# ------------------------------------------------------------------------------ BN and init


@pytest.mark.parametrize("arch", ["small", "large"])
def test_batchnorm_settings_match_torchvision(arch):
    bns = [m for m in build_model(arch).modules() if isinstance(m, nn.BatchNorm2d)]
    tv_bns = [m for m in TV_BUILDERS[arch]().modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == len(tv_bns) > 0
    for bn, tv_bn in zip(bns, tv_bns):
        assert bn.eps == tv_bn.eps == 0.001
        assert bn.momentum == tv_bn.momentum == 0.01


def _check_init(model: nn.Module) -> None:
    ratios = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach()
            fan_out = w.shape[0] * w.shape[2] * w.shape[3]
            expected = math.sqrt(2.0 / fan_out)  # kaiming normal, fan_out mode, ReLU gain
            ratio = w.std().item() / expected
            assert abs(ratio - 1) < 5 / math.sqrt(2 * w.numel()) + 0.02, (name, ratio)
            assert abs(w.mean().item()) < 5 * expected / math.sqrt(w.numel()), name
            ratios.append(ratio)
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0, name
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.count_nonzero(m.bias) == 0, name
            assert torch.count_nonzero(m.running_mean) == 0 and torch.equal(m.running_var, torch.ones_like(m.running_var))
        elif isinstance(m, nn.Linear):
            assert abs(m.weight.std().item() / 0.01 - 1) < 0.03, name
            assert torch.count_nonzero(m.bias) == 0, name
    assert abs(sum(ratios) / len(ratios) - 1) < 0.03


@pytest.mark.parametrize("arch", ["small", "large"])
def test_fresh_model_init_matches_torchvision_distribution(arch):
    torch.manual_seed(0)
    _check_init(build_model(arch))
    # The same criteria describe torchvision's own initialisation.
    _check_init(TV_BUILDERS[arch]())


def test_init_check_can_fail():
    """Negative control: PyTorch's default conv init (not torchvision's) fails the check."""
    torch.manual_seed(0)
    model = build_model("small")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
    with pytest.raises(AssertionError):
        _check_init(model)


# ------------------------------------------------------------------------------ export


def test_torch_export_small_matches_eager():
    torch.manual_seed(0)
    model = randomize_weights_(build_model("small", num_classes=10), seed=5).eval()
    x = torch.randn(1, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        eager = model(x)
        got = exported.module()(x)
        other = exported.module()(torch.randn(1, 3, 32, 32))
    assert (got - eager).abs().max().item() <= 1e-5
    assert (other - eager).abs().max().item() > 1e-3
