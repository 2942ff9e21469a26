"""The training suite: images per second of our model against torchvision's in
``mnv3.train``'s own step, steps alternating, and its target."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from ..environment import load_average
from ..timing import interleaved_times, paired_ratio, summarize_times
from .cases import spec_for_arch, training_case
from .config import TARGETS, TRAIN_CONTENDERS, BenchConfig
from .formatting import ci_note, console_table, format_ms, round_significant, target_verdict, within_noise
from .machine import CpuMeter, busy_note
from .profiling import eager_profile_diff, profile_note


def run_training(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The training suite: our model against torchvision's, alternating steps of the same loop."""
    from ..data import dataset_info, make_synthetic
    from ..experiments import get_experiment
    from ..torchvision_compat import to_torchvision
    from ..model import build_model
    from ..step import make_optimizer, prepare_for_training, train_step

    device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = []
    for name in cfg.train_settings:
        case = training_case(name)
        exp = get_experiment(case.experiment, "quick") if case.experiment else get_experiment("mnist_small", "quick")
        info = dataset_info(case.dataset)
        torch.manual_seed(case.seed)
        ours = build_model(spec_for_arch(case.arch), num_classes=case.classes, in_channels=case.in_channels,
                           width_mult=case.width, dropout=exp.dropout, drop_first_strides=case.drop_first_strides)  # fmt: skip
        tv = to_torchvision(ours)
        models = {"torchvision": tv, "ours": ours}
        images, labels = make_synthetic(cfg.train_batch * 4, num_classes=case.classes, channels=case.in_channels, size=case.resolution)
        images, labels = images.to(device), labels.to(device)
        use_amp = device.type == "cuda" and exp.amp != "off"
        amp_dtype = torch.float16 if exp.amp == "fp16" else torch.bfloat16

        def autocast(device=device, amp_dtype=amp_dtype, use_amp=use_amp):
            return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp)

        steps, counters = {}, {}
        for key, model in models.items():
            prepare_for_training(model, exp, device)
            optimizer = make_optimizer(model, exp)
            scaler = torch.amp.GradScaler("cuda", enabled=use_amp and exp.amp == "fp16")
            counter = {"i": 0}

            def step(model=model, optimizer=optimizer, scaler=scaler, counter=counter):
                # mnv3.train's own step, not a copy, so these numbers describe training.
                i = counter["i"] % 4
                counter["i"] += 1
                idx = slice(i * cfg.train_batch, (i + 1) * cfg.train_batch)
                counter["loss"], _ = train_step(model, optimizer, scaler, images[idx], labels[idx], info, exp,
                                                image_size=case.resolution, autocast=autocast)  # fmt: skip

            steps[key] = step
            counters[key] = counter
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
        load_before = load_average()
        start = time.perf_counter()
        with CpuMeter() as meter:
            times = interleaved_times(steps, warmup=cfg.train_warmup, max_rounds=cfg.train_repeats,
                                      min_rounds=cfg.train_min_rounds, budget_s=cfg.train_budget_s, sync=sync)  # fmt: skip
        seconds = time.perf_counter() - start
        tv_stats = summarize_times(times["torchvision"])
        profile = None
        slower = paired_ratio(times["torchvision"], times["ours"])["ci95"][1] < TARGETS["training_ratio_min"]
        if slower and device.type == "cpu":
            # Clearly slower than torchvision: say where the time goes, op by op (forward and backward).
            profile = eager_profile_diff(lambda _: steps["torchvision"](), lambda _: steps["ours"](), None, calls=1)
        lines = [("model", "median step ms", "p90 ms", "images/s", "ratio to torchvision")]
        for key in TRAIN_CONTENDERS:
            stats = summarize_times(times[key])
            pair = paired_ratio(times["torchvision"], times[key])  # > 1: ours is faster
            row = {
                "contender": key, "label": "torchvision" if key == "torchvision" else "mnv3", **case.describe(),
                "batch": cfg.train_batch, "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "amp": exp.amp if use_amp else "off", "channels_last": exp.channels_last,
                "median_step_ms": stats["median_ms"], "p90_step_ms": stats["p90_ms"], "mean_step_ms": stats["mean_ms"],
                "n": stats["n"], "images_per_s": cfg.train_batch * 1000.0 / stats["median_ms"],
                "images_per_s_mean": cfg.train_batch * 1000.0 / stats["mean_ms"],
                "ratio_to_torchvision": tv_stats["median_ms"] / stats["median_ms"],
                "paired_ratio_median": pair["median"], "paired_ratio_ci95": pair["ci95"],
                "final_loss": float(counters[key]["loss"]),  # finite: the arithmetic stayed normal
                **({"profile_diff_vs_torchvision": profile} if key == "ours" and profile is not None else {}),
                "times_ms": times[key], "block_seconds": seconds, "load_average": [load_before, load_average()],
                "cpu_other_cores": meter.result["other_cores"], "cpu_steal_cores": meter.result["steal_cores"],
            }  # fmt: skip
            results.append(round_significant(row))
            lines.append((row["label"], format_ms(row["median_step_ms"]), format_ms(row["p90_step_ms"]),
                          f"{row['images_per_s']:.0f}", f"{row['ratio_to_torchvision']:.3f}"))  # fmt: skip
        log(f"[bench] training {case.name} ({case.in_channels}x{case.resolution}x{case.resolution}, "
            f"drop_first_strides {case.drop_first_strides}, batch {cfg.train_batch}, {device}): "
            f"{len(times['ours'])} rounds in {seconds:.1f} s; {busy_note(meter, log)}")  # fmt: skip
        log(console_table(lines))
    return {"results": results, "targets": training_targets(results),
            "step": "mnv3.step.train_step: prepare_batch (augmentation) + forward + label-smoothed cross-entropy + backward + SGD (Nesterov)"}  # fmt: skip


def training_targets(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training target, one row per setting: our images/s over torchvision's >= 1, with a
    verdict, whether the paired interval contains 1, and a note (the profile when it is missed)."""
    rows = []
    for r in results:
        if r["contender"] != "ours":
            continue
        limit = TARGETS["training_ratio_min"]
        value = r["ratio_to_torchvision"]
        met = value >= limit
        note = ci_note(r["paired_ratio_ci95"], limit)
        if not met and r.get("profile_diff_vs_torchvision"):
            note += "; " + profile_note(r["profile_diff_vs_torchvision"])
        rows.append({"target": "training: ours / torchvision images/s >= 1", "setting": r["setting"], "batch": r["batch"],
                     "device": r["device"], "value": value, "threshold": limit, "met": met,
                     "within_noise": within_noise(r["paired_ratio_ci95"], limit), "note": note})  # fmt: skip
        rows[-1]["verdict"] = target_verdict(rows[-1])
    return round_significant(rows)
