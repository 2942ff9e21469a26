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
import dataclasses
import json
import math
import os
import platform
import shlex
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
# The console bar, not tqdm.auto's: training runs in a terminal or a log, never a notebook, and
# tqdm.auto imported in a notebook kernel without ipywidgets warns (notebook 08 imports this module).
from tqdm import tqdm

from .augment import prepare_batch
from .checkpoint import CheckpointError, best_epoch_of, check_resume, evaluation_weights, load_checkpoint, repair_checkpoints, save_checkpoint
from .data import DataUnavailableError, dataset_info, ensure_splits, load_split, train_val_split
from .files import os_error_line
from .experiments import EXPERIMENTS, PROFILES, Experiment, get_experiment
from .files import remove_stale_temporaries
from .imagefolder import dataset_record, is_folder_dataset, open_folder_dataset
from .pretrained import start_from
from .model import build_model
from .lock import RunLock, RunLockedError
from .runs import experiment_record, load_record, overrides, run_name, run_record, write_metrics, write_record, write_test
from .records import check_state_dict
from .spec import SpecError
from .step import EpochMetrics, epoch_batches, make_trainer, resolve_device, run_step
from .summary import check_training_memory

__all__ = ["main", "train", "evaluate", "print_config", "NonFiniteLossError"]

SPLIT_SEED = 0  # the train/validation split never changes with --seed


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
        "  python -m mnv3.train --experiment mnist_small --profile full --lr 0.05 --print-config\n"
        "                                   # every field's value after the profile and the overrides; trains nothing\n"
        "  torchrun --nproc_per_node 4 -m mnv3.train --experiment cifar10_large_s1 --profile full\n"
        "\nA run writes runs/<profile>/<name>/: config.json, metrics.csv, last.pt, best.pt, test.json. <name> is the\n"
        "experiment for the profile's own settings, and shows the overrides otherwise (see --name)."
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
    parser.add_argument("--out", default="runs", help="root of run folders; the run lands in OUT/<profile>/<name> (default runs; see --name)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation, shuffling, augmentation and dropout")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    parser.add_argument("--data-root", default="data", help="where datasets are downloaded and cached (default data)")
    parser.add_argument("--data-mirror", default=None, metavar="DIR", help="offline dataset mirror (default: $MNV3_DATA_MIRROR)")
    parser.add_argument("--device", default=None, help="cpu, cuda (the current GPU) or cuda:N (default: cuda:0 when CUDA works, else cpu). "
                        "Asking for CUDA where torch sees none stops the run at once, before anything is written")
    parser.add_argument("--skip-test", action="store_true", help="validation only: never read the test set at the end (no test.json; "
                        "the recipe sweep's candidates, which are chosen on validation; a final run reads the test set once)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads for torch (default: torch's choice, one per core). On a machine that other work shares, "
        "fewer is faster: on a busy 2-core machine --threads 1 trained at 571 img/s against 297 with 2",
    )
    parser.add_argument(
        "--name", default=None,
        help="the run folder's name (default: the experiment, plus the overridden fields and seed, e.g. "
        "mnist_small-epochs5-lr0.05, so a run with other settings never replaces the profile's own)",
    )
    parser.add_argument("--print-config", action="store_true", help="print what the experiment resolves to after --profile and "
                        "every override (fields, overrides, the run folder's name, seed) as JSON, in the form config.json records it, "
                        "and exit: no data is read, nothing is trained or written")
    parser.add_argument("--ddp-timeout", type=float, default=600, metavar="SECONDS", help="DDP: a rank that waits this long for the others in a collective (a hung or stopped rank) fails the run instead of waiting torch's 30 minutes (default 600)")
    fields = parser.add_argument_group("experiment fields (override the profile's values)")
    for f in dataclasses.fields(Experiment):
        kind = {"int": int, "float": float, "bool": _parse_bool, "str": str}[str(f.type)]
        fields.add_argument(  # a bool field alone (--freeze-features) means true
            f"--{f.name.replace('_', '-')}", dest=f"field_{f.name}", type=kind, default=None, metavar=str(f.type).upper(), help=f.metadata["help"],
            **({"nargs": "?", "const": True} if kind is _parse_bool else {}))
    return parser


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Experiment]:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.ddp_timeout <= 0:
        parser.error(f"--ddp-timeout must be a positive number of seconds, got {args.ddp_timeout:g}")
    if unknown:
        valid = ", ".join("--" + f.name.replace("_", "-") for f in dataclasses.fields(Experiment))
        parser.error(f"unknown argument(s) {' '.join(unknown)}; experiment fields are: {valid}")
    overrides = {k[len("field_"):]: v for k, v in vars(args).items() if k.startswith("field_") and v is not None}
    try:
        exp = get_experiment(args.experiment, args.profile, **overrides)
    except ValueError as err:
        parser.error(str(err))
    return args, exp


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: nn.Module, images, labels, info, image_size, batch_size, device, channels_last, autocast, tta_flip: bool = False) -> tuple[float, float]:
    """(loss, accuracy) over a whole split, in eval mode. With ``tta_flip``, each image and its
    mirror are both classified and their probabilities averaged."""
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
            if tta_flip:
                probs = (logits.float().softmax(1) + model(x.flip(-1)).float().softmax(1)) / 2
                logits = probs.clamp_min(1e-12).log()  # log-probabilities: cross-entropy and argmax as before
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = max(1, len(images))
    return loss_sum.item() / n, correct.item() / n


