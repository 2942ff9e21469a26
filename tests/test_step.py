"""The one training step: what the loop and both benchmarks run, and that it never waits for the host."""
from __future__ import annotations

import json

import pytest
import torch

from mnv3 import step as step_module
from mnv3.bench.gpu import PLANS, run as run_gpu_bench
from mnv3.data import dataset_info
from mnv3.experiments import get_experiment
from mnv3.model import build_model
from mnv3.step import make_optimizer, train_step


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = step_module.train_step

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(step_module, "train_step", counted)
    return calls


def test_gpu_benchmark_times_train_step_and_writes_its_json(monkeypatch, tmp_path, one_thread):
    calls = _counting(monkeypatch)
    path = run_gpu_bench(PLANS["tiny"], torch.device("cpu"), tmp_path, steps=2, warmup=1, log=lambda _: None)
    data = json.loads(path.read_text())
    assert len(calls) == len(PLANS["tiny"]) * 3
    assert [r["model"] for r in data["results"]] == [m.model for m in PLANS["tiny"]]
    assert all(r["images_per_s"] > 0 and r["final_loss"] == r["final_loss"] for r in data["results"])
    assert {tuple(r["setting"]) for r in data["ratios"]} == {("mnist_small", "eager", "nchw", 8), ("mnist_small", "eager", "channels_last", 8)}


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: only there can a step wait for the host")
def test_steady_state_steps_never_wait_for_the_host():
    device = torch.device("cuda")
    exp = get_experiment("cifar10_small_s1", "full", compile=False)
    info = dataset_info("cifar10")
    model = build_model("small", num_classes=10, in_channels=3, drop_first_strides=2).to(device).to(memory_format=torch.channels_last)
    optimizer, scaler = make_optimizer(model, exp), torch.amp.GradScaler("cuda", enabled=False)
    images = torch.randint(0, 256, (1024, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (1024,), device=device)
    batches = torch.randperm(1024).view(4, 256).to(device)  # as the loop: the epoch's order, copied once

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16)

    bad_step, counter = torch.tensor(-1, device=device), torch.tensor(0, device=device)
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)

    def loop_body(step: int):  # the loop's per-step work, as mnv3.train does it
        nonlocal bad_step, loss_sum, correct
        idx = batches[step % 4]
        y = labels[idx]
        loss, logits = train_step(model, optimizer, scaler, images[idx], y, info, exp, image_size=32, autocast=autocast)
        bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), counter, bad_step)
        counter.add_(1)
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()

    for step in range(3):  # warm-up: cuDNN picks its algorithms, the caching allocator fills
        loop_body(step)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(3, 10):
            loop_body(step)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert bad_step.item() == -1
