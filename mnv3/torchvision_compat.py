"""Move weights between mnv3 and torchvision's MobileNetV3, in both directions.

The two models have the same module tree and state-dict keys (see ``mnv3.layers``), so a transfer
is a strict ``load_state_dict``; the work here is reading the architecture off the other model.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .model import MobileNetV3
from .spec import BlockSpec, HeadSpec, ModelSpec, StemSpec

__all__ = ["from_torchvision", "to_torchvision", "randomize_weights_"]


def _nl(seq: nn.Module) -> str | None:
    """'RE' or 'HS' for a conv-BN-activation sequence, None when it has no activation."""
    acts = [m for m in seq.children() if not isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    if not acts:
        return None
    name = type(acts[0]).__name__.lower()
    if name == "relu":
        return "RE"
    if name == "hardswish":
        return "HS"
    raise ValueError(f"unsupported activation {type(acts[0]).__name__}; MobileNetV3 uses ReLU and h-swish.")


# Modules that only fusion (fuse_model), quantization-aware training or conversion leave behind.
# FloatFunctional is absent: torchvision's quantizable model uses it in float mode too.
_QUANTIZATION_PACKAGES = ("torch.ao.nn.intrinsic", "torch.ao.nn.quantized", "torch.ao.nn.qat",
                          "torch.ao.quantization.observer", "torch.ao.quantization.fake_quantize",
                          "torch.nn.intrinsic", "torch.nn.quantized", "torch.nn.qat")  # fmt: skip


def _fused_or_quantized(model: nn.Module) -> str | None:
    """The first module that shows ``model`` was fused or quantized, as "name (Class)", else None."""
    for name, module in model.named_modules():
        cls = type(module)
        # fuse_model() folds each BatchNorm into its conv and leaves an Identity in its place, in
        # the conv-BN-activation Sequential. (FloatFunctional holds an Identity of its own.)
        parent = model.get_submodule(name.rpartition(".")[0]) if name else None
        fused_away = isinstance(module, nn.Identity) and isinstance(parent, nn.Sequential)
        if fused_away or (cls.__module__.startswith(_QUANTIZATION_PACKAGES) and cls.__name__ != "FloatFunctional"):
            return f"{name} ({cls.__module__}.{cls.__name__})"
    return None


def _read_spec(model: nn.Module) -> ModelSpec:
    """Read the exact per-row architecture (channels already width-scaled) off either model."""
    features = list(model.features)
    stem_conv = features[0][0]
    stem = StemSpec(kernel=stem_conv.kernel_size[0], out=stem_conv.out_channels, nl=_nl(features[0]), stride=stem_conv.stride[0])
    blocks = []
    for block in features[1:-1]:
        parts = list(block.block)
        depthwise = next(p for p in parts if isinstance(p, nn.Sequential) and p[0].groups > 1)
        if depthwise[0].dilation[0] != 1:
            raise ValueError("dilated MobileNetV3 (torchvision's dilated=True) is not supported.")
        blocks.append(
            BlockSpec(
                kernel=depthwise[0].kernel_size[0],
                exp_size=depthwise[0].out_channels,
                out=parts[-1][0].out_channels,
                se=any(hasattr(p, "fc1") for p in parts),
                nl=_nl(depthwise),
                stride=depthwise[0].stride[0],
            )
        )
    head = HeadSpec(out=features[-1][0].out_channels, nl=_nl(features[-1]), hidden=model.classifier[0].out_features)
    return ModelSpec(name="from_torchvision", stem=stem, blocks=tuple(blocks), head=head)


def from_torchvision(tv_model: nn.Module) -> MobileNetV3:
    """An mnv3 model carrying the weights (and buffers) of a torchvision MobileNetV3.

    Takes the float model with its BatchNorm layers: ``torchvision.models.mobilenet_v3_large()``
    or ``_small()``, or ``torchvision.models.quantization.mobilenet_v3_large(quantize=False)``
    before ``fuse_model()``. Raises ValueError for a fused, quantization-prepared or quantized
    model, and for architectures mnv3 cannot express (dilation, other activations).
    """
    found = _fused_or_quantized(tv_model)
    if found is not None:
        raise ValueError(
            f"from_torchvision: fused or quantized models are not supported ({found} comes from "
            "fuse_model() or quantization); pass the unfused float model, e.g. "
            "torchvision.models.quantization.mobilenet_v3_large(quantize=False) before fuse_model(), "
            "or torchvision.models.mobilenet_v3_large()."
        )
    spec = _read_spec(tv_model)
    model = MobileNetV3(
        spec,
        num_classes=tv_model.classifier[-1].out_features,
        in_channels=tv_model.features[0][0].in_channels,
        dropout=tv_model.classifier[2].p,
    )
    model.load_state_dict(tv_model.state_dict(), strict=True)
    model.train(tv_model.training)
    return model


def to_torchvision(model: MobileNetV3) -> nn.Module:
    """torchvision's MobileNetV3 carrying this model's weights.

    torchvision hard-codes a 3x3, stride-2, 3-channel stem and a head 6x the last block; a stem
    with other input channels or stride 1 (MNIST, ``drop_first_strides``) is swapped in after building.
    """
    from torchvision.models.mobilenetv3 import InvertedResidualConfig
    from torchvision.models.mobilenetv3 import MobileNetV3 as TorchvisionMobileNetV3

    spec = _read_spec(model)
    if spec.stem.kernel != 3 or spec.stem.nl != "HS" or spec.head.nl != "HS":
        raise ValueError("torchvision's MobileNetV3 needs a 3x3 h-swish stem and an h-swish head.")
    if spec.head.out != 6 * spec.blocks[-1].out:
        raise ValueError(f"torchvision's head conv is 6x the last block ({6 * spec.blocks[-1].out}), this model has {spec.head.out}.")
    configs, channels = [], spec.stem.out
    for b in spec.blocks:
        configs.append(InvertedResidualConfig(channels, b.kernel, b.exp_size, b.out, b.se, b.nl, b.stride, 1, 1.0))
        channels = b.out
    tv = TorchvisionMobileNetV3(
        configs,
        spec.head.hidden,
        num_classes=model.classifier[-1].out_features,
        dropout=model.classifier[2].p,
    )
    stem_conv = model.features[0][0]
    if stem_conv.in_channels != 3 or stem_conv.stride != (2, 2):
        tv.features[0][0] = nn.Conv2d(
            stem_conv.in_channels, stem_conv.out_channels, 3, stride=stem_conv.stride, padding=1, bias=False
        )
    tv.load_state_dict(model.state_dict(), strict=True)
    tv.train(model.training)
    return tv


@torch.no_grad()
def randomize_weights_(
    model: nn.Module,
    seed: int,
    *,
    bn_mean_std: float = 0.5,
    bn_scale_range: tuple[float, float] = (0.5, 1.5),
    bn_bias_std: float = 0.2,
) -> nn.Module:
    """Random weights and BatchNorm statistics, in place, for equivalence checks.

    A fresh model's BatchNorm layers are identities (ones, zeros, running mean 0, var 1), which
    would hide a swapped or missing BN; after this every weight and statistic shapes the output.
    Convolutions and linear layers are He-normal. BatchNorm running means and biases are normal
    with the given spreads; running variances and scales are uniform in ``bn_scale_range``.
    """
    low, high = bn_scale_range
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * bn_mean_std)
            m.running_var.copy_(torch.rand(n, generator=g) * (high - low) + low)
            m.weight.copy_(torch.rand(n, generator=g) * (high - low) + low)
            m.bias.copy_(torch.randn(n, generator=g) * bn_bias_std)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model
