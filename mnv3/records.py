"""What a run folder or an export folder records, read back and checked at the boundary.

One reader for the files that training, publishing and export write and every later command reads:

==============  ===========================================  =====================================
file            written by                                   read by
==============  ===========================================  =====================================
config.json     ``mnv3.train`` (:func:`mnv3.runs.run_record`)  everything that loads or shows a run
metrics.csv     ``mnv3.train``                               the reports, ``python -m mnv3.runs``
test.json       ``mnv3.train``, last                         the reports, publish, export
final.json      ``mnv3.publish`` (beside final.safetensors)  :func:`mnv3.checkpoint.load_weights`
model.json      ``mnv3.export``                              android-assets, notebook 06
parity.json     ``mnv3.export``, last                        notebook 06
==============  ===========================================  =====================================

:func:`read_record` reads one of them and checks every field mnv3 reads from it: its type and its
bounds, and for weights (:func:`check_state_dict`) each tensor's dtype and shape against the model.
Anything else raises :class:`RecordError`, one line naming the file, the field, the value found
and what is allowed, in the style of :mod:`mnv3.spec`. A file may carry fields that this version
does not read (written by a newer mnv3): they are kept. A model config may not: an unknown key
there would describe another network, so it is refused.

The rules are data (:class:`Schema` and :class:`Rule`, one line per field) rather than a
validation library: pydantic and jsonschema are not installed on the GPU machine where
``python -m mnv3.publish`` runs, and the rules are few enough to read in one screen.

Bounds (the largest value mnv3 writes in brackets), the same as training's, so that every record
a training writes reads back: ``image_size`` 1 to :data:`~mnv3.experiments.MAX_IMAGE_SIZE` =
1024 px [224]; ``num_classes`` 1 to :data:`MAX_CLASSES` = 100,000 [100]; ``width_mult`` above 0
[1.0], and the model at most :data:`mnv3.spec.MAX_PARAMETERS` parameters; ``in_channels`` 1 or 3; ``num_batches_tracked`` 0 to :data:`MAX_BATCHES_TRACKED` = 10^12 [about
10^5]; a JSON record at most :data:`MAX_RECORD_BYTES` = 1 MiB [about 5 KB], metrics.csv at most
16 MiB [about 10 KB].
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .data import DATASETS
from .experiments import MAX_IMAGE_SIZE
from .spec import SpecError, check_size, show_value, spec_from_dict

__all__ = [
    "RecordError", "Rule", "Schema", "RECORDS", "read_record", "check_record", "check_model_config", "check_state_dict",
    "METRIC_FIELDS", "MAX_CLASSES", "MAX_BATCHES_TRACKED", "MAX_RECORD_BYTES", "FOLDER_PREFIX",
]  # fmt: skip

MAX_CLASSES = 100_000  # ImageNet-21k has 21,841 classes
MAX_BATCHES_TRACKED = 10**12  # BatchNorm's step counter: 10^12 steps is beyond any training
MAX_RECORD_BYTES = 2**20  # mnv3's JSON records are a few KB
MAX_METRICS_BYTES = 16 * 2**20  # one short line per epoch
FOLDER_PREFIX = "folder:"  # --dataset folder:PATH, an image folder of the user's own
# The record a training writes per epoch, in metrics.csv's column order.
METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_seconds", "images_per_sec"]


class RecordError(ValueError):
    """A record file that mnv3 cannot use; the message names the file, the field, the value and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """One field's rule: ``check(value)`` is True for an allowed value; ``allowed`` says which, for the message."""

    check: Callable[[Any], bool]
    allowed: str


