"""The one training step: what the loop and both benchmarks run, and that it never waits for the host."""
from __future__ import annotations

import json
import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mnv3 import step as step_module
from mnv3.bench.gpu import PLANS, CudagraphSkips, run as run_gpu_bench
from mnv3.checkpoint import load_checkpoint
from mnv3.data import dataset_info, load_split, train_val_split
from mnv3.experiments import get_experiment
from mnv3.model import build_model
from mnv3.step import EpochMetrics, epoch_batches, make_optimizer, make_trainer, run_step, train_step
from mnv3.train import SPLIT_SEED, main


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = step_module.train_step

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(step_module, "train_step", counted)
    return calls


def test_gpu_benchmark_times_the_loops_step_and_writes_its_json(monkeypatch, tmp_path, one_thread):
    calls = _counting(monkeypatch)
    resets = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: resets.append(1))
    path = run_gpu_bench(PLANS["tiny"], torch.device("cpu"), tmp_path, steps=2, warmup=1, log=lambda _: None)
    data = json.loads(path.read_text())
    assert len(calls) == len(PLANS["tiny"]) * 3
    assert len(resets) == len(PLANS["tiny"])  # compile state reset before every row
    assert [r["model"] for r in data["results"]] == [m.model for m in PLANS["tiny"]]
    assert all(r["images_per_s"] > 0 and r["mean_loss"] == r["mean_loss"] and r["cudagraph_skips"] == 0 for r in data["results"])
    assert {tuple(r["setting"]) for r in data["ratios"]} == {("mnist_small", "eager", "nchw", 8), ("mnist_small", "eager", "channels_last", 8)}


def test_gpu_benchmark_times_the_target_rows_first_and_stops_starting_rows_at_its_budget(tmp_path):
    first = [(m.experiment, m.model, m.mode, m.layout, m.batch) for m in PLANS["full"][:2]]
    assert first == [("cifar10_small_s1", "ours", "compiled", "nchw", 256), ("cifar10_small_s1", "ours", "graphed", "nchw", 256)]
    assert len(PLANS["full"]) <= 10  # what decides a default, not a grid
    path = run_gpu_bench(PLANS["tiny"], torch.device("cpu"), tmp_path, steps=1, warmup=1, budget_seconds=0, log=lambda _: None)
    assert all("skipped" in r and "images_per_s" not in r for r in json.loads(path.read_text())["results"])


def test_cudagraph_skips_are_counted_with_inductors_own_counter_and_reasons():
    from torch._inductor.cudagraph_utils import log_cudagraph_skip_and_bump_counter

    with CudagraphSkips() as skips:
        log_cudagraph_skip_and_bump_counter("skipping cudagraphs due to mutated inputs (1 instances)")
    assert skips.count == 1 and skips.reasons == ["skipping cudagraphs due to mutated inputs (1 instances)"]
    logging.getLogger("torch._inductor.cudagraph_utils.__cudagraphs").warning("after the block")
    assert skips.reasons == ["skipping cudagraphs due to mutated inputs (1 instances)"]


def test_cpu_benchmark_times_train_step(monkeypatch, tmp_path, one_thread):
    bench = pytest.importorskip("mnv3.bench")
    calls = _counting(monkeypatch)
    cfg = bench.tiny_config(out=tmp_path, runs_dir=None, cache_dir=None)
    result = bench.run_training(cfg, log=lambda _: None)
    assert calls and {r["contender"] for r in result["results"]} == set(bench.TRAIN_CONTENDERS)


