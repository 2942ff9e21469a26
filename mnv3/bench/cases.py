"""The networks a benchmark times: one :class:`ModelCase` per setting, both models of it
(torchvision's and ours, the same seeded weights), the raw-pixel wrapper every contender takes,
and the random input images."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tiny_spec_dict() -> dict[str, Any]:
    """Small's stem, its first two bneck rows and a 5x5 h-swish row with SE and a residual, and a
    6x head: every kind of layer in a network that ExecuTorch lowers in seconds."""
    from ..spec import load_spec

    spec = load_spec("small").to_dict()
    spec["name"] = "tiny"
    spec["blocks"] = spec["blocks"][:2] + [{"kernel": 5, "exp_size": 96, "out": 24, "se": True, "nl": "HS", "stride": 1}]
    spec["head"] = {"out": 6 * 24, "nl": "HS", "hidden": 128}
    return spec


@dataclass(frozen=True)
class ModelCase:
    """One network to benchmark: architecture, input and output sizes, normalisation, seed."""

    name: str  # e.g. "small@224", "mnist_small", "large-w0.75"
    arch: str  # "small", "large" or "tiny"
    width: float = 1.0
    in_channels: int = 3
    resolution: int = 224
    classes: int = 1000
    drop_first_strides: int = 0
    dataset: str = "imagenet"  # normalisation statistics (and augmentation, in training)
    experiment: str = ""
    seed: int = 0

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel normalisation mean and std (``in_channels`` values each), of pixels in [0, 1]."""
        if self.dataset == "imagenet":
            return IMAGENET_MEAN[: self.in_channels], IMAGENET_STD[: self.in_channels]
        from ..data import dataset_info

        info = dataset_info(self.dataset)
        return info.mean, info.std

    def describe(self) -> dict[str, Any]:
        """The case's fields as every result row records them (``setting`` is the name)."""
        return {
            "setting": self.name,
            "arch": self.arch,
            "width": self.width,
            "in_channels": self.in_channels,
            "resolution": self.resolution,
            "classes": self.classes,
            "drop_first_strides": self.drop_first_strides,
            "dataset": self.dataset,
            "experiment": self.experiment or None,
        }


def spec_for_arch(arch: str):
    """The :class:`mnv3.spec.ModelSpec` of a case's ``arch``: "small", "large" (the paper's specs),
    a spec file's path, or "tiny" (the smoke test's network, :func:`tiny_spec_dict`). Raises
    SpecError for anything else."""
    from ..spec import load_spec, spec_from_dict

    return spec_from_dict(tiny_spec_dict(), source="<tiny>") if arch == "tiny" else load_spec(arch)


def inference_case(name: str) -> ModelCase:
    """"small@224" / "large@224" (ImageNet shape, 1000 classes), an experiment's name (its model
    at its native resolution, 10 classes) or "tiny" (the smoke test's network at 32x32)."""
    if "@" in name:
        arch, _, size = name.partition("@")
        if arch not in ("small", "large", "tiny") or not size.isdigit():
            raise ValueError(f"unknown setting {name!r}: expected small@SIZE, large@SIZE or an experiment name")
        return ModelCase(name, arch, resolution=int(size))
    if name == "tiny":
        return ModelCase("tiny", "tiny", in_channels=3, resolution=32, classes=10, dataset="cifar10")
    return _experiment_case(name)


def _experiment_case(name: str) -> ModelCase:
    from ..data import dataset_info
    from ..experiments import EXPERIMENTS, get_experiment

    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown setting {name!r}; valid: small@224, large@224 (any size after @), tiny, {', '.join(EXPERIMENTS)}"
        )
    exp = get_experiment(name, "quick")
    info = dataset_info(exp.dataset)
    return ModelCase(
        name,
        exp.arch,
        width=exp.width_mult,
        in_channels=info.in_channels,
        resolution=exp.image_size or info.image_size,
        classes=info.num_classes,
        drop_first_strides=exp.drop_first_strides,
        dataset=exp.dataset,
        experiment=name,
    )