@dataclass(frozen=True)
class Schema:
    """A JSON object's rules: ``fields`` maps each field to a Rule or a nested Schema. ``required``
    fields must be there; ``strict`` refuses fields not in ``fields``; ``forbidden`` names fields
    that must not be there, with the reason."""

    fields: Mapping[str, "Rule | Schema"]
    required: tuple[str, ...] = ()
    strict: bool = False
    forbidden: Mapping[str, str] = field(default_factory=dict)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(low: int, high: int | None = None) -> Rule:
    """An integer (not a bool) in [low, high]; ``high`` None: no upper end."""
    return Rule(lambda v: _is_int(v) and low <= v and (high is None or v <= high),
                f"an integer from {low:,} to {high:,}" if high is not None else f"an integer of at least {low:,}")


def number(low: float | None = None, high: float | None = None, *, above: bool = False, below: bool = False) -> Rule:
    """A finite number in [low, high]; ``above``/``below`` make that end open."""
    def ok(v: Any) -> bool:
        return (_is_number(v) and (low is None or (v > low if above else v >= low))
                and (high is None or (v < high if below else v <= high)))

    ends = (("(" if above or low is None else "[") + f"{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}"
            + (")" if below or high is None else "]"))
    return Rule(ok, f"a finite number in {ends}")


def one_of(*values: Any) -> Rule:
    """One of ``values``, of the same type (1 is not 1.0 nor true)."""
    return Rule(lambda v: any(v == x and type(v) is type(x) for x in values), f"one of {', '.join(map(repr, values))}")


def optional(rule: Rule) -> Rule:
    """null (None), or what ``rule`` allows."""
    return Rule(lambda v: v is None or rule.check(v), f"null or {rule.allowed}")


def list_of(rule: Rule, *, min_len: int = 0, max_len: int | None = None) -> Rule:
    """A JSON list of ``min_len`` to ``max_len`` items, each allowed by ``rule``."""
    count = f"{min_len} to {max_len}" if max_len is not None else f"at least {min_len}" if min_len else "any number of"
    return Rule(lambda v: isinstance(v, list) and min_len <= len(v) and (max_len is None or len(v) <= max_len)
                and all(rule.check(x) for x in v), f"a list of {count} items, each {rule.allowed}")


TEXT = Rule(lambda v: isinstance(v, str), "a string")
INTEGER = Rule(_is_int, "an integer")
NAME = Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
BOOL = Rule(lambda v: isinstance(v, bool), "true or false")
OBJECT = Rule(lambda v: isinstance(v, dict), "a JSON object")
# A file name inside the folder: no path, nothing hidden (a record never points outside its folder).
FILE_NAME = Rule(lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", v) is not None and ".." not in v,
                 "a plain file name (letters, digits, _ . + -; no folder)")
SHA256 = Rule(lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "64 lowercase hex digits")
FRACTION = number(0.0, 1.0)
DATASET = Rule(lambda v: isinstance(v, str) and (v in DATASETS or (v.startswith(FOLDER_PREFIX) and len(v) > len(FOLDER_PREFIX))),
               f"one of {', '.join(DATASETS)}, or {FOLDER_PREFIX}PATH (an image folder)")
IMAGE_SIZE = integer(1, MAX_IMAGE_SIZE)
CLASSES = Rule(lambda v: isinstance(v, list) and 1 <= len(v) <= MAX_CLASSES and all(NAME.check(c) for c in v) and len(set(v)) == len(v),
               f"a list of 1 to {MAX_CLASSES:,} distinct non-empty strings")

MODEL_CONFIG = Schema({
    "spec": OBJECT,  # checked row by row by mnv3.spec (check_model_config)
    "num_classes": integer(1, MAX_CLASSES),
    "in_channels": one_of(1, 3),
    "width_mult": number(0.0, above=True),  # and the parameter count within mnv3.spec's bound
    "dropout": number(0.0, 1.0, below=True),
    "drop_first_strides": integer(0, 64),  # and at most the spec's stride-2 layers (check_model_config)
}, required=("spec", "num_classes", "in_channels", "width_mult", "dropout", "drop_first_strides"), strict=True)  # fmt: skip

