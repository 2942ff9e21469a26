"""One builder for every MobileNetV3 variant: a spec (data) plus a few plain arguments.

    model = build_model("small", num_classes=10, in_channels=1)          # MNIST
    model = build_model("large", num_classes=10, drop_first_strides=2)   # CIFAR-10 at 32x32

The module tree (``features``, ``avgpool``, ``classifier``) mirrors torchvision's MobileNetV3, so
the two have the same state-dict keys and identical parameter counts.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .layers import ACTIVATIONS, ConvBNAct, InvertedResidual, make_divisible
from .spec import ModelSpec, check_size, load_spec, spec_from_dict

__all__ = ["MobileNetV3", "build_model", "model_from_config", "resolve_strides"]


def resolve_strides(spec: ModelSpec, drop_first_strides: int) -> list[int]:
    """Strides of the stem and each block, with the first ``drop_first_strides`` stride-2 layers set to 1.

    Small inputs (28x28, 32x32) leave only a 1x1 map after the paper's five halvings; the original
    project kept the resolution of CIFAR-10 images longer by dropping the first two of them.
    """
    strides = [spec.stem.stride] + [b.stride for b in spec.blocks]
    downsampling = [i for i, s in enumerate(strides) if s == 2]
    if not (isinstance(drop_first_strides, int) and not isinstance(drop_first_strides, bool) and 0 <= drop_first_strides <= len(downsampling)):
        raise ValueError(
            f"drop_first_strides must be an integer from 0 to {len(downsampling)} (the number of "
            f"stride-2 layers in {spec.name}), got {drop_first_strides!r}."
        )
    for i in downsampling[:drop_first_strides]:
        strides[i] = 1
    return strides


class MobileNetV3(nn.Module):
    """Stem, bneck blocks, last 1x1 conv, global pooling and the two-layer classifier."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        drop_first_strides: int = 0,
    ) -> None:
        super().__init__()
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("in_channels", in_channels)
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not (
            math.isfinite(width_mult) and width_mult > 0
        ):
            raise ValueError(f"width_mult must be a positive number such as 0.75 or 1.0, got {width_mult!r}.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}.")
        # Before any layer is allocated: a huge width_mult or class count fails in one line.
        check_size(spec, num_classes=num_classes, in_channels=in_channels, width_mult=width_mult)
        strides = resolve_strides(spec, drop_first_strides)

        def scale(channels: int) -> int:
            return make_divisible(channels * width_mult)

        stem_out = scale(spec.stem.out)
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, stem_out, spec.stem.kernel, stride=strides[0], activation=ACTIVATIONS[spec.stem.nl])
        ]
        channels = stem_out
        for row, stride in zip(spec.blocks, strides[1:]):
            block = InvertedResidual(
                channels,
                row.kernel,
                scale(row.exp_size),
                scale(row.out),
                use_se=row.se,
                activation=row.nl,
                stride=stride,
            )
            layers.append(block)
            channels = block.out_channels
        # The head conv is 6x the last block in both tables; keeping that ratio under width scaling
        # (rather than rounding 576 * width on its own) is what torchvision and the TF reference do.
        last_out = spec.blocks[-1].out
        head_out = channels * (spec.head.out // last_out) if spec.head.out % last_out == 0 else scale(spec.head.out)
        layers.append(ConvBNAct(channels, head_out, 1, activation=ACTIVATIONS[spec.head.nl]))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = scale(spec.head.hidden)
        # The paper's "conv2d 1x1, NBN" layers act on a 1x1 map: Linear layers with the same weights.
        self.classifier = nn.Sequential(
            nn.Linear(head_out, hidden),
            ACTIVATIONS[spec.head.nl](inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(hidden, num_classes),
        )
        self.config: dict[str, Any] = {
            "spec": spec.to_dict(),
            "num_classes": num_classes,
            "in_channels": in_channels,
            "width_mult": float(width_mult),
            "dropout": float(dropout),
            "drop_first_strides": drop_first_strides,
        }
        self.spec = spec
        self.strides = strides
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so a fresh model starts from the same distribution.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def build_model(
    arch: str | Path | ModelSpec,
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    drop_first_strides: int = 0,
) -> MobileNetV3:
    """Build MobileNetV3 from "small", "large", a spec file path or a ModelSpec.

    Args:
        num_classes: size of the last layer (10 for MNIST and CIFAR-10).
        in_channels: 1 for MNIST, 3 for colour images.
        width_mult: the paper's width multiplier; channels are rounded to multiples of 8.
        dropout: dropout before the last layer (torchvision's 0.2 by default).
        drop_first_strides: set the first N stride-2 layers (stem first) to stride 1, for small
            images; 2 is the original project's CIFAR-10 "stride 1" model.
    """
    return MobileNetV3(
        load_spec(arch),
        num_classes=num_classes,
        in_channels=in_channels,
        width_mult=width_mult,
        dropout=dropout,
        drop_first_strides=drop_first_strides,
    )


def model_from_config(config: dict[str, Any]) -> MobileNetV3:
    """Rebuild a model from ``model.config`` (as stored in checkpoints)."""
    kwargs = dict(config)
    spec = spec_from_dict(kwargs.pop("spec"), source="<checkpoint>")
    return MobileNetV3(spec, **kwargs)
