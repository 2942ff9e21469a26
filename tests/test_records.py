"""mnv3.records: every record a run or export folder holds is read through one reader, which refuses
a damaged or foreign file in one line naming the file, the field, the value and what is allowed."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

from mnv3.files import make_staging, os_error_line, remove_stale_staging, remove_stale_temporaries
from mnv3.model import build_model
from mnv3.records import RecordError, check_state_dict, read_record

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "reports" / "full" / "runs"
SMALL_CONFIG = json.loads((COMMITTED / "cifar10_small_s2" / "config.json").read_text())
TEST = json.loads((COMMITTED / "cifar10_small_s2" / "test.json").read_text())
WEIGHTS = json.loads((COMMITTED / "cifar10_small_s2" / "final.json").read_text())
MANIFEST = json.loads((COMMITTED / "cifar10_small_s2" / "export" / "model.json").read_text())
PARITY = json.loads((COMMITTED / "cifar10_small_s2" / "export" / "parity.json").read_text())
FOLDER_INFO = {"name": "my_photos", "classes": ["cat", "dog", "fox"], "in_channels": 3, "image_size": 64,
               "mean": [0.5, 0.45, 0.4], "std": [0.25, 0.25, 0.26], "root": "photos", "files": 300}  # fmt: skip


def test_every_committed_record_reads_back():
    files = [p for p in COMMITTED.rglob("*") if p.name in ("config.json", "metrics.csv", "test.json", "final.json", "model.json", "parity.json")]
    assert len(files) >= 14  # four runs' records, three exports
    for path in files:
        read_record(path)


def edited(record: dict, path: str, value) -> dict:
    """``record`` with the field at ``path`` ("model.num_classes", "rows.0.file") set, or deleted for ``...``."""
    record = copy.deepcopy(record)
    *parents, last = path.split(".")
    target = record
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return record


BAD = [
    # (file name, content, what the message must name)
    ("config.json", edited(SMALL_CONFIG, "model.num_classes", 0), ["'model.num_classes'", "0", "an integer from 1"]),
    ("config.json", edited(SMALL_CONFIG, "model.width_mult", -0.5), ["'model.width_mult'", "-0.5", "(0, inf)"]),
    ("config.json", edited(SMALL_CONFIG, "model.width_mult", 40.0), ["'model.spec'", "parameters", "over the limit"]),
    ("config.json", edited(SMALL_CONFIG, "model.width_mult", float("nan")), ["'model.width_mult'", "NaN", "finite"]),
    ("config.json", edited(SMALL_CONFIG, "model.depth", 3), ["unknown field 'model.depth'", "allowed fields"]),
    ("config.json", edited(SMALL_CONFIG, "model.spec", ...), ["missing field 'model.spec'"]),
    ("config.json", edited(SMALL_CONFIG, "model.spec.blocks.0.kernel", 4), ["'model.spec'", "blocks[0]", "'kernel' is 4", "odd"]),
    ("config.json", edited(SMALL_CONFIG, "model.drop_first_strides", 9), ["'model.drop_first_strides' is 9", "0 to 5"]),
    ("config.json", edited(SMALL_CONFIG, "model.in_channels", 1), ["'model.in_channels' is 1", "'cifar10' has 3"]),
    ("config.json", edited(SMALL_CONFIG, "dataset", "../../etc"), ["'dataset'", '"../../etc"', "folder:PATH"]),
    ("config.json", edited(SMALL_CONFIG, "image_size", 100000), ["'image_size'", "100000", "from 1 to 1,024"]),
    ("config.json", edited(SMALL_CONFIG, "fields.epochs", "60"), ["'fields.epochs'", '"60"']),
    ("config.json", edited(SMALL_CONFIG, "dataset", "folder:photos"), ["'dataset'", "no 'dataset_info'"]),
    ("config.json", {**SMALL_CONFIG, "dataset": "folder:photos", "dataset_info": {**FOLDER_INFO, "classes": ["cat", "cat", "dog"]}},
     ["'dataset_info.classes'", "distinct"]),
    ("config.json", {**SMALL_CONFIG, "dataset": "folder:photos", "dataset_info": {**FOLDER_INFO, "in_channels": 2}},
     ["'dataset_info.in_channels' is 2", "one of 1, 3"]),
    ("config.json", {**SMALL_CONFIG, "dataset": "folder:photos", "dataset_info": {**FOLDER_INFO, "std": [0.2, 0.0, 0.2]}},
     ["'dataset_info.std'", "(0, 1]"]),
    ("config.json", {**SMALL_CONFIG, "dataset": "folder:photos", "dataset_info": {**FOLDER_INFO, "mean": [0.5]}},
     ["'dataset_info.mean'", "one value per channel (3)"]),
    ("config.json", b"\x80\x04\x95binary\x00", ["not UTF-8"]),
    ("test.json", [], ["the top level is []", "test_accuracy"]),
    ("test.json", edited(TEST, "test_accuracy", "0.72"), ["'test_accuracy'", '"0.72"', "[0, 1]"]),
    ("test.json", edited(TEST, "test_accuracy", 1.5), ["'test_accuracy' is 1.5"]),
    ("test.json", "{not json", ["not valid JSON", "line 1"]),
    ("metrics.csv", "epoch,lr\n1,0.1\n", ["the header", "train_loss"]),
    ("metrics.csv", (COMMITTED / "mnist_small" / "metrics.csv").read_text() + "garbage,x\n", ["line 22", "one value per column"]),
    ("metrics.csv", (COMMITTED / "mnist_small" / "metrics.csv").read_text().replace("\n2,", "\n7,", 1), ["line 3", "'epoch'", "2 (epochs"]),
    ("metrics.csv", (COMMITTED / "mnist_small" / "metrics.csv").read_text().replace(",0.958,", ",high,", 1), ["'val_acc'", '"high"']),
    ("final.json", {**WEIGHTS, "ema": "x"}, ["'ema' is not allowed", "safetensors"]),
    ("final.json", edited(WEIGHTS, "model_config.num_classes", -1), ["'model_config.num_classes' is -1"]),
    ("final.json", edited(WEIGHTS, "format", "other"), ["'format'", "'mnv3-weights'"]),
    ("model.json", [], ["the top level is []"]),
    ("model.json", edited(MANIFEST, "input", None), ["'input' is null"]),
    ("model.json", edited(MANIFEST, "sha256", "deadbeef"), ["'sha256'", '"deadbeef"']),
    ("model.json", edited(MANIFEST, "files.pte_fp32", "../../etc/passwd"), ["'files'", "plain file name"]),
    ("model.json", edited(MANIFEST, "input.shape", [1, 3, 100000, 100000]), ["'input.shape'", "100000"]),
    ("parity.json", edited(PARITY, "rows", []), ["'rows' is []"]),
    ("parity.json", edited(PARITY, "rows.1.test_accuracy", None), ["'rows[1].test_accuracy' is null"]),
]


@pytest.mark.parametrize("name, content, expected", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_a_bad_record_is_one_line_naming_file_field_and_value(tmp_path, name, content, expected):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(RecordError) as caught:
        read_record(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    for part in expected:
        assert part in message, (part, message)


def test_forward_compatible_config_and_a_valid_image_folder_run(tmp_path):
    # Fields a later mnv3 may add are kept; an image-folder run is described by its dataset_info.
    config = {**SMALL_CONFIG, "a_later_field": {"x": 1}, "dataset": "folder:photos", "dataset_info": FOLDER_INFO}
    config["model"] = dict(config["model"], num_classes=3)
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert read_record(tmp_path / "config.json")["a_later_field"] == {"x": 1}
    for name in ("test.json", "metrics.csv"):
        with pytest.raises(RecordError, match="no such file"):
            read_record(tmp_path / name)


def test_weights_of_the_wrong_dtype_are_refused_not_cast():
    model = build_model("small", num_classes=10, in_channels=1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    check_state_dict({k: v.bfloat16() if v.is_floating_point() else v for k, v in state.items()}, model, "w")  # published form
    cases = {
        "classifier.3.weight": (state["classifier.3.weight"].to(torch.int8), "is int8; allowed: a floating-point dtype"),
        "features.0.0.weight": (state["features.0.0.weight"] > 0, "is bool; allowed: a floating-point dtype"),
        "features.0.1.num_batches_tracked": (torch.tensor(1.5e30), "is float32; allowed: int64"),
    }
    for key, (value, words) in cases.items():
        with pytest.raises(RecordError, match=f"w: tensor '{key}' {words}"):
            check_state_dict({**state, key: value}, model, "w")
    with pytest.raises(RecordError, match=r"is 10,000,000,000,000,000; allowed: int64, from 0 to 1,000,000,000,000"):
        check_state_dict({**state, "features.0.1.num_batches_tracked": torch.tensor(10**16)}, model, "w")
    with pytest.raises(RecordError, match=r"shape \[10, 1024\]; allowed: \[10, 1024\]|has shape"):
        check_state_dict({**state, "classifier.3.weight": torch.zeros(5, 1024)}, model, "w")
    with pytest.raises(RecordError, match="missing classifier.3.bias"):
        check_state_dict({k: v for k, v in state.items() if k != "classifier.3.bias"}, model, "w")


def test_os_errors_become_one_line_naming_the_path(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OSError) as caught:
        (blocker / "quick" / "x").mkdir(parents=True)
    line = os_error_line(caught.value)
    assert line.startswith(str(blocker)) and f"{blocker} is a file, not a folder" in line and "\n" not in line


def test_staging_of_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path):
    live = make_staging(tmp_path, "assets.staging")
    dead = tmp_path / ".assets.staging-999999999-abc"  # no such process
    dead.mkdir()
    other = tmp_path / ".assets.staging-notes"  # not a staging folder's name: not touched
    other.mkdir()
    assert remove_stale_staging(tmp_path, "assets.staging") == [dead]
    assert live.is_dir() and other.is_dir() and not dead.exists()
    assert oct(live.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_stale_temporaries_of_named_files_only(tmp_path):
    for name in (".model.onnx.abc123.tmp.onnx", ".mine.tmp", "model.onnx"):
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(tmp_path, ["model.onnx", "model.pte"]) == [tmp_path / ".model.onnx.abc123.tmp.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mine.tmp", "model.onnx"]


def test_the_original_project_is_named_rightly():
    """The original report is PyTorch with PyTorch Lightning, January 2022, never "Keras"."""
    from mnv3 import experiments

    for path in [*REPO.glob("mnv3/**/*.py"), REPO / "README.md", *REPO.glob("notebooks/*.ipynb")]:
        assert "keras" not in path.read_text(encoding="utf-8").lower(), path
    assert "PyTorch Lightning, January 2022" in Path(experiments.__file__).read_text()


def test_what_training_and_publishing_write_reads_back(trained_run, tmp_path):
    from mnv3.publish import publish_run

    for name in ("config.json", "metrics.csv", "test.json"):
        read_record(trained_run / name)
    published = publish_run(trained_run, tmp_path / "published")
    for name in ("config.json", "metrics.csv", "test.json", "final.json"):
        read_record(published / name)