# The dataset a run trained on, for an image folder (--dataset folder:PATH): classes in label order,
# channels, and the per-channel mean and std of pixel/255 over the training split.
DATASET_INFO = Schema({
    "name": NAME, "classes": CLASSES, "num_classes": integer(1, MAX_CLASSES), "in_channels": one_of(1, 3),
    "image_size": IMAGE_SIZE, "mean": list_of(FRACTION, min_len=1, max_len=3), "std": list_of(number(0.0, 1.0, above=True), min_len=1, max_len=3),
}, required=("name", "classes", "in_channels", "image_size", "mean", "std"))  # fmt: skip

CONFIG = Schema({
    "dataset": DATASET, "image_size": IMAGE_SIZE, "model": MODEL_CONFIG, "dataset_info": DATASET_INFO,
    "fields": Schema({"epochs": integer(1), "arch": NAME, "width_mult": number(0.0, above=True)}),
    "experiment": NAME, "name": NAME, "profile": NAME, "seed": INTEGER, "split_seed": INTEGER,
    "train_samples": integer(0), "val_samples": integer(0), "world_size": integer(1), "device": TEXT,
    "data_root": optional(TEXT), "data_mirror": optional(TEXT), "command": TEXT, "overrides": OBJECT,
    "git_commit": optional(TEXT), "versions": OBJECT, "machine": OBJECT,
}, required=("dataset", "image_size", "model"))  # fmt: skip

TEST = Schema({
    "test_accuracy": FRACTION, "test_loss": optional(number(0.0)), "best_epoch": integer(0), "best_val_acc": optional(FRACTION),
    "epochs": integer(1), "train_seconds": number(0.0), "parameters": integer(0), "device": TEXT, "checkpoint": TEXT,
    "experiment": NAME, "name": NAME, "profile": NAME,
}, required=("test_accuracy",))  # fmt: skip

WEIGHTS = Schema({
    "format": one_of("mnv3-weights"), "weights": FILE_NAME, "model_config": MODEL_CONFIG, "epoch": optional(integer(0)),
    "dtype": one_of("float32", "bfloat16", "float16"),
}, required=("format", "model_config"),
   forbidden={"model": "the weights are in the .safetensors file", "ema": "the weights are in the .safetensors file"})  # fmt: skip

MANIFEST = Schema({
    "format": one_of("mnv3-mobile"), "version": one_of(1), "dataset": NAME, "labels": CLASSES,
    "input": Schema({"shape": Rule(lambda v: isinstance(v, list) and len(v) == 4 and v[0] == 1 and v[1] in (1, 3)
                                   and all(_is_int(s) and 1 <= s <= MAX_IMAGE_SIZE for s in v),
                                   f"[1, C, H, W] with C 1 or 3 and H, W from 1 to {MAX_IMAGE_SIZE}"),
                     "channel_order": one_of("gray", "RGB")}, required=("shape", "channel_order")),
    "files": Rule(lambda v: isinstance(v, dict) and all(FILE_NAME.check(n) for n in v.values()), "a JSON object of plain file names"),
    "sha256": Rule(lambda v: isinstance(v, dict) and all(FILE_NAME.check(k) and SHA256.check(d) for k, d in v.items()),
                   "a JSON object from plain file names to sha256 digests"),
    "test_accuracy": optional(FRACTION), "executorch_version": optional(TEXT),
    "source_run": Schema({"checkpoint": optional(TEXT), "checkpoint_sha256": optional(SHA256), "run_dir": TEXT}),
}, required=("format", "version", "dataset", "labels", "input", "files"))  # fmt: skip

PARITY_ROW = Schema({
    "artefact": NAME, "file": optional(FILE_NAME), "size_bytes": optional(integer(0)), "max_abs_logit_diff": optional(number(0.0)),
    "top1_agreement": FRACTION, "test_accuracy": FRACTION, "latency_ms_median": optional(number(0.0)),
    "latency_ms_p10": optional(number(0.0)), "latency_ms_p90": optional(number(0.0)), "evaluated_with": TEXT,
}, required=("artefact", "top1_agreement", "test_accuracy"))  # fmt: skip