def training_case(name: str) -> ModelCase:
    """An experiment's model at its native size (or "tiny": the tiny network on 1x28x28)."""
    if name == "tiny":
        return ModelCase("tiny", "tiny", in_channels=1, resolution=28, classes=10, dataset="mnist")
    return _experiment_case(name)


def frontier_case(arch: str, width: float, resolution: int = 224, classes: int = 1000) -> ModelCase:
    """``arch`` at width multiplier ``width`` on 3 x ``resolution`` x ``resolution`` inputs, named
    like the inference setting ("small@224") at width 1.0 with 1000 classes, else "small-w0.75@224"."""
    name = f"{arch}@{resolution}" if width == 1.0 and classes == 1000 else f"{arch}-w{width:g}@{resolution}"
    if arch == "tiny":
        return ModelCase(name, arch, width=width, resolution=resolution, classes=classes, dataset="cifar10" if classes == 10 else "imagenet")
    return ModelCase(name, arch, width=width, resolution=resolution, classes=classes)


def make_models(case: ModelCase) -> tuple[nn.Module, nn.Module]:
    """(torchvision's model, ours) in eval mode, with the same weights.

    Stock Small/Large with 3 input channels come from torchvision's own configuration (any width
    multiplier); other cases (1-channel stems, dropped strides, the tiny spec) are built by mnv3 and
    converted with ``to_torchvision``. Ours is always ``from_torchvision`` of torchvision's model.
    The weights depend only on the case (seeded), so two equal cases share their exports.
    """
    from ..model import build_model
    from ..torchvision_compat import from_torchvision, to_torchvision

    torch.manual_seed(case.seed)
    if case.arch in ("small", "large") and case.in_channels == 3 and case.drop_first_strides == 0:
        from torchvision.models import mobilenetv3 as tvm

        setting, last_channel = tvm._mobilenet_v3_conf(f"mobilenet_v3_{case.arch}", width_mult=case.width)
        tv = tvm.MobileNetV3(setting, last_channel, num_classes=case.classes)
    else:
        ours = build_model(
            spec_for_arch(case.arch),
            num_classes=case.classes,
            in_channels=case.in_channels,
            width_mult=case.width,
            drop_first_strides=case.drop_first_strides,
        )
        tv = to_torchvision(ours)
    _randomize(tv, case.seed)
    tv.eval()
    return tv, from_torchvision(tv).eval()


def _randomize(model: nn.Module, seed: int) -> None:
    """Well-scaled random weights and BatchNorm statistics (He-normal convolutions): logits of order
    one, so the parity check means something, and no activations decay into slow denormals as
    they can with an untrained network's tiny classifier initialisation."""
    from ..torchvision_compat import randomize_weights_

    randomize_weights_(model, seed, bn_mean_std=0.1, bn_scale_range=(0.75, 1.25), bn_bias_std=0.1)
    with torch.no_grad():
        # Damp each residual branch's projection (its BatchNorm's scale), as trained networks do, so
        # the activations do not grow block after block.
        for m in model.modules():
            block = getattr(m, "block", None)
            if isinstance(block, nn.Sequential) and isinstance(block[-1], nn.Sequential) and isinstance(block[-1][-1], nn.BatchNorm2d):
                block[-1][-1].weight.mul_(0.3)


def wrap_raw_pixels(model: nn.Module, case: ModelCase):
    """``model`` inside :class:`mnv3.export.RawPixelModel`, in eval mode: raw pixels in [0, 1]
    ``[N, case.in_channels, case.resolution, case.resolution]`` float32 in, logits out, the case's
    mean/std normalisation inside the graph and no resize. Every inference contender gets this, so
    they all compute the same function."""
    from ..export import RawPixelModel

    mean, std = case.mean_std
    return RawPixelModel(model, mean, std, image_size_in=case.resolution, image_size=case.resolution).eval()


def random_pixels(case: ModelCase, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` uniform random images of the case's shape, raw pixels in [0, 1]: the timing input, and
    the int8 calibration set (the same distribution, so int8 logits stay comparable with fp32)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, case.in_channels, case.resolution, case.resolution, generator=g)
