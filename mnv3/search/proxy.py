"""Proxy accuracy: how good a proposal is after a little work, on held-out data.

NetAdapt (Yang et al. 2018, section 3.2) judges each proposal after a *short-term fine-tune* and
keeps the long one for the end. Ours, per proposal: BatchNorm statistics re-estimated on training
batches (the cut changed every later layer's inputs), then a few SGD steps of the seed run's own
recipe (:func:`mnv3.train.train_step`), then top-1 accuracy on a fixed slice of the seed run's
validation split. The test set is never read. Within one search step every proposal sees the same
batches, the same augmentation draws and the same validation images, so their accuracies differ
only by what the proposals changed.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..augment import prepare_batch
from ..data import DatasetInfo, train_val_split
from ..experiments import Experiment
from ..imagefolder import is_folder_dataset, load_run_split, run_dataset_info
from ..step import make_optimizer, train_step
from ..train import SPLIT_SEED

__all__ = ["ProxyConfig", "ProxyData", "load_proxy_data", "step_batches", "recalibrate_batchnorm", "fine_tune",
           "evaluate_accuracy", "proxy_accuracy"]  # fmt: skip


@dataclass(frozen=True)
class ProxyConfig:
    """How much work a proposal gets. ``finetune_steps`` SGD steps of ``batch_size`` images at the
    constant learning rate ``lr``, after ``bn_batches`` batches re-estimate BatchNorm; accuracy on
    the first ``val_images`` of the validation split."""

    finetune_steps: int = 20
    batch_size: int = 128
    lr: float = 0.02
    bn_batches: int = 10
    val_images: int = 2000

    def __post_init__(self) -> None:
        for name in ("finetune_steps", "bn_batches"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "val_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class ProxyData:
    """The seed run's data, as the proxy uses it: its training split (uint8 ``[N, C, H, W]`` and
    int64 labels) and a fixed slice of its validation split, its dataset and training recipe."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    info: DatasetInfo
    image_size: int
    exp: Experiment


def load_proxy_data(config: Mapping[str, Any], *, val_images: int, data_root: str | Path = "data",
                    data_mirror: str | Path | None = None) -> ProxyData:  # fmt: skip
    """The seed run's splits, as training made them (``config`` = the run's config.json): the same
    validation fraction and split seed, so no validation image was trained on (an image folder's
    own splits, :func:`mnv3.imagefolder.load_run_split`). Raises ValueError when the validation
    split has fewer than ``val_images`` images."""
    exp = Experiment(**config["fields"])
    info = run_dataset_info(config)
    if is_folder_dataset(config["dataset"]):
        train_x, train_y = load_run_split(config, "train", root=data_root, mirror=data_mirror)
        val_x, val_y = load_run_split(config, "val", root=data_root, mirror=data_mirror)
    else:
        images, labels = load_run_split(config, "train", root=data_root, mirror=data_mirror)
        train_idx, val_idx = train_val_split(len(images), exp.val_fraction, seed=config.get("split_seed", SPLIT_SEED))
        train_x, train_y, val_x, val_y = images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]
    if exp.max_train_samples:
        train_x, train_y = train_x[: exp.max_train_samples], train_y[: exp.max_train_samples]
    if len(val_y) < val_images:
        raise ValueError(f"the validation split has {len(val_y)} images, fewer than --val-images {val_images}")
    return ProxyData(train_x, train_y, val_x[:val_images], val_y[:val_images], info,
                     int(config.get("image_size") or info.image_size), exp)  # fmt: skip


def step_batches(data: ProxyData, cfg: ProxyConfig, step: int, seed: int = 0) -> list[torch.Tensor]:
    """The training batches (index tensors) of search step ``step``: ``bn_batches`` for BatchNorm,
    then ``finetune_steps`` for fine-tuning; the same for every proposal of the step."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    count = cfg.bn_batches + cfg.finetune_steps
    return [torch.randint(len(data.train_x), (cfg.batch_size,), generator=g) for _ in range(count)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: ProxyData, batches: list[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm's running mean and variance as the average over ``batches``
    (training augmentation on, weights unchanged), then restore each layer's momentum."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers or not batches:
        return
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average, the same weight for every batch
    model.train()
    for idx in batches:
        x = prepare_batch(data.train_x[idx], data.info, train=True, image_size=data.image_size)
        model(x.contiguous(memory_format=torch.channels_last) if data.exp.channels_last else x)
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum


def fine_tune(model: nn.Module, data: ProxyData, cfg: ProxyConfig, batches: list[torch.Tensor], *, step_seed: int) -> None:
    """``len(batches)`` SGD steps of the seed's recipe (:func:`mnv3.train.train_step`) at the
    constant learning rate ``cfg.lr``; each step's random draws are seeded from ``step_seed``."""
    if not batches:
        return
    exp = dataclasses.replace(data.exp, lr=cfg.lr, lr_reference_batch=0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = exp.bn_momentum
    model.train()
    optimizer = make_optimizer(model, exp)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for t, idx in enumerate(batches):
        torch.manual_seed(step_seed * 1009 + t)
        # The search runs on the CPU, in fp32 like the seed's CPU training: no autocast.
        train_step(model, optimizer, scaler, data.train_x[idx], data.train_y[idx], data.info, exp,
                   image_size=data.image_size, autocast=contextlib.nullcontext)  # fmt: skip


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: ProxyData, batch_size: int = 500) -> float:
    """Top-1 accuracy (a fraction) of ``model`` in eval mode on the validation slice."""
    model.eval()
    correct = 0
    for start in range(0, len(data.val_x), batch_size):
        x = prepare_batch(data.val_x[start : start + batch_size], data.info, train=False, image_size=data.image_size)
        if data.exp.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(1) == data.val_y[start : start + batch_size]).sum())
    return correct / len(data.val_x)


def proxy_accuracy(model: nn.Module, data: ProxyData, cfg: ProxyConfig, step: int, seed: int = 0) -> float:
    """Recalibrate BatchNorm, fine-tune, and measure: the proposal's proxy accuracy (a fraction).
    ``model`` is changed in place (it keeps the fine-tuned weights)."""
    batches = step_batches(data, cfg, step, seed)
    if data.exp.channels_last:
        model.to(memory_format=torch.channels_last)
    recalibrate_batchnorm(model, data, batches[: cfg.bn_batches])
    fine_tune(model, data, cfg, batches[cfg.bn_batches :], step_seed=seed * 1_000_003 + step)
    return evaluate_accuracy(model, data)
