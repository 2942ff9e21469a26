"""The recipe fields for the search (EMA, Cutout, flip TTA, scaled lr): each changes what it claims."""
from __future__ import annotations

import pytest
import torch

from mnv3.checkpoint import load_checkpoint, load_run
from mnv3.augment import cutout, prepare_batch
from mnv3.data import dataset_info
from mnv3.experiments import get_experiment
from mnv3.model import build_model
from mnv3.torchvision_compat import randomize_weights_
from mnv3.ema import make_ema
from mnv3.step import lr_schedule, make_optimizer, peak_lr, warmup_steps
from mnv3.train import evaluate, main


def test_scaled_lr_follows_the_batch_by_its_square_root_and_warms_up_as_long():
    assert peak_lr(get_experiment("mnist_small", "quick", lr=0.1)) == 0.1
    assert peak_lr(get_experiment("mnist_small", "quick", lr=0.1, batch_size=512, lr_reference_batch=128)) == pytest.approx(0.2)
    # The sweep's candidate: 45,000 CIFAR-10 training images at 1024 are 43 steps an epoch. Linear
    # scaling reached 1.6 after 43 warm-up steps; now 0.8, after the reference batch's 172 steps.
    exp = get_experiment("cifar10_small_s1", "full", batch_size=1024, lr_reference_batch=256)
    assert peak_lr(exp) == pytest.approx(0.8) and warmup_steps(exp, 43) == 172
    assert warmup_steps(get_experiment("cifar10_small_s1", "full"), 175) == 175  # unchanged without a reference batch
    model = build_model("small", num_classes=10, in_channels=1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(make_optimizer(model, exp), lr_schedule(43 * 30, warmup_steps(exp, 43)))
    lrs = []
    for _ in range(200):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    assert max(lrs) == pytest.approx(0.8) and lrs.index(max(lrs)) == 171 and lrs[42] == pytest.approx(0.8 * 43 / 172)


def test_update_ema_averages_weights_and_batchnorm_statistics(one_thread):
    torch.manual_seed(0)
    model = build_model("small", num_classes=10, in_channels=1)
    ema = make_ema(model, get_experiment("mnist_small", "quick", ema_decay=0.9))
    start = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for v in model.state_dict().values():
            v.add_(1) if v.is_floating_point() else v.fill_(7)
    ema.update()
    for key, value in ema.state_dict().items():
        new = model.state_dict()[key]
        expected = 0.9 * start[key] + 0.1 * new if value.is_floating_point() else new
        assert torch.allclose(value, expected, atol=1e-6), key
    assert make_ema(model, get_experiment("mnist_small", "quick")) is None


def test_ema_update_is_two_fused_launches_over_lists_built_once(one_thread, monkeypatch):
    model = build_model("small", num_classes=10, in_channels=1)
    ema = make_ema(model, get_experiment("mnist_small", "quick", ema_decay=0.5))
    launches = []
    for name in ("_foreach_lerp_", "_foreach_copy_"):
        original = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _o=original, _n=name, **k: (launches.append(_n), _o(*a, **k))[1])
    monkeypatch.setattr(torch.nn.Module, "state_dict", lambda *a, **k: pytest.fail("update() rebuilt a state dict"))
    for step in range(2):  # the lists stay bound to the live tensors: a second change is averaged in too
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        before = [p.clone() for p in ema.module.parameters()]
        ema.update()
        assert all(torch.allclose(e, 0.5 * b + 0.5 * m, atol=1e-6) for e, b, m in zip(ema.module.parameters(), before, model.parameters()))
    assert launches == ["_foreach_lerp_", "_foreach_copy_"] * 2