PARITY = Schema({
    "dataset": NAME, "experiment": optional(TEXT), "parity_samples": integer(1), "test_images": integer(1), "latency_runs": integer(0),
    "rows": Rule(lambda v: isinstance(v, list) and len(v) >= 1, "a non-empty list of rows"),  # each row: PARITY_ROW
    "failures": list_of(TEXT), "threads": OBJECT, "delegation": OBJECT,
    "int8": Schema({"accuracy_drop_points": number(), "max_drop_points": number(0.0), "within_budget": BOOL}),
}, required=("dataset", "parity_samples", "test_images", "rows"))  # fmt: skip

# Each file name and how it is checked: a JSON schema, or metrics.csv's own reader.
RECORDS: dict[str, Schema] = {"config.json": CONFIG, "test.json": TEST, "final.json": WEIGHTS, "model.json": MANIFEST, "parity.json": PARITY}
KINDS = {"config": "config.json", "test": "test.json", "weights": "final.json", "manifest": "model.json", "parity": "parity.json",
         "metrics": "metrics.csv"}  # fmt: skip


def _check(value: Any, schema: Schema, source: str, where: str) -> None:
    if not isinstance(value, dict):
        raise RecordError(f"{source}: {f'field {where!r}' if where else 'the top level'} is {show_value(value)}; "
                          f"allowed: a JSON object with {', '.join(map(repr, schema.required or tuple(schema.fields)))}.")
    for key in schema.required:
        if key not in value:
            raise RecordError(f"{source}: missing field {'.'.join(filter(None, (where, key)))!r}; it was not written by mnv3, "
                              "or it is damaged.")
    for key, reason in schema.forbidden.items():
        if key in value:
            raise RecordError(f"{source}: field {'.'.join(filter(None, (where, key)))!r} is not allowed here ({reason}).")
    if schema.strict:
        for key in value:
            if key not in schema.fields:
                raise RecordError(f"{source}: unknown field {'.'.join(filter(None, (where, str(key))))!r:.100}; allowed fields "
                                  f"are {list(schema.fields)}.")
    for key, rule in schema.fields.items():
        if key not in value:
            continue
        path = ".".join(filter(None, (where, key)))
        if isinstance(rule, Schema):
            _check(value[key], rule, source, path)
        elif not rule.check(value[key]):
            raise RecordError(f"{source}: field {path!r} is {show_value(value[key])}; allowed: {rule.allowed}.")


def check_model_config(config: Any, source: str, where: str = "model") -> dict[str, Any]:
    """``config`` (a ``model.config`` as stored in records and checkpoints) checked field by field,
    the spec row by row (:func:`mnv3.spec.spec_from_dict`), drop_first_strides against the spec's
    stride-2 layers and the parameter count against mnv3.spec's bound. Returns it; RecordError
    names ``source``, the field and the value."""
    _check(config, MODEL_CONFIG, source, where)
    try:
        spec = spec_from_dict(config["spec"], source=f"{source}: field {where + '.spec'!r}")
        check_size(spec, num_classes=config["num_classes"], in_channels=config["in_channels"], width_mult=config["width_mult"])
    except SpecError as err:
        raise RecordError(str(err)) from None
    stride2 = sum(s == 2 for s in [spec.stem.stride, *(b.stride for b in spec.blocks)])
    if config["drop_first_strides"] > stride2:
        raise RecordError(f"{source}: field {where + '.drop_first_strides'!r} is {config['drop_first_strides']}; allowed: "
                          f"0 to {stride2} (the stride-2 layers of {spec.name}).")
    return config


