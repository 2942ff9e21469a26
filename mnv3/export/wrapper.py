"""The raw-pixel wrapper: a trained run loaded as a model that takes pixels/255 and normalises
(and resizes) inside the graph, refusing weights that are not finite."""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_run, weights_file
from ..data import DatasetInfo
from ..imagefolder import run_dataset_info
from .deps import ExportError


class RawPixelModel(nn.Module):
    """A trained model that takes raw pixels in [0, 1] (float32 N x C x H x W) and returns logits.

    ``(x - mean) / std`` runs inside the graph (``mean``/``std`` are buffers, per channel, as in
    :func:`mnv3.augment.prepare_batch`). ``image_size_in`` is the side length of the input the graph
    accepts and ``image_size`` the resolution the model was trained at; when both are given and
    differ, the graph resizes bilinearly after normalising, exactly as ``prepare_batch`` does for
    runs trained on upsampled images. Leave them None to feed the model's own resolution.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        image_size_in: int | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.image_size_in = image_size_in
        self.image_size = image_size
        self.resize = image_size_in is not None and image_size is not None and image_size_in != image_size

    @property
    def in_channels(self) -> int:
        return self.mean.shape[1]

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """The input shape the exported graph takes (needs ``image_size_in`` or ``image_size``)."""
        side = self.image_size_in or self.image_size
        if side is None:
            raise ValueError("RawPixelModel has no image_size_in/image_size: pass one to know the input shape")
        return (batch, self.in_channels, side, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.resize:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return self.model(x)


def resize_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 images [N, C, H, W] at ``size`` x ``size`` (None or their own side: unchanged).

    Bilinear, antialiased when shrinking, rounded back to uint8: what an app does to a photo before
    it feeds a model that takes ``size`` pixels. Calibration and parity images of an export at
    ``--input-size`` are made this way, so they have the shape the exported graph takes.
    """
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.cat([F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
                     for chunk in images.split(256)])  # fmt: skip
    return out.round().clamp(0, 255).to(torch.uint8)


def check_finite(module: nn.Module, source: str = "the model") -> None:
    """Raise ExportError naming the first parameter or buffer of ``module`` that holds NaN or inf.

    Such weights lower and run without complaint but make every exported file output NaN;
    ``source`` (a checkpoint path, say) goes into the message.
    """
    for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = tensor.detach().float()
            raise ExportError(
                f"{source}: weights not finite, refusing to export: {name} holds {int(bad.isnan().sum())} NaN and "
                f"{int(bad.isinf().sum())} inf of {bad.numel()} values. The training diverged; export an "
                "earlier checkpoint (--which) or retrain with a lower learning rate."
            )


def contiguous_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose tensors are all in the default (contiguous) memory format.

    Models trained channels_last (mnv3.train does) fail to lower: XNNPACK asserts on 3-channel
    channels_last weights and ``as_strided_copy`` stays outside the delegate. The caller's
    module is left as it is.
    """
    module = copy.deepcopy(module)
    with torch.no_grad():
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            # Not .contiguous(): a channels_last 1x1 or depthwise weight counts as contiguous
            # (its odd strides sit on size-1 dims) yet still exports as as_strided_copy.
            tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    return module


def wrap_for_export(model: nn.Module, config: dict[str, Any], *, input_size: int | None = None) -> RawPixelModel:
    """Wrap a run's model (``config`` = its config.json) to take raw pixels at ``input_size``
    (default: the dataset's native size, which is what the app's images are). The dataset's
    channels, size, mean and std are the run's record (:func:`mnv3.imagefolder.run_dataset_info`)."""
    info = run_dataset_info(config)
    model_channels = getattr(model, "config", {}).get("in_channels", info.in_channels)
    if model_channels != info.in_channels:
        raise ExportError(f"the model takes {model_channels} input channels but {info.name} images have {info.in_channels}")
    trained_at = int(config.get("image_size") or info.image_size)
    return RawPixelModel(
        model, info.mean, info.std, image_size_in=int(input_size or info.image_size), image_size=trained_at
    ).eval()


def load_wrapped_run(
    run_dir: str | Path, *, which: str = "best", input_size: int | None = None
) -> tuple[RawPixelModel, dict[str, Any], DatasetInfo]:
    """``load_run`` + :func:`wrap_for_export`: (wrapper in eval mode, config.json, DatasetInfo)."""
    model, config = load_run(run_dir, which=which)  # config.json checked by mnv3.records: it names a dataset
    try:
        info = run_dataset_info(config)
    except ValueError as err:  # an image-folder run recorded without its dataset_info block
        raise ExportError(f"{Path(run_dir) / 'config.json'}: {err}") from None
    weights = weights_file(Path(run_dir), which)
    check_finite(model, str(weights) if weights else str(run_dir))
    return wrap_for_export(model, config, input_size=input_size), config, info


def run_data_location(config: dict[str, Any], data_root: str | Path | None, data_mirror: str | Path | None):
    """``(root, mirror)``: where an export reads the run's images (calibration, parity, app assets).

    ``root`` is ``data_root`` when given, else the run's recorded ``data_root`` (``config`` is its
    config.json), else ``"data"``. ``mirror`` is ``data_mirror`` when given, else the recorded
    ``data_mirror`` when that folder still exists on this machine, else None. Either may be a str
    or a Path; nothing is read and nothing raises here (:func:`mnv3.imagefolder.load_run_split`
    reports missing data).
    """
    root = data_root or config.get("data_root") or "data"
    mirror = data_mirror
    if mirror is None and config.get("data_mirror") and Path(config["data_mirror"]).is_dir():
        mirror = config["data_mirror"]
    return root, mirror