def test_train_step_learns_and_returns_device_tensors(one_thread):
    exp = get_experiment("mnist_small", "quick", channels_last=False)
    info = dataset_info("synthetic")
    torch.manual_seed(0)
    model = build_model("small", num_classes=info.num_classes, in_channels=info.in_channels).train()
    optimizer, scaler = make_optimizer(model, exp), torch.amp.GradScaler("cuda", enabled=False)
    images = torch.randint(0, 256, (16, info.in_channels, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, info.num_classes, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    loss, logits = train_step(model, optimizer, scaler, images, labels, info, exp, image_size=28, autocast=lambda: torch.autocast("cpu", enabled=False))
    assert loss.dim() == 0 and not loss.requires_grad and logits.shape == (16, info.num_classes)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _loop(exp, device: torch.device, images: int):
    """The step as train() sets it up (make_trainer), on uint8 data of ``images`` images already on
    ``device``: (trainer, images, labels, the epoch's batches)."""
    info = dataset_info(exp.dataset)
    torch.manual_seed(0)
    model = build_model(exp.arch, num_classes=info.num_classes, in_channels=info.in_channels, width_mult=exp.width_mult,
                        dropout=exp.dropout, drop_first_strides=exp.drop_first_strides)  # fmt: skip
    steps = images // exp.batch_size
    trainer = make_trainer(model, exp, info, device, image_size=info.image_size, steps_per_epoch=steps)
    x = torch.randint(0, 256, (images, info.in_channels, info.image_size, info.image_size), dtype=torch.uint8, device=device)
    y = torch.randint(0, info.num_classes, (images,), device=device)
    return trainer, x, y, epoch_batches(trainer, images, 0, steps)


def test_the_sync_tests_loop_is_the_one_train_runs(tmp_path, one_thread):
    """make_trainer + run_step, as the sync tests below call them, end where train() ends, bit for bit."""
    flags = {"dataset": "synthetic", "max_train_samples": 64, "batch_size": 16, "epochs": 1, "ema_decay": 0.9, "cutout": 8}
    run_dir = main(["--experiment", "cifar10_small_s1", "--name", "r", "--out", str(tmp_path), "--threads", "1",
                    *[a for k, v in flags.items() for a in (f"--{k.replace('_', '-')}", str(v))]])  # fmt: skip
    exp = get_experiment("cifar10_small_s1", "quick", **flags)
    info = dataset_info("synthetic")
    images, labels = load_split("synthetic", "train")
    train_idx = train_val_split(len(images), exp.val_fraction, seed=SPLIT_SEED)[0][:64]
    torch.manual_seed(0)
    model = build_model(exp.arch, num_classes=10, in_channels=1, drop_first_strides=exp.drop_first_strides)
    trainer = make_trainer(model, exp, info, torch.device("cpu"), image_size=28, steps_per_epoch=4)
    batches, metrics = epoch_batches(trainer, 64, 0, 4), EpochMetrics(torch.device("cpu"))
    for step in range(4):
        run_step(trainer, images[train_idx], labels[train_idx], batches, 0, step, metrics)
    saved = load_checkpoint(run_dir / "last.pt")
    for part, state in (("model", trainer.model.state_dict()), ("ema", trainer.ema.state_dict())):
        assert all(torch.equal(value, saved[part][key]) for key, value in state.items()), part
    assert trainer.scheduler.last_epoch == 4 and metrics.seen == 64


class _HostWaits(TorchDispatchMode):
    """Records the ops that make a CUDA host wait for the device, so that the CPU can check the step
    for them: a read of a device value (.item(), bool(), int()), an op whose output size depends on
    device data (nonzero, masked_select, boolean indexing), and a tensor built from host data
    (torch.tensor(...), a pageable host-to-device copy on CUDA)."""

    WAITS = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.lift_fresh"}

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        boolean_index = name == "aten.index" and any(t is not None and t.dtype == torch.bool for t in args[1])
        if name in self.WAITS or boolean_index:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_the_loops_steady_steps_ask_nothing_of_the_host_on_the_cpu(channels_last, one_thread):
    """The CPU half of the sync test below: the same step, checked op by op for host waits."""
    exp = get_experiment("cifar10_small_s1", "full", channels_last=channels_last, compile=False, ema_decay=0.999, cutout=16, batch_size=16)
    trainer, images, labels, batches = _loop(exp, torch.device("cpu"), 64)
    metrics = EpochMetrics(trainer.device)
    run_step(trainer, images, labels, batches, 0, 0, metrics)  # warm-up: momentum buffers
    with _HostWaits() as waits:
        for step in range(1, 3):
            run_step(trainer, images, labels, batches, 0, step, metrics)
    assert waits.ops == []
    with _HostWaits() as waits:  # the check sees what it looks for: reading the metrics is a wait
        metrics.read()
    assert waits.ops.count("aten._local_scalar_dense") == 3


def test_auto_augment_builds_its_geometric_matrices_from_host_data(one_thread):
    """What the sweep table's note (a) says of the auto-augment candidates: torchvision's v2 ops
    build each affine matrix with torch.tensor(..., device=...), a host-to-device copy on CUDA."""
    from mnv3.augment import auto_augment

    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    with _HostWaits() as waits:
        for _ in range(4):
            auto_augment(images, "autoaugment")
    assert "aten.lift_fresh" in waits.ops


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: only there can a step wait for the host")
@pytest.mark.parametrize("channels_last, compile", [(False, False), (True, False), (False, True)], ids=["nchw", "channels_last", "compiled"])
def test_the_loops_steady_steps_never_wait_for_the_host(channels_last, compile):
    """train()'s step on CUDA (make_trainer, run_step: the per-step seed, augmentation with cutout,
    bf16 autocast, the scheduler, the EMA, the running metrics) under sync-debug "error"."""
    exp = get_experiment("cifar10_small_s1", "full", channels_last=channels_last, compile=compile, ema_decay=0.999, cutout=16)
    trainer, images, labels, batches = _loop(exp, torch.device("cuda"), 8 * exp.batch_size)
    metrics = EpochMetrics(trainer.device)
    for step in range(3):  # warm-up: compilation, cuDNN's choice of algorithms, the caching allocator
        run_step(trainer, images, labels, batches, 0, step, metrics)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(3, 8):
            run_step(trainer, images, labels, batches, 0, step, metrics)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert metrics.read()[0] == -1


def test_cuda_means_the_current_gpu_with_an_index(monkeypatch):
    # torch.cuda.set_device needs an index: "--device cuda" crashed train() before it got one.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert step_module.resolve_device("cuda") == torch.device("cuda", 1)
    assert step_module.resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)  # torchrun: the process's own GPU
    assert step_module.resolve_device(None) == torch.device("cuda", 0) and step_module.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\)"):
        step_module.resolve_device("cuda:2")
    with pytest.raises(ValueError, match="--device 'gpu' is not a device this trains on; use cpu, cuda or cuda:N"):
        step_module.resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cuda: CUDA is not available here"):
        step_module.resolve_device("cuda")
    assert step_module.resolve_device(None) == torch.device("cpu")


