"""The building blocks of MobileNetV3, written from the paper (Howard et al. 2019, sections 5.2 and 5.3).

Module and attribute names follow torchvision's ``mobilenetv3.py`` on purpose: the state dict of an
mnv3 model has exactly torchvision's keys, so weights move between the two with ``load_state_dict``.
Every forward is free of data-dependent Python control flow, so the layers stay exportable with
``torch.export`` (ExecuTorch, ONNX).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "HardSigmoid",
    "HardSwish",
    "Sigmoid",
    "Swish",
    "ACTIVATIONS",
    "make_divisible",
    "ConvBNAct",
    "SqueezeExcite",
    "InvertedResidual",
    "BN_EPS",
    "BN_MOMENTUM",
]

# torchvision's (and the TF reference's) BatchNorm settings. PyTorch's momentum is 1 - TF's decay,
# so 0.01 means the running statistics move slowly; training may re-estimate them before evaluation.
BN_EPS = 0.001
BN_MOMENTUM = 0.01


# The hard functions below are exactly the paper's formulas (tests check them against the formulas
# point by point). They call PyTorch's fused kernels: one pass over memory instead of four tensor ops
# (the four-op version cost 9% of eager latency for Small at 224x224 on our CPU), and torch.export
# keeps them as single hardswish / hardsigmoid ops that XNNPACK runs natively.


class HardSigmoid(nn.Module):
    """h-sigmoid(x) = ReLU6(x + 3) / 6: a piecewise-linear sigmoid that is cheap on mobile CPUs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x)


class HardSwish(nn.Module):
    """h-swish(x) = x * ReLU6(x + 3) / 6 (paper eq. 2): swish with h-sigmoid as its gate."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x, inplace=self.inplace)


class Sigmoid(nn.Module):
    """The smooth original, kept for the nonlinearity comparison."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class Swish(nn.Module):
    """swish(x) = x * sigmoid(x) (Ramachandran et al.), which h-swish approximates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


# The spec files name nonlinearities as the paper's tables do: RE (ReLU) and HS (h-swish).
ACTIVATIONS: dict[str, type[nn.Module]] = {"RE": nn.ReLU, "HS": HardSwish}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, as the paper's width multiplier does.

    Rounds to the nearest multiple, but never more than 10% below ``value``
    (the TF reference's rule, which torchvision copies; parameter counts depend on it).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """Convolution, BatchNorm and an optional activation; 'same' padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = None,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,  # BatchNorm's shift makes a bias redundant
            ),
            nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM),
        ]
        if activation is not None:
            # In place, as torchvision does: a fresh output per activation cost up to 38% of eager
            # latency at batch 32 (reports/bench). BatchNorm's backward does not need its output.
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite (section 5.3): channel weights from global context, gated by h-sigmoid.

    The squeeze width is a quarter of the expansion, rounded to a multiple of 8.
    The two fully connected layers are 1x1 convolutions with bias, as in torchvision.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeeze_channels = make_divisible(channels // 4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.scale_activation = HardSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


class InvertedResidual(nn.Module):
    """The bneck block (Figure 4 of the paper).

    1x1 expansion (skipped when the expansion size equals the input channels), depthwise kxk
    convolution with its activation, squeeze-and-excite after that activation, a linear 1x1
    projection, and a residual connection when the stride is 1 and the shape is kept.
    """

    def __init__(
        self,
        in_channels: int,
        kernel: int,
        expansion: int,
        out_channels: int,
        *,
        use_se: bool,
        activation: str,
        stride: int,
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        if expansion != in_channels:
            layers.append(ConvBNAct(in_channels, expansion, 1, activation=act))
        layers.append(ConvBNAct(expansion, expansion, kernel, stride=stride, groups=expansion, activation=act))
        if use_se:
            layers.append(SqueezeExcite(expansion))
        layers.append(ConvBNAct(expansion, out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        # Decided once here, so forward has no shape-dependent branching.
        self.use_residual = stride == 1 and in_channels == out_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_residual:
            out += x  # in place, as torchvision: the projection's BatchNorm output is not needed again
        return out