def _check_config(config: dict[str, Any], source: str) -> None:
    """config.json beyond single fields: the model, and the dataset the model was built for."""
    check_model_config(config["model"], source)
    info = config.get("dataset_info")
    if config["dataset"].startswith(FOLDER_PREFIX) and info is None:
        raise RecordError(f"{source}: field 'dataset' is {show_value(config['dataset'])} but there is no 'dataset_info' "
                          "(the image folder's classes, channels, mean and std); the record is incomplete.")
    if info is not None:
        channels, classes = info["in_channels"], len(info["classes"])
        for key in ("mean", "std"):
            if len(info[key]) != channels:
                raise RecordError(f"{source}: field 'dataset_info.{key}' is {show_value(info[key])}; allowed: one value per "
                                  f"channel ({channels}).")
        if info.get("num_classes", classes) != classes:
            raise RecordError(f"{source}: field 'dataset_info.num_classes' is {info['num_classes']}, but "
                              f"'dataset_info.classes' names {classes} classes.")
    else:
        channels, classes = DATASETS[config["dataset"]].in_channels, DATASETS[config["dataset"]].num_classes
    for key, expected in (("in_channels", channels), ("num_classes", classes)):
        if config["model"][key] != expected:
            raise RecordError(f"{source}: field 'model.{key}' is {config['model'][key]}, but the dataset "
                              f"{config['dataset']!r:.80} has {expected}; the model and the dataset do not belong together.")