class _StopRequest:
    """Turns the first Ctrl-C into a request to stop after the current step (a second one kills)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)


# ----------------------------------------------------------------------------- training


def train(args: argparse.Namespace, exp: Experiment, return_model: bool = False):
    """Run the experiment; return the run folder (and the trained model when ``return_model``).

    Raises CheckpointError (a resume that does not match its run, an unusable checkpoint, a disk
    that is full), RunLockedError (another training holds the folder), NonFiniteLossError,
    DataUnavailableError, SpecError or ValueError, each saying what to do.
    """
    # --- devices and processes (a run that asks for CUDA where there is none stops here, in one line)
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    device = resolve_device(args.device, int(os.environ.get("LOCAL_RANK", 0)) if distributed else None)
    if distributed:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=args.ddp_timeout))
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    is_main = rank == 0
    run_dir = Path(args.out) / args.profile / run_name(args.experiment, args.profile, exp, args.seed, args.name)
    if exp.batch_size % world_size:
        raise ValueError(f"batch_size {exp.batch_size} must be divisible by the number of processes ({world_size}).")
    local_batch = exp.batch_size // world_size
    # Before any folder or data; an image folder's channels and size are known once it is read (below).
    check_training_memory(exp, None if is_folder_dataset(exp.dataset) else dataset_info(exp.dataset), device, local_batch)

    # --- the run folder: one training at a time, and a run is only ever continued by --resume
    lock = RunLock(run_dir).acquire() if is_main else None
    try:
        if is_main:
            remove_stale_temporaries(run_dir)
            if args.resume and (run_dir / "test.json").is_file():
                print(f"{run_dir} is finished ({run_dir / 'test.json'}); nothing to resume, nothing changed.", flush=True)
                return (run_dir, None) if return_model else run_dir
            if not args.resume and any((run_dir / f).is_file() for f in ("last.pt", "best.pt", "test.json")):
                finished = (run_dir / "test.json").is_file()
                raise CheckpointError(
                    f"{run_dir} already holds a {'finished run (test.json)' if finished else 'run'}. "
                    + ("Choose another --out or --name, or delete the folder to retrain it." if finished
                       else "Pass --resume to continue it, or choose another --out or --name.")
                )
            if args.resume and not (run_dir / "last.pt").is_file():
                raise CheckpointError(f"{run_dir / 'last.pt'}: nothing to resume. Start the run without --resume.")
            if args.resume and (run_dir / "config.json").exists():
                load_record(run_dir)  # a damaged config.json is refused now, not after the training it would end

        # --- data: the whole split lives on the training device as uint8; batches are slices of it
        folder = open_folder_dataset(exp.dataset, image_size=exp.image_size, val_fraction=exp.val_fraction, skip_bad=exp.skip_bad_images,
                                     root=args.data_root, log=print if is_main else None) if is_folder_dataset(exp.dataset) else None  # your images
        info = folder.info if folder else dataset_info(exp.dataset)
        if folder:
            check_training_memory(exp, info, device, local_batch)
        image_size = exp.image_size or info.image_size
        if folder:  # its split on the device, or streamed from its memory-mapped cache when too big
            (train_x, train_y), (val_x, val_y) = folder.training_splits(exp.max_train_samples, device)
        else:
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
        start_from(model, exp.init, exp.freeze_features, resume=args.resume, log=print if is_main else None)  # --init, --freeze-features
        model_config = model.config
        steps_per_epoch = len(train_x) // world_size // local_batch
        if steps_per_epoch == 0:
            fit = len(train_x) // world_size * world_size  # a batch splits evenly over the processes
            raise ValueError(f"the training split ({len(train_x)} images) is smaller than one batch ({exp.batch_size}); pass "
                             f"--batch-size N with N <= {fit}{f' (a multiple of the {world_size} processes)' if world_size > 1 else ''}"
                             f"{' or a larger --max-train-samples' if exp.max_train_samples else ''}.")  # fmt: skip
        trainer = make_trainer(model, exp, info, device, image_size=image_size, steps_per_epoch=steps_per_epoch, seed=args.seed,
                               rank=rank, world_size=world_size, distributed=distributed)  # fmt: skip
        model, optimizer, scheduler, scaler, ema, autocast = (trainer.model, trainer.optimizer, trainer.scheduler, trainer.scaler,
                                                             trainer.ema, trainer.autocast)  # fmt: skip

        # --- resume or start. What decides the weights besides the fields is stored and must match:
        # the seed, the number of processes and, on the CPU, the thread count.
        launch = {"seed": args.seed, "world_size": world_size, "threads": threads if device.type == "cpu" else None,
                  **({"image_folder_fingerprint": folder.details["fingerprint"]} if folder else {})}  # images added or edited: refused
        history: list[dict[str, Any]] = []
        start_epoch, start_step, best_val, best_epoch = 0, 0, -1.0, 0
        partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        if args.resume:
            last_path, fields = run_dir / "last.pt", dataclasses.asdict(exp)
            if is_main:  # check before repairing, so a refused resume changes nothing
                check_resume(load_checkpoint(last_path), last_path, fields, launch, model_config)
                repair_checkpoints(run_dir)
            if distributed:
                dist.barrier()  # every rank reads last.pt as rank 0 left it
            state = load_checkpoint(last_path, map_location=device)
            check_resume(state, last_path, fields, launch, model_config)
            for key in ("model", "ema") if ema is not None else ("model",):  # refused, not cast: mnv3.records
                check_state_dict(state[key], model, f"{last_path} ({key})")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            start_epoch, start_step, best_val = state["epoch"], state["step_in_epoch"], state["best_val_acc"]
            history, partial = state["history"], state["partial_epoch"]
            best_epoch = best_epoch_of(history)
            if is_main:
                print(f"resuming {run_dir} at epoch {start_epoch + 1}, step {start_step}", flush=True)
        elif is_main:
            device_label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {threads} threads)"
            write_record(run_dir, run_record(
                exp, experiment=args.experiment, name=run_dir.name, profile=args.profile, seed=args.seed, split_seed=SPLIT_SEED,
                image_size=image_size, model_config=model_config, train_samples=len(train_x), val_samples=len(val_x),
                world_size=world_size, device=device_label, threads=threads, data_root=args.data_root,
                data_mirror=args.data_mirror or os.environ.get("MNV3_DATA_MIRROR"),
                command=_launch_command(args, exp, world_size, resume=False), dataset_info=dataset_record(info, folder and folder.details),
            ))  # fmt: skip

        def checkpoint(epoch: int, step_in_epoch: int) -> dict[str, Any]:
            return {
                "model_config": model_config,
                "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "best_val_acc": best_val,
                "best_epoch": best_epoch,
                "history": history,
                "partial_epoch": partial,
                "experiment": dataclasses.asdict(exp),
                "launch": launch,
                "seed": args.seed,
                "rng": {"torch": torch.get_rng_state()},  # informative: each step reseeds from its position
            }

        def save(name: str, state: dict[str, Any]) -> None:
            try:
                save_checkpoint(run_dir / name, state)
            except OSError as err:
                last = run_dir / "last.pt"
                kept = f"the previous {last} is intact" if last.is_file() else "no checkpoint was written yet"
                raise CheckpointError(
                    f"could not write {run_dir / name} ({err.strerror or err}); {kept}. Free space, then resume with: "
                    f"{_launch_command(args, exp, world_size, resume=True)}"
                ) from None

        if is_main:  # the step count the GPU plan is sized by (scripts/gpu_plan.md)
            print(f"{run_dir}: {len(train_x)} training images, {steps_per_epoch} steps of {exp.batch_size} an epoch, "
                  f"{exp.epochs} epochs, on {device}", flush=True)  # fmt: skip
        stop = _StopRequest()
        previous_handler = signal.signal(signal.SIGINT, stop) if is_main or not distributed else None
        progress = _Progress(enabled=is_main)
        try:
            for epoch in range(start_epoch, exp.epochs):
                trainer.net.train()
                batches = epoch_batches(trainer, len(train_x), epoch, steps_per_epoch)
                first = start_step if epoch == start_epoch else 0
                if first == 0:
                    partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
                metrics = EpochMetrics(device, partial, first)  # on the device; read only when a progress line is due
                t0 = time.perf_counter()
                bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{exp.epochs}", disable=None if is_main else True,
                           leave=False, **_bar_size())  # fmt: skip
                done = first
                for step in range(first, steps_per_epoch):
                    run_step(trainer, train_x, train_y, batches, epoch, step, metrics)
                    done = step + 1
                    # Under DDP every rank reads the NaN guard at the same steps, so all stop together: a rank
                    # that stopped alone would leave the others waiting in their next all-reduce.
                    due = step % 20 == 0 if distributed else progress.due() or (not bar.disable and step % 20 == 0)
                    if done == steps_per_epoch or stop.requested or due:
                        bad_step, loss_sum, correct = metrics.read()
                        if bad_step >= 0:
                            last = run_dir / "last.pt"
                            kept = f"{last} keeps the last good state (end of epoch {epoch})" if epoch > 0 or first > 0 else "no checkpoint was written yet (the first epoch had not ended)"
                            raise NonFiniteLossError(
                                f"the loss became non-finite at epoch {epoch + 1}, step {bad_step + 1}; stopped. "
                                f"{kept}. Lower --lr or check the data."
                            )
                        elapsed = partial["seconds"] + time.perf_counter() - t0
                        stats = {"loss": loss_sum / metrics.seen, "acc": correct / metrics.seen, "img_s": metrics.seen * world_size / elapsed}
                        bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['acc']:.3f}", img_s=f"{stats['img_s']:.0f}")
                        progress.maybe_print(f"epoch {epoch + 1}/{exp.epochs}, step {done}/{steps_per_epoch}", stats)
                    bar.update(1)
                    if stop.requested:
                        break
                bar.close()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                _, loss_sum, correct = metrics.read()
                seen = metrics.seen
                partial = {"loss_sum": loss_sum, "correct": correct, "seen": seen, "seconds": partial["seconds"] + time.perf_counter() - t0}
                if done < steps_per_epoch:  # Ctrl-C in the middle of an epoch
                    if is_main:
                        save("last.pt", checkpoint(epoch, done))
                    _interrupted(run_dir, is_main, args, exp, world_size, f"epoch {epoch + 1}, step {done}")
                # The eager module, never the compiled one: a dozen batches do not repay a second graph.
                val_loss, val_acc = evaluate(trainer.evaluation_model(), val_x, val_y, info, image_size, 2 * local_batch, device,
                                             exp.channels_last, autocast, exp.tta_flip)  # fmt: skip
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
                if not math.isfinite(val_loss):
                    raise NonFiniteLossError(
                        f"the validation loss became non-finite after epoch {epoch + 1} (training loss "
                        f"{row['train_loss']:.4f}); stopped before writing this epoch. Lower --lr, or check --ema-decay."
                    )
                history.append(row)
                improved = val_acc > best_val
                if improved:
                    best_val, best_epoch = val_acc, epoch + 1
                if is_main:
                    write_metrics(run_dir, history)
                    state = checkpoint(epoch + 1, 0)
                    # best.pt first: a kill between the two writes leaves best.pt ahead of last.pt,
                    # which resume detects and repairs (best.pt then holds the newer state whole).
                    if improved:
                        save("best.pt", state)
                    save("last.pt", state)
                    print(
                        f"epoch {epoch + 1}/{exp.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
                        f"val loss {val_loss:.4f} acc {val_acc:.4f} | {row['epoch_seconds']:.1f}s, {row['images_per_sec']:.0f} img/s",
                        flush=True,
                    )
                if stop.requested and epoch + 1 < exp.epochs:
                    _interrupted(run_dir, is_main, args, exp, world_size, f"the end of epoch {epoch + 1}")
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)

        # --- the test set, once, with the best checkpoint (never for --skip-test: a run chosen on validation)
        if is_main and args.skip_test:
            print(f"best validation accuracy {best_val:.4f} (epoch {best_epoch}); --skip-test: the test set was not read.", flush=True)
        elif is_main:
            best = load_checkpoint(run_dir / "best.pt", map_location=device)
            if best["epoch"] != best_epoch:
                raise CheckpointError(
                    f"{run_dir / 'best.pt'} holds epoch {best['epoch']}, but the run's best epoch is {best_epoch}; "
                    "refusing to report another epoch's weights. Retrain the run."
                )
            model.load_state_dict(evaluation_weights(best))
            test_x, test_y = folder.split("test", device) if folder else load_split(exp.dataset, "test", root=args.data_root, mirror=args.data_mirror)
            test_loss, test_acc = evaluate(model, test_x.to(device), test_y.to(device), info, image_size, 2 * local_batch, device,
                                           exp.channels_last, autocast, exp.tta_flip)  # fmt: skip
            result = {
                "experiment": args.experiment,
                "name": run_dir.name,
                "profile": args.profile,
                "test_accuracy": test_acc,
                "test_loss": test_loss,
                "checkpoint": "best.pt",
                "best_epoch": best_epoch,
                "best_val_acc": best_val,
                "epochs": exp.epochs,
                "train_seconds": sum(r["epoch_seconds"] for r in history),
                "parameters": sum(p.numel() for p in model.parameters()),
                "device": load_record(run_dir)["device"],
            }
            write_test(run_dir, result)
            print(f"test accuracy {test_acc:.4f} (best epoch {best_epoch}) -> {run_dir / 'test.json'}", flush=True)
        if distributed:
            dist.barrier()
            dist.destroy_process_group()
        return (run_dir, model) if return_model else run_dir
    finally:
        if lock is not None:
            lock.release()


# A terminal that reports no window size (0 x 0: a pseudo-terminal nobody sized, some containers and
# serial consoles) made tqdm draw nothing for a whole epoch: it takes 0 - 1 columns and rows. The bar
# then gets the classic terminal's size instead.
FALLBACK_TERMINAL = {"ncols": 80, "nrows": 24}


def _bar_size() -> dict[str, Any]:
    """tqdm's size arguments: follow the terminal as it is resized (``dynamic_ncols``), unless
    stderr, where tqdm draws, is a terminal that reports no size; then :data:`FALLBACK_TERMINAL`."""
    try:
        fd = sys.stderr.fileno()
        if os.isatty(fd) and 0 in os.get_terminal_size(fd):
            return dict(FALLBACK_TERMINAL)
    except (AttributeError, OSError, ValueError):  # no real file behind stderr (a notebook, a capture)
        pass
    return {"dynamic_ncols": True}


class _Progress:
    """A plain progress line every ``seconds`` when stdout is not a terminal (logs, CI, nohup), where
    tqdm's bar is off and an epoch would otherwise pass in silence."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and not sys.stdout.isatty()
        self.seconds = float(os.environ.get("MNV3_PROGRESS_SECONDS", 30))
        self.last = time.perf_counter()

    def due(self) -> bool:
        return self.enabled and time.perf_counter() - self.last >= self.seconds

    def maybe_print(self, where: str, stats: dict[str, float]) -> None:
        if self.due():
            self.last = time.perf_counter()
            print(f"  {where}: loss {stats['loss']:.4f} acc {stats['acc']:.4f}, {stats['img_s']:.0f} img/s", flush=True)


