"""Batches on the training device: a uint8 batch becomes normalised float32, augmented when
training, with tensor ops over the whole batch (no per-image Python loop, no worker processes).

* :func:`prepare_batch`: random shifts (CIFAR: the padded 4-pixel crop) and flips where a dataset
  allows them, then normalisation with the dataset's mean and std;
* :func:`cutout` (DeVries & Taylor 2017) and :func:`auto_augment` (Cubuk et al. 2019, through
  torchvision), the optional recipe steps of :mod:`mnv3.experiments`.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .data import DatasetInfo

__all__ = ["prepare_batch", "cutout", "auto_augment"]


# Augmentation per dataset: (maximum shift in pixels each way, horizontal flip).
# CIFAR: the standard 4-pixel padded random crop plus a horizontal flip.
# MNIST family and synthetic: small shifts and NO flip. The original project flipped digits
# horizontally, but a mirrored digit is a different thing (a mirrored 2 is no 2, a mirrored
# Fashion-MNIST shoe points the other way), so flipping teaches the model wrong labels.
_AUGMENTATION = {"cifar10": (4, True), "cifar100": (4, True)}


_DEFAULT_AUGMENTATION = (2, False)


def _draw_crops(
    n: int, max_shift: int, flip: bool, device: torch.device, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample crop offsets into the padded image, in ``[0, 2*max_shift]``, and flip flags."""
    oy = torch.randint(0, 2 * max_shift + 1, (n,), device=device, generator=generator)
    ox = torch.randint(0, 2 * max_shift + 1, (n,), device=device, generator=generator)
    if flip:
        flips = torch.rand(n, device=device, generator=generator) < 0.5
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=device)
    return oy, ox, flips


def _random_crop_flip(
    images: torch.Tensor, max_shift: int, flip: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """Zero-pad by ``max_shift``, crop back to the original size at a random offset per sample,
    and mirror the samples drawn for flipping: one batched gather, no per-sample loop."""
    n, c, h, w = images.shape
    oy, ox, flips = _draw_crops(n, max_shift, flip, images.device, generator)
    padded = F.pad(images, (max_shift,) * 4)
    rows = oy[:, None] + torch.arange(h, device=images.device)  # [N, H]
    cols_fwd = torch.arange(w, device=images.device)
    cols = ox[:, None] + torch.where(flips[:, None], w - 1 - cols_fwd, cols_fwd)  # [N, W]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


@functools.lru_cache(maxsize=32)
def _normalisation(info: DatasetInfo, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Built once per device: a host-to-device copy from pageable memory waits for the GPU stream,
    # so making these per batch stalls every training step.
    mean = torch.tensor(info.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return mean, std


def prepare_batch(
    images: torch.Tensor,
    info: DatasetInfo,
    *,
    train: bool,
    image_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Turn a uint8 batch ``[N, C, H, W]`` into the model's float32 input, on its own device.

    When ``train``, augment (see ``_AUGMENTATION``); then scale to [0, 1] and normalise per
    channel with ``info.mean``/``info.std``; then, if ``image_size`` differs from the native
    size, upsample bilinearly (the original project fed 224x224 inputs). ``generator`` (on the
    images' device) makes the augmentation reproducible; None uses the global RNG.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != info.in_channels:
        raise ValueError(f"expected uint8 [N, {info.in_channels}, H, W] images for {info.name}, "
                         f"got {images.dtype} {tuple(images.shape)}")
    if train:
        max_shift, flip = _AUGMENTATION.get(info.name, _DEFAULT_AUGMENTATION)
        images = _random_crop_flip(images, max_shift, flip, generator)
    mean, std = _normalisation(info, images.device)
    x = (images.float() / 255 - mean) / std
    if image_size is not None and (image_size, image_size) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.contiguous()


def cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017, arXiv 1708.04552): zero a ``size`` x ``size`` square per image.

    ``x`` is a normalised float batch ``[N, C, H, W]`` (zero is the dataset mean). Each square's
    centre is drawn uniformly over the image, so a square may be clipped at the border, as in the
    paper. One mask for the whole batch, no per-sample loop. Returns a new tensor.
    """
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w, (n, 1, 1), device=x.device, generator=generator)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    half = size // 2
    inside = (rows >= cy - half) & (rows < cy - half + size) & (cols >= cx - half) & (cols < cx - half + size)
    return x * ~inside[:, None]


@functools.lru_cache(maxsize=None)
def _augmentation_policy(policy: str):
    from torchvision.transforms import v2

    policies = {
        "trivialaugment": v2.TrivialAugmentWide,  # Müller & Hutter 2021
        "autoaugment": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),  # Cubuk et al. 2019
        "randaugment": v2.RandAugment,  # Cubuk et al. 2020, torchvision's defaults
    }
    if policy not in policies:
        raise ValueError(f"unknown augmentation policy {policy!r}; valid: none, {', '.join(policies)}")
    return policies[policy]()


def auto_augment(images: torch.Tensor, policy: str, groups: int = 8) -> torch.Tensor:
    """Apply torchvision's ``transforms.v2`` ``policy`` to a uint8 batch ``[N, C, H, W]`` on its device.

    torchvision draws one operation per call for a whole batch, so the batch is cut into ``groups``
    parts that draw apart: variety across the batch at ``groups`` calls, not N. The draws come from
    torch's global RNG, which training seeds per step. ``policy`` "none" returns the batch as is.
    On a GPU each geometric operation (shear, translate, rotate) waits for the host: torchvision
    builds its affine matrix with ``torch.tensor(matrix, device=...)``, a pageable host-to-device
    copy, so up to ``groups`` such waits a step (the sweep's table notes it beside their times).
    """
    if policy == "none":
        return images
    transform = _augmentation_policy(policy)
    return torch.cat([transform(part) for part in images.chunk(groups)])
