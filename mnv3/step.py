"""The training step and its set-up: what ``python -m mnv3.train`` runs every step, what both
benchmarks time, and what the CUDA sync test checks, as one code path.

* :func:`make_trainer` builds, from a model and an experiment, everything a step needs: the model
  prepared for training (BatchNorm momentum, device, memory format), SGD, the per-step learning
  rate schedule, bf16 autocast on CUDA, DistributedDataParallel, ``torch.compile`` and the weight
  EMA (:class:`Trainer`);
* :func:`run_step` is one step of the loop: the seed from the step's position, the batch, the
  augmented forward and backward (:func:`train_step`), the scheduler, the EMA, and the epoch's
  running metrics, which stay on the device (:class:`EpochMetrics`);
* :func:`resolve_device` turns ``--device`` into a device, refusing CUDA where there is none.

Nothing here waits for the host in the steady state: no ``.item()``, no copy from host memory.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .augment import auto_augment, cutout, prepare_batch
from .data import DatasetInfo, iterate_batches
from .ema import WeightEMA, make_ema
from .experiments import Experiment

__all__ = [
    "resolve_device", "step_seed", "lr_schedule", "compute_loss", "peak_lr", "warmup_steps", "prepare_for_training",
    "features_lr_groups", "make_optimizer", "train_step", "Trainer", "make_trainer", "epoch_batches", "EpochMetrics", "run_step",
]  # fmt: skip


def resolve_device(name: str | None, local_rank: int | None = None) -> torch.device:
    """The device ``--device NAME`` asks for, with a CUDA index.

    None: ``cuda:local_rank`` (0 outside torchrun) when CUDA works, else the CPU. ``"cuda"``: under
    torchrun (``local_rank`` given) the process's own GPU, else the current CUDA device. Raises
    ValueError, in one line naming the value and the fix, for a name that is not cpu, cuda or
    cuda:N, for CUDA on a machine where torch sees none (a run that asks for the GPU never falls
    back to the CPU), and for an index the machine does not have.
    """
    if name is None:
        return torch.device("cuda", local_rank or 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r} is not a device this trains on; use cpu, cuda or cuda:N.")
    if device.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"a CUDA {torch.version.cuda} build, but no GPU or driver is visible" if torch.version.cuda else "a CPU-only build"
        raise ValueError(f"--device {name}: CUDA is not available here (torch {torch.__version__} is {build}); "
                         "run on a GPU machine, or pass --device cpu.")  # fmt: skip
    index = device.index if device.index is not None else local_rank if local_rank is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0.")
    return torch.device("cuda", index)


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The seed of one step's random draws (augmentation, dropout), from its position alone: a
    resumed run draws what the uninterrupted one drew."""
    return (seed * 1_000_003 + epoch * 100_003 + step * 101 + rank) % (2**63)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay only conv and linear weights: decaying BN scales and biases only fights normalisation.
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_schedule(total_steps: int, warmup: int) -> Callable[[int], float]:
    """The learning-rate factor of step ``step`` (for LambdaLR): linear warm-up over ``warmup``
    steps to 1, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy in float32 (the logits may be bf16 under autocast); 0-dim."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def peak_lr(exp: Experiment) -> float:
    """``exp.lr``; with ``lr_reference_batch`` set, scaled by ``sqrt(batch_size / lr_reference_batch)``.

    The square-root rule (Krizhevsky 2014, arXiv 1404.5997; Hoffer et al. 2017, arXiv 1705.08741)
    keeps the gradient noise of a step (its standard deviation falls as 1/sqrt(batch)) times the
    learning rate the same. The linear rule (Goyal et al. 2017, arXiv 1706.02677) held up on
    ImageNet at 0.1 per 256 images; our recipes run 0.4 at 256 already, so linear scaling to
    1024 asked for 1.6, four times any rate they tried, where the square root gives 0.8.
    """
    return exp.lr * math.sqrt(exp.batch_size / exp.lr_reference_batch) if exp.lr_reference_batch else exp.lr


def warmup_steps(exp: Experiment, steps_per_epoch: int) -> int:
    """Warm-up steps: ``warmup_epochs`` of steps. With ``lr_reference_batch`` and a larger batch,
    as many steps as the reference batch warms up over (``batch_size / lr_reference_batch`` times
    the epochs): a batch of 1024 reached its peak in 43 steps on CIFAR-10, a quarter of the
    reference's 175 (Goyal et al. stretch the warm-up of large batches for the same reason)."""
    scale = max(1.0, exp.batch_size / exp.lr_reference_batch) if exp.lr_reference_batch else 1.0
    return round(exp.warmup_epochs * steps_per_epoch * scale)