def _interrupted(run_dir: Path, is_main: bool, args, exp: Experiment, world_size: int, where: str) -> None:
    """Print how to resume, and stop."""
    if not is_main:
        raise KeyboardInterrupt
    print(
        f"\ninterrupted at {where}; {run_dir / 'last.pt'} holds the state.\n"
        f"resume with: {_launch_command(args, exp, world_size, resume=True)}",
        flush=True,
    )
    raise KeyboardInterrupt


def _launch_command(args: argparse.Namespace, exp: Experiment, world_size: int, *, resume: bool) -> str:
    """The whole command that (re)starts this run: torchrun for several processes, every flag that
    changes the result (fields that differ from the profile, seed, threads, device, name)."""
    argv = ["--experiment", args.experiment, "--profile", args.profile, "--out", str(args.out), "--seed", str(args.seed)]
    for key, value in overrides(args.experiment, args.profile, exp).items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    for flag, value, default in (("--name", args.name, None), ("--threads", args.threads, None), ("--device", args.device, None),
                                 ("--data-mirror", args.data_mirror, None), ("--data-root", args.data_root, "data")):
        if value is not None and value != default:
            argv += [flag, str(value)]
    argv += ["--skip-test"] if args.skip_test else []
    launcher = f"torchrun --nproc_per_node {world_size} -m mnv3.train" if world_size > 1 else "python -m mnv3.train"
    return " ".join([launcher, *(shlex.quote(a) for a in argv), *(["--resume"] if resume else [])])


def print_config(args: argparse.Namespace, exp: Experiment) -> None:
    """``--print-config``: :func:`mnv3.runs.experiment_record` as JSON on stdout (config.json's first
    keys, as a training of these arguments would write them). Raises ValueError for a bad ``--name``."""
    name = run_name(args.experiment, args.profile, exp, args.seed, args.name)
    print(json.dumps(experiment_record(exp, experiment=args.experiment, name=name, profile=args.profile, seed=args.seed), indent=2))


def main(argv: list[str] | None = None) -> Path | None:
    """The command line; returns the run folder (None with ``--print-config``). Exits with status 2
    and one line for a user's mistake, 130 when interrupted."""
    args, exp = parse_args(argv)
    if args.print_config:
        try:
            print_config(args, exp)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        return None
    # Ctrl-C (or `timeout -s INT`) stops the run even where the launcher ignored SIGINT (a job a
    # script put in the background): before the loop it ends with status 130, in it the state is saved.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return train(args, exp)
    except (DataUnavailableError, CheckpointError, RunLockedError, SpecError, NonFiniteLossError, ValueError, OSError) as err:
        print(f"error: {os_error_line(err) if isinstance(err, OSError) else err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
