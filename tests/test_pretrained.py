"""--init SOURCE (mnv3.pretrained): torchvision state dicts round-trip, heads and stems are fitted, every
other mismatch is refused with both shapes; --freeze-features, --features-lr-mult; resume stays exact."""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from mnv3.step import features_lr_groups
from mnv3 import build_model, pretrained
from mnv3.checkpoint import CheckpointError, check_resume, load_checkpoint
from mnv3.pretrained import InitError, initialise_from


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tv_small(num_classes: int, seed: int = 1, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.mobilenet_v3_small(num_classes=num_classes, **kw).eval()


def ours(num_classes: int, in_channels: int = 3, width_mult: float = 1.0) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small", num_classes=num_classes, in_channels=in_channels, width_mult=width_mult).eval()


def test_a_torchvision_state_dict_round_trips_with_equal_outputs(tmp_path):
    tv = tv_small(10)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    model = ours(10)
    notes = initialise_from(model, str(tmp_path / "tv.pth"), log=None)
    assert notes == []
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), tv(x), atol=1e-5)


def test_the_head_is_reinitialised_when_the_classes_differ(tmp_path):
    tv = tv_small(7)
    torch.save(tv.state_dict(), tmp_path / "tv7.pth")
    model = ours(10)
    fresh = model.classifier[3].weight.detach().clone()
    lines: list[str] = []
    initialise_from(model, str(tmp_path / "tv7.pth"), log=lines.append)
    assert torch.equal(model.classifier[3].weight, fresh)  # this model's own initialisation, kept
    assert torch.equal(model.classifier[0].weight, tv.classifier[0].weight)  # every other layer loaded
    assert torch.equal(model.features[5].block[0][0].weight, tv.features[5].block[0][0].weight)
    assert "classifier.3 re-initialised: the source has 7 classes, this model 10" in lines[0]


def test_a_3_channel_stem_is_summed_for_1_channel_data_and_the_reverse_replicated(tmp_path):
    tv = tv_small(10)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    gray = ours(10, in_channels=1)
    notes = initialise_from(gray, str(tmp_path / "tv.pth"), log=None)
    assert any("summed over its 3 input channels" in n for n in notes)
    assert torch.allclose(gray.features[0][0].weight, tv.features[0][0].weight.sum(1, keepdim=True))
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():  # a gray image gives what the RGB model gives on its three equal planes
        assert torch.allclose(gray(x), tv(x.repeat(1, 3, 1, 1)), atol=1e-4)
    torch.save(gray.state_dict(), tmp_path / "gray.pth")
    rgb = ours(10, in_channels=3)
    notes = initialise_from(rgb, str(tmp_path / "gray.pth"), log=None)
    assert any("replicated to 3 input channels" in n for n in notes)
    with torch.no_grad():
        assert torch.allclose(rgb(x.repeat(1, 3, 1, 1)), gray(x), atol=1e-4)


def test_any_other_mismatch_is_refused_naming_the_layer_and_both_shapes(tmp_path):
    torch.save(tv_small(10, width_mult=0.75).state_dict(), tmp_path / "narrow.pth")
    with pytest.raises(InitError) as err:
        initialise_from(ours(10), str(tmp_path / "narrow.pth"), log=None)
    narrow, mine = tv_small(10, width_mult=0.75).state_dict(), ours(10).state_dict()
    key = next(k for k in mine if mine[k].shape != narrow[k].shape)  # the first layer that differs
    shape = lambda t: "[" + ", ".join(map(str, t.shape)) + "]"  # noqa: E731
    assert f"layer {key} has shape {shape(narrow[key])} in the source but {shape(mine[key])} in this model" in str(err.value)
    torch.save({"conv_stem.weight": torch.zeros(16, 3, 3, 3)}, tmp_path / "timm.pth")  # another key layout
    with pytest.raises(InitError, match=r"missing \d+: features.0.0.weight, .*extra 1: conv_stem.weight"):
        initialise_from(ours(10), str(tmp_path / "timm.pth"), log=None)


def test_sources_a_file_holding_code_a_missing_path_and_safetensors(tmp_path):
    torch.save({"w": torch.nn.ReLU()}, tmp_path / "module.pth")  # a pickled module: more than tensors
    with pytest.raises(InitError, match="refused"):
        initialise_from(ours(10), str(tmp_path / "module.pth"), log=None)
    with pytest.raises(InitError, match="no such file or folder"):
        initialise_from(ours(10), str(tmp_path / "absent.pth"), log=None)
    from safetensors.torch import save_file

    tv = tv_small(10)
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(tmp_path / "tv.safetensors"))
    model = ours(10)
    initialise_from(model, str(tmp_path / "tv.safetensors"), log=None)
    assert torch.equal(model.features[3].block[1][0].weight, tv.features[3].block[1][0].weight)