def prepare_for_training(model: nn.Module, exp: Experiment, device: torch.device) -> nn.Module:
    """``model`` (ours or torchvision's) as training and the benchmarks run it: BatchNorm momentum
    from ``exp``, on ``device``, channels_last when ``exp`` asks, in train mode. Returns it."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = exp.bn_momentum
    model.to(device)
    if exp.channels_last:
        model.to(memory_format=torch.channels_last)
    return model.train()


def features_lr_groups(groups: list[dict[str, Any]], model: nn.Module, lr: float, mult: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups with ``model.features`` at ``lr * mult`` and the rest at ``lr``:
    each group is split in two (the rest first, so the first group's rate is the headline one).
    ``mult`` 1 returns ``groups`` unchanged; frozen parameters are left out."""
    if mult == 1.0:
        return groups
    in_features = {id(p) for p in model.features.parameters()}
    out = []
    for part_is_features in (False, True):
        for group in groups:
            params = [p for p in group["params"] if (id(p) in in_features) == part_is_features and p.requires_grad]
            if params:
                out.append({**group, "params": params, "lr": lr * (mult if part_is_features else 1.0)})
    return out


def make_optimizer(model: nn.Module, exp: Experiment) -> torch.optim.SGD:
    """SGD with Nesterov momentum at :func:`peak_lr`; weight decay on conv and linear weights only;
    the features at ``exp.features_lr_mult`` times the rate (:func:`features_lr_groups`)."""
    groups = features_lr_groups(_param_groups(model, exp.weight_decay), model, peak_lr(exp), exp.features_lr_mult)
    return torch.optim.SGD(groups, lr=peak_lr(exp), momentum=exp.momentum, nesterov=True)


def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    labels: torch.Tensor,
    info: DatasetInfo,
    exp: Experiment,
    *,
    image_size: int,
    autocast: Callable[[], Any],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a uint8 batch ``[N, C, H, W]`` with int64 ``labels`` ``[N]``.

    Augments and normalises on the batch's device (``auto_augment`` when the experiment asks,
    ``prepare_batch``'s crop and flip, ``cutout`` when asked), runs the forward pass under
    ``autocast()``, takes the label-smoothed cross-entropy, and steps the optimizer. Returns the
    loss (a 0-dim float32 tensor) and the logits ``[N, classes]``, detached and on the device: it
    never waits for the host (no ``.item()``), so a GPU can run ahead.
    """
    x = cutout(prepare_batch(auto_augment(images, exp.auto_augment), info, train=True, image_size=image_size), exp.cutout)
    if exp.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast():
        logits = net(x)
    loss = compute_loss(logits, labels, exp.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), logits.detach()


@dataclasses.dataclass
class Trainer:
    """What a step needs, built once by :func:`make_trainer`.

    ``model`` is the eager module (weights, checkpoints); ``eager`` is what evaluation runs (the
    model, wrapped by DDP under torchrun, never compiled: a compiled validation would compile a
    second graph); ``net`` is what the step runs (``eager``, compiled when ``exp.compile``).
    """

    model: nn.Module
    eager: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    ema: WeightEMA | None
    autocast: Callable[[], Any]
    exp: Experiment
    info: DatasetInfo
    image_size: int
    device: torch.device
    seed: int = 0
    rank: int = 0
    world_size: int = 1

    def evaluation_model(self) -> nn.Module:
        """The module validation runs: the EMA's average when there is one, else ``eager``."""
        return self.eager if self.ema is None else self.ema.module