def test_cutout_zeroes_one_square_per_image_at_varying_places():
    x = torch.ones(64, 3, 32, 32)
    out = cutout(x, 16, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(1).flatten(1).sum(1)  # zeroed pixels per image, every channel
    assert (zeros > 0).all() and (zeros <= 256).all() and (zeros == 256).any()
    assert len({tuple(torch.nonzero((out[i] == 0).all(0))[0].tolist()) for i in range(64)}) > 10
    assert torch.equal(cutout(x, 0), x) and torch.equal(x, torch.ones_like(x))


def test_flip_tta_averages_the_two_views(one_thread):
    torch.manual_seed(0)
    info = dataset_info("synthetic")
    model = build_model("small", num_classes=10, in_channels=1)
    randomize_weights_(model, seed=0)  # a fresh model's logits are near uniform: both views would agree
    model.eval()
    images = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (32,))
    no_autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    args = (images, labels, info, 28, 16, torch.device("cpu"), False, no_autocast)
    loss, acc = evaluate(model, *args, tta_flip=True)
    x = prepare_batch(images, info, train=False, image_size=28)
    with torch.no_grad():
        probs = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert loss == pytest.approx(torch.nn.functional.nll_loss(probs.log(), labels).item(), rel=1e-5)
    assert acc == pytest.approx((probs.argmax(1) == labels).float().mean().item())
    assert loss != pytest.approx(evaluate(model, *args)[0], rel=1e-6)


def test_ema_run_keeps_and_evaluates_the_average(tmp_path, one_thread):
    run_dir = main(["--experiment", "mnist_small", "--name", "ema", "--out", str(tmp_path), "--dataset", "synthetic",
                    "--max-train-samples", "256", "--batch-size", "64", "--epochs", "2", "--ema-decay", "0.9",
                    "--cutout", "8", "--auto-augment", "trivialaugment", "--threads", "1"])  # fmt: skip
    best = load_checkpoint(run_dir / "best.pt")
    assert any(not torch.equal(best["ema"][k], best["model"][k]) for k in best["model"] if best["model"][k].is_floating_point())
    model, _ = load_run(run_dir)
    for key, value in model.state_dict().items():
        assert torch.equal(value, best["ema"][key].float() if value.is_floating_point() else best["ema"][key]), key


def test_auto_augment_draws_apart_per_group_and_is_seeded():
    from mnv3.augment import auto_augment

    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    assert auto_augment(x, "none") is x
    torch.manual_seed(1)
    a = auto_augment(x, "trivialaugment")
    torch.manual_seed(1)
    b = auto_augment(x, "trivialaugment")
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == torch.uint8
    changed = [(a[i * 8:(i + 1) * 8] != x[i * 8:(i + 1) * 8]).float().mean().item() for i in range(8)]
    assert len({round(c, 4) for c in changed}) > 1  # the eight groups drew different operations


def test_choice_fields_are_checked_up_front():
    with pytest.raises(ValueError, match="--auto-augment 'autoaugmnet' is not one of: none, trivialaugment"):
        get_experiment("cifar10_small_s1", "full", auto_augment="autoaugmnet")
    with pytest.raises(ValueError, match="--amp 'bf32'"):
        get_experiment("cifar10_small_s1", "full", amp="bf32")


def test_the_sweep_table_notes_auto_augments_host_waits_and_validation_only_runs(tmp_path, one_thread):
    from mnv3.runs import AUTO_AUGMENT_NOTE, ablation_rows, ablation_table

    for name, extra in (("plain", []), ("aa", ["--auto-augment", "trivialaugment"])):
        main(["--experiment", "mnist_small", "--name", name, "--out", str(tmp_path), "--dataset", "synthetic", "--max-train-samples", "64",
              "--batch-size", "32", "--epochs", "1", "--threads", "1", "--skip-test", *extra])  # fmt: skip
    assert not list(tmp_path.rglob("test.json"))
    rows = ablation_rows(tmp_path / "quick")
    assert {r["state"] for r in rows} == {"validation only (all 1 epochs trained; --skip-test, the test set not read)"}
    table = ablation_table(rows)
    aa_line = next(line for line in table.splitlines() if line.startswith("| aa |"))
    plain_line = next(line for line in table.splitlines() if line.startswith("| plain |"))
    assert " (a) |" in aa_line and "(a)" not in plain_line and table.endswith("(a) " + AUTO_AUGMENT_NOTE)