def check_record(data: Any, kind: str, source: str) -> Any:
    """``data`` (the parsed content of a ``kind`` record: "config", "test", "weights", "manifest",
    "parity"; or a file name of :data:`KINDS`' values) checked; returns it, or raises RecordError."""
    name = KINDS.get(kind, kind)
    if name not in RECORDS:
        raise ValueError(f"unknown record kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    _check(data, RECORDS[name], source, "")
    if name == "config.json":
        _check_config(data, source)
    elif name == "final.json":
        check_model_config(data["model_config"], source, "model_config")
    elif name == "parity.json":
        for i, row in enumerate(data["rows"]):
            _check(row, PARITY_ROW, source, f"rows[{i}]")
    return data


def _read_text(path: Path, limit: int) -> str:
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO or device would block or never end
        raise RecordError(f"{path}: not a regular file, where a record file belongs.")
    try:
        size = path.stat().st_size
        if size > limit:
            raise RecordError(f"{path}: {size:,} bytes; allowed: up to {limit:,} (mnv3 writes a few KB here). "
                              "It is not a record mnv3 wrote.")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(f"{path}: not UTF-8 text (byte {err.start}); the file is damaged or not a record "
                          "mnv3 wrote.") from None
    except IsADirectoryError:
        raise RecordError(f"{path}: a folder, where a record file belongs.") from None
    except OSError as err:
        raise RecordError(f"{path}: cannot be read ({err.strerror or err}).") from None


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as rows (epoch an int, the rest finite floats), epochs 1, 2, ... in order."""
    text = _read_text(path, MAX_METRICS_BYTES)
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames
        rows = list(reader)
    except csv.Error as err:
        raise RecordError(f"{path}: not a CSV file ({err}).") from None
    if not header or sorted(header) != sorted(METRIC_FIELDS):
        raise RecordError(f"{path}: the header is {show_value(header)}; allowed: the columns {', '.join(METRIC_FIELDS)}.")
    bounds = {"train_acc": FRACTION, "val_acc": FRACTION, "lr": number(0.0), "train_loss": number(0.0),
              "val_loss": number(0.0), "epoch_seconds": number(0.0), "images_per_sec": number(0.0)}  # fmt: skip
    out = []
    for line, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise RecordError(f"{path}: line {line} does not hold one value per column; allowed: {len(METRIC_FIELDS)} "
                              f"values ({', '.join(METRIC_FIELDS)}).")
        parsed: dict[str, Any] = {}
        for key in METRIC_FIELDS:
            text_value = row[key].strip()
            try:
                parsed[key] = int(text_value) if key == "epoch" else float(text_value)
            except ValueError:
                parsed[key] = text_value
            rule = integer(len(out) + 1, len(out) + 1) if key == "epoch" else bounds[key]
            if not rule.check(parsed[key]):
                allowed = f"{len(out) + 1} (epochs are numbered 1, 2, ... in order)" if key == "epoch" else rule.allowed
                raise RecordError(f"{path}: line {line}, column {key!r} is {show_value(row[key])}; allowed: {allowed}.")
        out.append(parsed)
    return out


def read_record(path: str | Path, kind: str | None = None) -> Any:
    """Read and check one record file. ``kind`` ("config", "metrics", "test", "weights",
    "manifest", "parity") defaults to the one the file name says (``config.json``, ``metrics.csv``,
    ``test.json``, ``final.json``, ``model.json``, ``parity.json``).

    Returns the JSON content (a dict), or for metrics.csv a list of rows (dicts with the keys
    :data:`METRIC_FIELDS`: ``epoch`` an int from 1 in order, the rest finite floats). Raises
    RecordError, naming the file, for a file that is missing, unreadable, too large, not UTF-8,
    not valid JSON or CSV, or whose fields break the rules in this module's docstring.
    """
    path = Path(path)
    name = KINDS.get(kind, kind) if kind else path.name
    if name not in RECORDS and name != "metrics.csv":
        raise ValueError(f"{path}: no rule for a record named {name!r}; pass kind= one of {', '.join(KINDS)}")
    if not path.exists():
        raise RecordError(f"{path}: no such file.")
    if name == "metrics.csv":
        return _read_metrics(path)
    text = _read_text(path, MAX_RECORD_BYTES)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}).") from None
    except RecursionError:
        raise RecordError(f"{path}: the JSON is nested too deeply to be a record mnv3 wrote.") from None
    return check_record(data, name, str(path))


def check_state_dict(state: Any, model: Any, source: str) -> None:
    """Refuse weights that do not belong in ``model`` (an ``nn.Module``) as they are, without casting.

    Every key of ``model.state_dict()`` must be in ``state`` and nothing else; each tensor must
    have the model's shape; where the model's tensor is floating point, the given one must be too
    (float32, bfloat16, float16 or float64: published weights are bf16); an integer buffer
    (BatchNorm's ``num_batches_tracked``) must be an int64 from 0 to :data:`MAX_BATCHES_TRACKED`.
    An int8 or bool tensor where a float belongs, or a float step counter, raises RecordError
    naming ``source``, the tensor and both dtypes, rather than being cast.
    """
    import torch

    floats = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise RecordError(f"{source}: the weights are not a mapping of names to tensors; the file was not written by mnv3.")
    expected = model.state_dict()
    missing, unexpected = [k for k in expected if k not in state], [k for k in state if k not in expected]
    if missing or unexpected:
        def names(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

        detail = "; ".join(([f"missing {names(missing)}"] if missing else []) + ([f"unexpected {names(unexpected)}"] if unexpected else []))
        raise RecordError(f"{source}: the weights do not fit the model its config describes ({detail}); the file is damaged or mixed up.")
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise RecordError(f"{source}: tensor {key!r} has shape {list(got.shape)}; allowed: {list(want.shape)} (the model's).")
        if want.is_floating_point():
            if got.dtype not in floats:
                raise RecordError(f"{source}: tensor {key!r} is {str(got.dtype).replace('torch.', '')}; allowed: a floating-point "
                                  "dtype (float32, bfloat16, float16 or float64). Not cast: the file is damaged or not mnv3's.")
        elif got.dtype != want.dtype or (got.numel() == 1 and not 0 <= int(got) <= MAX_BATCHES_TRACKED):
            value = str(got.dtype).replace("torch.", "") if got.dtype != want.dtype else f"{int(got):,}"
            raise RecordError(f"{source}: tensor {key!r} is {value}; allowed: {str(want.dtype).replace('torch.', '')}, from 0 to "
                              f"{MAX_BATCHES_TRACKED:,} (BatchNorm's step counter).")