def make_trainer(model: nn.Module, exp: Experiment, info: DatasetInfo, device: torch.device, *, image_size: int,
                 steps_per_epoch: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 distributed: bool = False) -> Trainer:  # fmt: skip
    """Prepare ``model`` (built by the caller, who seeds its initialisation) and build the rest.

    bf16 (or fp16, with a gradient scaler) autocast on CUDA unless ``exp.amp`` is off; fp32 on the
    CPU. ``distributed`` wraps the model in DistributedDataParallel (the process group must
    exist). The schedule spans ``exp.epochs * steps_per_epoch`` steps.
    """
    model = prepare_for_training(model, exp, device)
    optimizer = make_optimizer(model, exp)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(steps_per_epoch * exp.epochs, warmup_steps(exp, steps_per_epoch)))
    use_amp = device.type == "cuda" and exp.amp != "off"
    amp_dtype = torch.float16 if exp.amp == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and exp.amp == "fp16")

    def autocast():
        return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp)

    eager: nn.Module = model
    if distributed:
        eager = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = torch.compile(eager) if exp.compile else eager
    return Trainer(model=model, eager=eager, net=net, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                   ema=make_ema(model, exp), autocast=autocast, exp=exp, info=info, image_size=image_size,
                   device=device, seed=seed, rank=rank, world_size=world_size)  # fmt: skip


def epoch_batches(trainer: Trainer, num_samples: int, epoch: int, steps: int) -> torch.Tensor:
    """The epoch's batches of indices ``[steps, local batch]`` on the training device, in one copy
    (a copy per step would stall the GPU). The order comes from (seed, epoch) alone and is the
    same on every rank, which takes its own shard (:func:`mnv3.data.iterate_batches`)."""
    order = torch.Generator().manual_seed(trainer.seed * 7919 + epoch)
    batches = iterate_batches(num_samples, trainer.exp.batch_size // trainer.world_size, shuffle=True, generator=order,
                              drop_last=True, rank=trainer.rank, world_size=trainer.world_size)  # fmt: skip
    return torch.stack(list(batches)[:steps]).to(trainer.device)


class EpochMetrics:
    """An epoch's running training loss, correct count and NaN guard, on the device.

    ``partial`` continues an epoch that a resume picks up in the middle (``loss_sum``, ``correct``
    and ``seen`` so far); ``first`` is the step it starts at. :meth:`read` is the only place that
    waits for the device: the loop calls it when a progress line is due and at the epoch's end.
    """

    def __init__(self, device: torch.device, partial: dict[str, Any] | None = None, first: int = 0) -> None:
        partial = partial or {"loss_sum": 0.0, "correct": 0, "seen": 0}
        self.loss_sum = torch.tensor(partial["loss_sum"], device=device)
        self.correct = torch.tensor(partial["correct"], device=device)
        self.bad_step = torch.tensor(-1, device=device)
        self.counter = torch.tensor(first, device=device)
        self.seen = partial["seen"]

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one step: its mean loss (0-dim), logits ``[N, classes]`` and labels ``[N]``."""
        self.bad_step = torch.where((self.bad_step < 0) & ~torch.isfinite(loss), self.counter, self.bad_step)
        self.counter += 1
        self.loss_sum += loss * len(labels)
        self.correct += (logits.argmax(1) == labels).sum()
        self.seen += len(labels)

    def read(self) -> tuple[int, float, int]:
        """(the first step of the epoch whose loss was not finite, -1 for none; the loss summed over
        the images seen; the correct predictions), read on the host: waits for the device."""
        return int(self.bad_step.item()), self.loss_sum.item(), int(self.correct.item())


def run_step(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor, batches: torch.Tensor, epoch: int, step: int,
             metrics: EpochMetrics) -> None:  # fmt: skip
    """Step ``step`` of epoch ``epoch`` as the training loop runs it.

    Seeds the step's draws from its position (:func:`step_seed`), takes batch ``batches[step]`` of
    the uint8 ``images`` ``[N, C, H, W]`` and int64 ``labels`` ``[N]`` (all on the device), runs
    :func:`train_step`, advances the learning-rate schedule, updates the EMA and adds the step to
    ``metrics``. Returns nothing and reads nothing back: the GPU can run ahead of the host.
    """
    torch.manual_seed(step_seed(trainer.seed, epoch, step, trainer.rank))
    idx = batches[step]
    y = labels[idx]
    loss, logits = train_step(trainer.net, trainer.optimizer, trainer.scaler, images[idx], y, trainer.info, trainer.exp,
                              image_size=trainer.image_size, autocast=trainer.autocast)  # fmt: skip
    trainer.scheduler.step()
    if trainer.ema is not None:
        trainer.ema.update()
    metrics.add(loss, logits, y)
