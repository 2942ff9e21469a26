"""Train a named experiment: ``python -m mnv3.train --experiment mnist_small``.

Read top to bottom: arguments, set-up (devices, data, model, optimizer), resume, the loop, the
final test. One process on a CPU or GPU, or many through ``torchrun`` (DistributedDataParallel).

Reproducibility: every random draw of a step (augmentation, dropout) comes from a seed derived
from (seed, epoch, step, rank), and each epoch's shuffle from (seed, epoch). The RNG state is
therefore fully described by the position in training, which ``last.pt`` stores, so a resumed run
repeats the uninterrupted one exactly on the CPU, even after a Ctrl-C in the middle of an epoch.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_json_atomic
from .data import DataUnavailableError, dataset_info, ensure_splits, load_split, prepare_batch, train_val_split, iterate_batches
from .experiments import EXPERIMENTS, PROFILES, Experiment, get_experiment
from .model import build_model
from .spec import SpecError

__all__ = ["main", "train", "NonFiniteLossError"]

SPLIT_SEED = 0  # the train/validation split never changes with --seed
METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_seconds", "images_per_sec"]


class NonFiniteLossError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- arguments


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _experiments_help() -> str:
    lines = ["experiments (quick profile / full profile):"]
    for name in EXPERIMENTS:
        quick, full = get_experiment(name, "quick"), get_experiment(name, "full")
        lines.append(
            f"  {name:18s} {quick.dataset}, {quick.arch}, drop_first_strides={quick.drop_first_strides}: "
            f"{quick.epochs} / {full.epochs} epochs"
        )
    lines.append("\nEach profile sets the fields above; any field can be overridden, e.g. --epochs 5 --batch-size 64.")
    lines.append(
        "\nexamples:\n"
        "  python -m mnv3.train --experiment mnist_small                  # quick profile, CPU minutes\n"
        "  python -m mnv3.train --experiment cifar10_small_s1 --profile full\n"
        "  python -m mnv3.train --experiment mnist_small --resume         # continue from last.pt\n"
        "  torchrun --nproc_per_node 4 -m mnv3.train --experiment cifar10_large_s1 --profile full\n"
        "\nA run writes runs/<profile>/<experiment>/: config.json, metrics.csv, last.pt, best.pt, test.json."
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.train",
        description="Train MobileNetV3 on one of the named experiments of the original report.",
        epilog=_experiments_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--experiment", required=True, metavar="NAME", help=f"one of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--profile", default="quick", metavar="NAME", help=f"one of: {', '.join(PROFILES)} (default quick)")
    parser.add_argument("--out", default="runs", help="root of run folders; the run lands in OUT/<profile>/<experiment> (default runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation, shuffling, augmentation and dropout")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    parser.add_argument("--data-root", default="data", help="where datasets are downloaded and cached (default data)")
    parser.add_argument("--data-mirror", default=None, metavar="DIR", help="offline dataset mirror (default: $MNV3_DATA_MIRROR)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--ddp-timeout", type=float, default=600, metavar="SECONDS", help="DDP: a rank that waits this long for the others in a collective (a hung or stopped rank) fails the run instead of waiting torch's 30 minutes (default 600)")
    fields = parser.add_argument_group("experiment fields (override the profile's values)")
    for f in dataclasses.fields(Experiment):
        kind = {"int": int, "float": float, "bool": _parse_bool, "str": str}[str(f.type)]
        fields.add_argument(
            f"--{f.name.replace('_', '-')}", dest=f"field_{f.name}", type=kind, default=None, metavar=str(f.type).upper(), help=f.metadata["help"]
        )
    return parser


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Experiment]:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        valid = ", ".join("--" + f.name.replace("_", "-") for f in dataclasses.fields(Experiment))
        parser.error(f"unknown argument(s) {' '.join(unknown)}; experiment fields are: {valid}")
    overrides = {k[len("field_"):]: v for k, v in vars(args).items() if k.startswith("field_") and v is not None}
    try:
        exp = get_experiment(args.experiment, args.profile, **overrides)
    except ValueError as err:
        parser.error(str(err))
    return args, exp


# ----------------------------------------------------------------------------- helpers


def _step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 100_003 + step * 101 + rank) % (2**63)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay only conv and linear weights: decaying BN scales and biases only fights normalisation.
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate(model: nn.Module, images, labels, info, image_size, batch_size, device, channels_last, autocast) -> tuple[float, float]:
    """(loss, accuracy) over a whole split, in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for start in range(0, len(images), batch_size):
        x = prepare_batch(images[start : start + batch_size], info, train=False, image_size=image_size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels[start : start + batch_size]
        with autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = max(1, len(images))
    return loss_sum.item() / n, correct.item() / n


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


class _StopRequest:
    """Turns the first Ctrl-C into a request to stop after the current step (a second one kills)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)


# ----------------------------------------------------------------------------- training


def train(args: argparse.Namespace, exp: Experiment, return_model: bool = False):
    """Run the experiment; return the run folder (and the trained model when ``return_model``)."""
    # --- devices and processes
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo", timeout=timedelta(seconds=args.ddp_timeout))
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    else:
        rank, world_size, local_rank = 0, 1, 0
    if args.device:
        device = torch.device(args.device)
    else:
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    is_main = rank == 0
    run_dir = Path(args.out) / args.profile / args.experiment
    if exp.batch_size % world_size:
        raise ValueError(f"batch_size {exp.batch_size} must be divisible by the number of processes ({world_size}).")
    local_batch = exp.batch_size // world_size

    # --- data: the whole split lives on the training device as uint8; batches are slices of it
    info = dataset_info(exp.dataset)
    image_size = exp.image_size or info.image_size
    ensure_splits(exp.dataset, root=args.data_root, mirror=args.data_mirror)  # a broken test split fails now, not after training
    images, labels = load_split(exp.dataset, "train", root=args.data_root, mirror=args.data_mirror)
    train_idx, val_idx = train_val_split(len(images), exp.val_fraction, seed=SPLIT_SEED)
    if exp.max_train_samples:
        train_idx = train_idx[: exp.max_train_samples]
    train_x, train_y = images[train_idx].to(device), labels[train_idx].to(device)
    val_x, val_y = images[val_idx].to(device), labels[val_idx].to(device)
    del images, labels

    # --- model and optimisation
    torch.manual_seed(args.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(
        exp.arch,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        width_mult=exp.width_mult,
        dropout=exp.dropout,
        drop_first_strides=exp.drop_first_strides,
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = exp.bn_momentum
    model_config = model.config
    model.to(device)
    if exp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(_param_groups(model, exp.weight_decay), lr=exp.lr, momentum=exp.momentum, nesterov=True)
    steps_per_epoch = len(train_x) // world_size // local_batch
    if steps_per_epoch == 0:
        raise ValueError(f"the training split ({len(train_x)} images) is smaller than one batch ({exp.batch_size}).")
    total_steps = steps_per_epoch * exp.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total_steps, round(exp.warmup_epochs * steps_per_epoch))
    )
    use_amp = device.type == "cuda" and exp.amp != "off"
    amp_dtype = torch.float16 if exp.amp == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and exp.amp == "fp16")

    def autocast():
        return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp)

    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if exp.compile:
        net = torch.compile(net)

    # --- resume or start
    history: list[dict[str, Any]] = []
    start_epoch, start_step, best_val = 0, 0, -1.0
    partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    if args.resume:
        state = load_checkpoint(run_dir / "last.pt", map_location=device)
        if state.get("experiment") != dataclasses.asdict(exp):
            raise CheckpointError(
                f"{run_dir / 'last.pt'}: it was written with other experiment fields; resume with the same "
                f"flags as the original run (see {run_dir / 'config.json'})."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, start_step, best_val = state["epoch"], state["step_in_epoch"], state["best_val_acc"]
        history, partial = state["history"], state["partial_epoch"]
        if is_main:
            print(f"resuming {run_dir} at epoch {start_epoch + 1}, step {start_step}", flush=True)
    config = {
        "experiment": args.experiment,
        "profile": args.profile,
        "fields": dataclasses.asdict(exp),
        "dataset": exp.dataset,
        "image_size": image_size,
        "model": model_config,
        "seed": args.seed,
        "split_seed": SPLIT_SEED,
        "train_samples": len(train_x),
        "val_samples": len(val_x),
        "world_size": world_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "versions": {"mnv3": __version__, "python": platform.python_version(), "torch": torch.__version__, "torchvision": _torchvision_version()},
        "git_commit": _git_commit(),
        "data_root": str(args.data_root),
        "data_mirror": str(args.data_mirror) if args.data_mirror else os.environ.get("MNV3_DATA_MIRROR"),
        "command": "python -m mnv3.train " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("train.py") else None,
    }
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "config.json", config)

    def checkpoint(epoch: int, step_in_epoch: int) -> dict[str, Any]:
        return {
            "model_config": model_config,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "best_val_acc": best_val,
            "history": history,
            "partial_epoch": partial,
            "experiment": dataclasses.asdict(exp),
            "seed": args.seed,
            "rng": {"torch": torch.get_rng_state()},  # informative: each step reseeds from its position
        }

    stop = _StopRequest()
    previous_handler = signal.signal(signal.SIGINT, stop) if is_main or not distributed else None
    try:
        for epoch in range(start_epoch, exp.epochs):
            net.train()
            order = torch.Generator().manual_seed(args.seed * 7919 + epoch)
            batches = list(
                iterate_batches(len(train_x), local_batch, shuffle=True, generator=order, drop_last=True, rank=rank, world_size=world_size)
            )[:steps_per_epoch]
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            loss_sum = torch.tensor(partial["loss_sum"], device=device)
            correct = torch.tensor(partial["correct"], device=device)
            bad_step = torch.tensor(-1, device=device)
            seen = partial["seen"]
            t0 = time.perf_counter()
            bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{exp.epochs}", disable=None if is_main else True, leave=False, dynamic_ncols=True)
            done = first
            for step in range(first, steps_per_epoch):
                torch.manual_seed(_step_seed(args.seed, epoch, step, rank))
                idx = batches[step].to(device)
                x = prepare_batch(train_x[idx], info, train=True, image_size=image_size)
                if exp.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = train_y[idx]
                with autocast():
                    logits = net(x)
                loss = compute_loss(logits, y, exp.label_smoothing)
                # Check on the device and synchronise only at log points: a per-step .item() stalls GPUs.
                bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), torch.tensor(step, device=device), bad_step)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
                done = step + 1
                if step % 20 == 0 or done == steps_per_epoch or stop.requested:
                    if bad_step.item() >= 0:
                        raise NonFiniteLossError(
                            f"the loss became non-finite at epoch {epoch + 1}, step {bad_step.item() + 1}; "
                            f"stopped. {run_dir / 'last.pt'} keeps the last good state (end of epoch {epoch}). "
                            "Lower --lr or check the data."
                        )
                    elapsed = partial["seconds"] + time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}", img_s=f"{seen * world_size / elapsed:.0f}")
                bar.update(1)
                if stop.requested:
                    break
            bar.close()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            partial = {
                "loss_sum": loss_sum.item(),
                "correct": int(correct.item()),
                "seen": seen,
                "seconds": partial["seconds"] + time.perf_counter() - t0,
            }
            if done < steps_per_epoch:  # Ctrl-C in the middle of an epoch
                _interrupted(run_dir, is_main, checkpoint(epoch, done), args, exp, f"epoch {epoch + 1}, step {done}")
            val_loss, val_acc = evaluate(net, val_x, val_y, info, image_size, 2 * local_batch, device, exp.channels_last, autocast)
            row = {
                "epoch": epoch + 1,
                "lr": scheduler.get_last_lr()[0],
                "train_loss": partial["loss_sum"] / max(1, seen),
                "train_acc": partial["correct"] / max(1, seen),
                "val_loss": val_loss,
                "val_acc": val_acc,
                "epoch_seconds": partial["seconds"],
                "images_per_sec": seen * world_size / max(1e-9, partial["seconds"]),
            }
            history.append(row)
            improved = val_acc > best_val
            best_val = max(best_val, val_acc)
            if is_main:
                _write_metrics(run_dir / "metrics.csv", history)
                state = checkpoint(epoch + 1, 0)
                save_checkpoint(run_dir / "last.pt", state)
                if improved:
                    save_checkpoint(run_dir / "best.pt", state)
                print(
                    f"epoch {epoch + 1}/{exp.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
                    f"val loss {val_loss:.4f} acc {val_acc:.4f} | {row['epoch_seconds']:.1f}s, {row['images_per_sec']:.0f} img/s",
                    flush=True,
                )
            if stop.requested and epoch + 1 < exp.epochs:
                _interrupted(run_dir, is_main, None, args, exp, f"the end of epoch {epoch + 1}")
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)

    # --- the test set, once, with the best checkpoint
    if is_main:
        best = load_checkpoint(run_dir / "best.pt", map_location=device)
        model.load_state_dict(best["model"])
        test_x, test_y = load_split(exp.dataset, "test", root=args.data_root, mirror=args.data_mirror)
        test_loss, test_acc = evaluate(model, test_x.to(device), test_y.to(device), info, image_size, 2 * local_batch, device, exp.channels_last, autocast)
        best_epoch = max(history, key=lambda r: r["val_acc"])["epoch"]
        result = {
            "experiment": args.experiment,
            "profile": args.profile,
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "checkpoint": "best.pt",
            "best_epoch": best_epoch,
            "best_val_acc": best_val,
            "epochs": exp.epochs,
            "train_seconds": sum(r["epoch_seconds"] for r in history),
            "parameters": sum(p.numel() for p in model.parameters()),
            "device": config["device"],
        }
        write_json_atomic(run_dir / "test.json", result)
        print(f"test accuracy {test_acc:.4f} (best epoch {best_epoch}) -> {run_dir / 'test.json'}", flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return (run_dir, model) if return_model else run_dir


def _torchvision_version() -> str | None:
    try:
        import torchvision

        return torchvision.__version__
    except ImportError:
        return None


def _interrupted(run_dir: Path, is_main: bool, state: dict[str, Any] | None, args, exp: Experiment, where: str) -> None:
    """Save the mid-epoch state (when given), print how to resume, and stop."""
    if not is_main:
        raise KeyboardInterrupt
    if state is not None:
        save_checkpoint(run_dir / "last.pt", state)
    print(
        f"\ninterrupted at {where}; {run_dir / 'last.pt'} holds the state.\n"
        f"resume with: python -m mnv3.train {' '.join(_resume_argv(args, exp))}",
        flush=True,
    )
    raise KeyboardInterrupt


def _resume_argv(args: argparse.Namespace, exp: Experiment) -> list[str]:
    argv = ["--experiment", args.experiment, "--profile", args.profile, "--out", str(args.out), "--seed", str(args.seed)]
    default = get_experiment(args.experiment, args.profile)
    for f in dataclasses.fields(Experiment):
        value = getattr(exp, f.name)
        if value != getattr(default, f.name):
            argv += [f"--{f.name.replace('_', '-')}", str(value)]
    if args.data_mirror:
        argv += ["--data-mirror", str(args.data_mirror)]
    if args.data_root != "data":
        argv += ["--data-root", str(args.data_root)]
    return argv + ["--resume"]


def main(argv: list[str] | None = None) -> Path:
    args, exp = parse_args(argv)
    try:
        return train(args, exp)
    except (DataUnavailableError, CheckpointError, SpecError, NonFiniteLossError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
