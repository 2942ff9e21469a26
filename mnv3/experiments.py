"""The named experiments of the original report, as plain data.

Each experiment has a ``quick`` profile (minutes on a 2-core CPU) and a ``full`` profile (one GPU;
the four together are sized for about 9 minutes on an H100). Every field can be overridden from
the command line: ``python -m mnv3.train --experiment mnist_small --epochs 5 --lr 0.05``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Experiment", "EXPERIMENTS", "PROFILES", "get_experiment"]


@dataclass(frozen=True)
class Experiment:
    # what is trained
    dataset: str
    arch: str  # "small", "large" or a path to a spec file
    drop_first_strides: int = 0  # the original's CIFAR-10 "stride 1" model sets the first two to 1
    width_mult: float = 1.0
    dropout: float = 0.2
    image_size: int = 0  # 0 = the dataset's native size; 224 reproduces the original's upsampling
    # how long, and on how much
    epochs: int = 10
    batch_size: int = 128  # global: split across DDP ranks
    max_train_samples: int = 0  # 0 = the whole training split
    val_fraction: float = 0.1  # held out of the training set, with a fixed seed
    # optimisation: SGD with Nesterov momentum, linear warmup then cosine decay to zero, per step
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5  # not applied to BatchNorm parameters and biases
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    # torchvision's BN momentum (0.01) leaves the running statistics behind in short runs
    bn_momentum: float = 0.1
    # speed
    channels_last: bool = True
    amp: str = "bf16"  # on CUDA: "bf16", "fp16" (with a gradient scaler) or "off"; the CPU runs fp32
    compile: bool = False


PROFILES = ("quick", "full")

_BASE = {
    "mnist_small": Experiment(dataset="mnist", arch="small", lr=0.2, weight_decay=5e-5),
    "cifar10_small_s2": Experiment(dataset="cifar10", arch="small", lr=0.2, weight_decay=1e-4),
    "cifar10_small_s1": Experiment(dataset="cifar10", arch="small", drop_first_strides=2, lr=0.2, weight_decay=1e-4),
    "cifar10_large_s1": Experiment(dataset="cifar10", arch="large", drop_first_strides=2, lr=0.2, weight_decay=1e-4),
}

# Quick: all four in at most 15 minutes on a 2-core CPU (mnist_small must still pass 98.5%).
# Full: sized for one H100, all four in about 9 minutes.
_PROFILE_OVERRIDES = {
    "quick": {
        "mnist_small": {"epochs": 3, "batch_size": 128, "lr": 0.2, "warmup_epochs": 0.3},
        "cifar10_small_s2": {"epochs": 2, "max_train_samples": 30000, "warmup_epochs": 0.3},
        "cifar10_small_s1": {"epochs": 1, "max_train_samples": 25000, "warmup_epochs": 0.2},
        "cifar10_large_s1": {"epochs": 1, "max_train_samples": 8000, "warmup_epochs": 0.2},
    },
    "full": {
        "mnist_small": {"epochs": 20, "batch_size": 256, "lr": 0.4, "warmup_epochs": 1, "compile": True},
        "cifar10_small_s2": {"epochs": 40, "batch_size": 256, "lr": 0.4, "weight_decay": 2e-4, "compile": True},
        "cifar10_small_s1": {"epochs": 60, "batch_size": 256, "lr": 0.4, "weight_decay": 2e-4, "compile": True},
        "cifar10_large_s1": {"epochs": 40, "batch_size": 256, "lr": 0.4, "weight_decay": 2e-4, "compile": True},
    },
}

EXPERIMENTS = tuple(_BASE)


def get_experiment(name: str, profile: str = "quick", **overrides) -> Experiment:
    """The experiment ``name`` under ``profile``, with field overrides applied."""
    if name not in _BASE:
        raise ValueError(f"unknown experiment {name!r}; valid experiments: {', '.join(EXPERIMENTS)}.")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}.")
    fields = {f.name for f in dataclasses.fields(Experiment)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(fields))}.")
    return dataclasses.replace(_BASE[name], **{**_PROFILE_OVERRIDES[profile][name], **overrides})
