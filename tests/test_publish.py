"""Publishing a run into the committable form that the full-profile reports read."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from mnv3.checkpoint import CheckpointError, load_run, load_weights
from mnv3.publish import main, publish_run


def test_published_run_loads_with_half_precision_weights(trained_run, tmp_path):
    dest = publish_run(trained_run, tmp_path / "mnist_small")
    assert {p.name for p in dest.iterdir()} == {"config.json", "metrics.csv", "test.json", "final.safetensors", "final.json"}
    final = load_weights(dest / "final.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in final["model"].values() if v.is_floating_point())
    assert (dest / "final.safetensors").stat().st_size < 0.6 * (trained_run / "best.pt").stat().st_size
    published, _ = load_run(dest)  # "best" falls back to final.safetensors
    original, _ = load_run(trained_run)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(published(x).argmax(1), original(x).argmax(1))
        for (name, a), b in zip(published.state_dict().items(), original.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), rtol=1e-2, atol=1e-2), name


def test_published_config_carries_no_machine_path(trained_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    config.update(data_root=str(tmp_path / "data"), data_mirror="/srv/mirror", command=f"python -m mnv3.train --out {tmp_path}/runs")
    config["dataset_info"] = {**config["dataset_info"], "folder": {"path": str(tmp_path / "photos")}}  # an image folder's run
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    published = json.loads((publish_run(run, tmp_path / "out") / "config.json").read_text())
    assert published["data_root"] == "data" and not published["data_mirror"].startswith("/")
    assert published["command"] == "python -m mnv3.train --out runs"
    assert published["dataset_info"]["folder"]["path"] == "photos" and published["dataset_info"]["classes"] == config["dataset_info"]["classes"]


def test_unfinished_run_is_published_without_weights_when_asked(trained_run, tmp_path):
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    for name in ("config.json", "metrics.csv"):
        shutil.copy(trained_run / name, stopped / name)
    out = publish_run(stopped, tmp_path / "out", unfinished=True)
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.csv"}


def test_unfinished_run_is_refused(trained_run, tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((trained_run / "config.json").read_text())
    with pytest.raises(CheckpointError, match="not a finished run .*metrics.csv, test.json, best.pt"):
        publish_run(partial, tmp_path / "out")
    with pytest.raises(SystemExit) as stopped:
        main([str(partial), str(tmp_path / "out")])
    assert stopped.value.code == 2 and "not a finished run" in capsys.readouterr().err