FLAGS = ["--experiment", "mnist_small", "--dataset", "synthetic", "--max-train-samples", "256", "--batch-size", "8", "--threads", "1"]


def test_validation_runs_the_eager_module_never_the_compiled_one(tmp_path, monkeypatch, one_thread):
    modes = []

    class Compiled(torch.nn.Module):  # stands in for torch.compile's wrapper: records the mode it runs in
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):
            modes.append("train" if self.module.training else "eval")
            return self.module(x)

    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: Compiled(module))
    main([*FLAGS, "--max-train-samples", "64", "--epochs", "2", "--compile", "true", "--out", str(tmp_path)])
    assert modes == ["train"] * 16  # two epochs of 8 steps, and no validation batch


@pytest.mark.parametrize("seconds, reads", [("3600", 2), ("0", 33)], ids=["no progress line due", "a line due every step"])
def test_the_running_metrics_are_read_only_when_a_progress_line_is_due(tmp_path, monkeypatch, one_thread, seconds, reads):
    calls = []
    original = EpochMetrics.read
    monkeypatch.setattr(EpochMetrics, "read", lambda self: (calls.append(1), original(self))[1])
    monkeypatch.setenv("MNV3_PROGRESS_SECONDS", seconds)
    main([*FLAGS, "--epochs", "1", "--out", str(tmp_path)])  # 32 steps; stdout is no terminal under pytest: no bar
    assert len(calls) == reads  # the epoch's last step and its end, plus one per progress line