def test_torchvision_goes_through_its_weights_api_and_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    weights = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    target = tmp_path / "torch" / "hub" / "checkpoints" / Path(weights.url).name

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InitError) as err:
        initialise_from(ours(1000), "torchvision", log=None)
    assert weights.url in str(err.value) and str(target) in str(err.value)
    # The file put where the message says is what torchvision's API then reads (no download).
    tv = tv_small(1000)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tv.state_dict(), target)
    model = ours(10, in_channels=1)
    lines: list[str] = []
    initialise_from(model, "torchvision", log=lines.append)
    assert "MobileNet_V3_Small_Weights.IMAGENET1K_V1" in lines[0] and "1000 classes, this model 10" in lines[0]
    assert torch.allclose(model.features[0][0].weight, tv.features[0][0].weight.sum(1, keepdim=True))
    with pytest.raises(InitError, match="width 1.0"):
        initialise_from(ours(10, width_mult=0.5), "torchvision", log=None)


def test_freeze_features_trains_the_classifier_alone():
    model = ours(10).train()
    pretrained.freeze_features(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()  # what training calls each epoch: the features stay in eval mode
    assert not model.features.training and model.classifier.training
    loss = model(torch.rand(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("features."))  # weights and BN statistics
    assert not torch.equal(before["classifier.0.weight"], after["classifier.0.weight"])


def test_features_lr_groups_scale_the_features_only():
    model = ours(10)
    groups = features_lr_groups([{"params": list(model.parameters()), "weight_decay": 0.0}], model, 0.2, 0.1)
    features = {id(p) for p in model.features.parameters()}
    assert groups[0]["lr"] == 0.2 and not any(id(p) in features for p in groups[0]["params"])
    assert groups[1]["lr"] == pytest.approx(0.02) and all(id(p) in features for p in groups[1]["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


FAST = ["--experiment", "mnist_small", "--dataset", "synthetic", "--max-train-samples", "256", "--batch-size", "32",
        "--epochs", "2", "--threads", "1"]  # fmt: skip


def test_resume_stays_exact_with_init_freeze_and_features_lr(tmp_path, monkeypatch, capsys, interrupt_training_after):
    from mnv3.train import main

    source = main([*FAST, "--name", "source", "--out", str(tmp_path), "--data-root", str(tmp_path / "data"), "--epochs", "1"])
    args = [*FAST, "--out", str(tmp_path), "--data-root", str(tmp_path / "data"), "--init", str(source), "--features-lr-mult", "0.1",
            "--freeze-features", "--weight-decay", "0"]  # fmt: skip
    whole = main([*args, "--name", "whole"])
    assert "--init: weights from the run" in capsys.readouterr().out
    interrupt_training_after(5)
    with pytest.raises(SystemExit):
        main([*args, "--name", "cut"])
    monkeypatch.undo()
    os.rename(source, tmp_path / "source-moved")  # a resumed run never needs its --init source again
    cut = main([*args, "--name", "cut", "--resume"])
    a, b = load_checkpoint(whole / "last.pt")["model"], load_checkpoint(cut / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    frozen = load_checkpoint(tmp_path / "source-moved" / "last.pt")["model"]
    assert torch.equal(a["features.4.block.0.0.weight"], frozen["features.4.block.0.0.weight"])  # frozen: as loaded


def test_a_checkpoint_from_before_the_new_fields_still_resumes(tmp_path):
    import dataclasses

    from mnv3.experiments import get_experiment

    exp = get_experiment("mnist_small", "quick")
    old_fields = {k: v for k, v in dataclasses.asdict(exp).items() if k not in ("init", "freeze_features", "features_lr_mult", "skip_bad_images")}
    model = ours(10, in_channels=1)
    state = {"model_config": model.config, "experiment": old_fields, "launch": {"seed": 0}}
    check_resume(state, tmp_path / "last.pt", dataclasses.asdict(exp), {"seed": 0}, model.config)  # no difference
    with pytest.raises(CheckpointError, match="init '' -> 'x'"):
        check_resume(state, tmp_path / "last.pt", {**dataclasses.asdict(exp), "init": "x"}, {"seed": 0}, model.config)
