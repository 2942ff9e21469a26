"""Publishing a run into the committable form that the full-profile reports read."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from damage import DAMAGES, damaged_copy

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


# ----------------------------------------------------------------------------- whole or not at all


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def stopped_copy(run, dest):
    """The same run as a time limit leaves it: config.json and metrics.csv, no test.json, no weights."""
    dest.mkdir(parents=True)
    for name in ("config.json", "metrics.csv"):
        shutil.copy(run / name, dest / name)
    return dest


def test_unfinished_publish_over_a_finished_run_is_refused_or_replaces_it_whole(trained_run, tmp_path, capsys):
    # Case 1 of issue 22: the old test.json and weights stayed beside the new config, and the
    # folder read as a finished run with another run's weights.
    dest = tmp_path / "published"
    publish_run(trained_run, dest / "mnist_small")
    before = files_of(dest)
    stopped = stopped_copy(trained_run, tmp_path / "stopped" / "mnist_small")
    with pytest.raises(SystemExit) as refused:
        main(["--unfinished", str(stopped), str(dest)])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "already holds a run" in err and "--replace" in err and "Traceback" not in err
    assert files_of(dest) == before  # nothing of the old run changed
    main(["--unfinished", "--replace", str(stopped), str(dest)])
    assert sorted(files_of(dest)) == ["mnist_small/config.json", "mnist_small/metrics.csv"]
    with pytest.raises(CheckpointError, match="no weights"):
        load_run(dest / "mnist_small")
    assert [p.name for p in dest.iterdir()] == ["mnist_small"]  # no staging folder left


def test_replace_takes_the_whole_old_run_away(trained_run, tmp_path):
    # Case 2: another run's train.log and export/ stayed beside the newly published one.
    dest = tmp_path / "mnist_small"
    dest.mkdir()
    (dest / "config.json").write_text("{}")
    (dest / "train.log").write_text("the other run's log")
    (dest / "export").mkdir()
    (dest / "export" / "model.pte").write_bytes(b"the other run's program")
    with pytest.raises(CheckpointError, match="already holds a run"):
        publish_run(trained_run, dest)
    assert (dest / "train.log").read_text() == "the other run's log"
    publish_run(trained_run, dest, replace=True)
    assert {p.name for p in dest.iterdir()} == {"config.json", "metrics.csv", "test.json", "final.safetensors", "final.json"}
    # --replace never deletes a folder that is not a run, nor publishes a run into itself
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a run folder"):
        publish_run(trained_run, tmp_path / "notes", replace=True)
    with pytest.raises(CheckpointError, match="the run folder itself"):
        publish_run(dest, dest, replace=True)
    assert (tmp_path / "notes" / "mine.txt").read_text() == "mine" and (dest / "final.safetensors").is_file()


def test_a_folder_that_is_not_a_run_gets_one_consistent_message(trained_run, tmp_path):
    # The probe: without --replace the message said "pass --replace", with it "--replace will not delete it".
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")
    messages = []
    for replace in (False, True):
        with pytest.raises(CheckpointError) as refused:
            publish_run(trained_run, tmp_path / "notes", replace=replace)
        messages.append(str(refused.value))
    assert messages[0] == messages[1] and "not a run folder" in messages[0] and "move it or choose another DEST" in messages[0]
    assert "pass --replace" not in messages[0] and (tmp_path / "notes" / "mine.txt").read_text() == "mine"


@pytest.mark.parametrize("name", DAMAGES)
def test_bad_records_are_refused_before_anything_is_published(trained_run, tmp_path, capsys, name):
    damage, words = DAMAGES[name]
    run = damaged_copy(trained_run, tmp_path / "damaged", **damage)
    with pytest.raises(SystemExit) as refused:
        main([str(run), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and words in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "out" / "damaged").exists()


def test_published_weights_with_an_injected_ema_are_refused(trained_run, tmp_path, capsys):
    dest = publish_run(trained_run, tmp_path / "pub" / "mnist_small")
    meta = json.loads((dest / "final.json").read_text())
    (dest / "final.json").write_text(json.dumps({**meta, "ema": {"classifier.3.weight": [0.0]}}))
    with pytest.raises(SystemExit):
        main([str(dest), str(tmp_path / "again")])
    assert "final.json: field 'ema' is not allowed here" in capsys.readouterr().err


def test_a_read_only_destination_is_one_line(trained_run, read_only_dir, capsys):
    with pytest.raises(SystemExit) as refused:
        main([str(trained_run), str(read_only_dir)])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.startswith(f"error: {read_only_dir}") and "Traceback" not in err, err
