"""Spec files: the built-in ones load, a spec of your own builds, and every mistake gets a clear message.

Each bad spec must fail with a SpecError (a ValueError) whose message names the file, the row, the
field, what was found and what is allowed; never a bare KeyError or TypeError from deeper down.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidualConfig
from torchvision.models.mobilenetv3 import MobileNetV3 as TorchvisionMobileNetV3

from mnv3.model import build_model
from mnv3.spec import BUILTIN_SPECS, SpecError, load_spec, spec_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def small_dict() -> dict:
    return json.loads(BUILTIN_SPECS["small"].read_text(encoding="utf-8"))


def write(tmp_path: Path, data, name: str = "spec.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2), encoding="utf-8")
    return path


def spec_error(path: Path) -> str:
    """The message of the SpecError that both load_spec and build_model raise for ``path``."""
    with pytest.raises(SpecError) as load_err:
        load_spec(path)
    with pytest.raises(SpecError) as build_err:
        build_model(str(path))
    assert str(load_err.value) == str(build_err.value)
    message = str(load_err.value)
    assert str(path) in message, message  # names the file
    return message


# ------------------------------------------------------------------------------ good specs


@pytest.mark.parametrize("arch,name,n_blocks", [("small", "mobilenet_v3_small", 11), ("large", "mobilenet_v3_large", 15)])
def test_builtin_specs_load(arch, name, n_blocks):
    spec = load_spec(arch)
    assert spec.name == name
    assert len(spec.blocks) == n_blocks  # rows of the paper's Tables 2 and 1
    assert spec.stem.kernel == 3 and spec.stem.out == 16 and spec.stem.stride == 2
    assert load_spec(BUILTIN_SPECS[arch]) == spec
    assert load_spec(spec) is spec


def test_spec_round_trips_through_its_dict_form():
    spec = load_spec("large")
    again = spec_from_dict(spec.to_dict())
    assert again.to_dict() == spec.to_dict() and again.blocks == spec.blocks


def test_own_spec_builds_and_runs(tmp_path):
    data = small_dict()
    data["name"] = "small_minus_one"
    del data["blocks"][-1]  # Small with one fewer bneck (the last is a repeat 96 -> 96)
    path = write(tmp_path, data)
    model = build_model(path, num_classes=10)
    assert model.spec.name == "small_minus_one" and len(model.features) == 1 + 10 + 1
    x = torch.randn(2, 3, 64, 64)
    assert model.eval()(x).shape == (2, 10)
    # torchvision, built from the same rows, has exactly the same parameters.
    configs, channels = [], data["stem"]["out"]
    for row in data["blocks"]:
        configs.append(
            InvertedResidualConfig(channels, row["kernel"], row["exp_size"], row["out"], row["se"], row["nl"], row["stride"], 1, 1.0)
        )
        channels = row["out"]
    reference = TorchvisionMobileNetV3(configs, data["head"]["hidden"], num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


def test_own_spec_with_relative_path(tmp_path, monkeypatch):
    write(tmp_path, small_dict(), "mine.json")
    monkeypatch.chdir(tmp_path)
    assert isinstance(build_model("mine.json"), nn.Module)


# ------------------------------------------------------------------------------ bad rows

ROW = re.escape("blocks[3] (table row 5)")  # the paper counts the stem conv as row 1


def _set(section: str, field: str, value):
    def mutate(d):
        target = d["blocks"][3] if section == "block" else d[section]
        target[field] = value

    return mutate


def _delete(section: str, field: str):
    def mutate(d):
        target = d["blocks"][3] if section == "block" else d[section]
        del target[field]

    return mutate


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        # unknown and missing fields
        (_set("block", "kernal", 5), ROW + r": unknown field 'kernal'; allowed fields are \['kernel', 'exp_size', 'out', 'se', 'nl', 'stride'\]"),
        (_delete("block", "se"), ROW + r": missing field 'se'; add it \(true or false\)"),
        (_delete("block", "exp_size"), ROW + r": missing field 'exp_size'; add it \(a positive integer up to 4096\)"),
        # wrong types
        (_set("block", "kernel", "3"), ROW + r": field 'kernel' is \"3\"; allowed: a positive odd integer"),
        (_set("block", "kernel", 3.0), ROW + r": field 'kernel' is 3.0; allowed: a positive odd integer"),
        (_set("block", "se", 1), ROW + r": field 'se' is 1; allowed: true or false"),
        (_set("block", "se", "yes"), ROW + r": field 'se' is \"yes\"; allowed: true or false"),
        (_set("block", "stride", True), ROW + r": field 'stride' is true; allowed: 1 or 2"),
        (_set("block", "out", None), ROW + r": field 'out' is null; allowed: a positive integer"),
        # values out of range
        (_set("block", "nl", "SW"), ROW + r": field 'nl' is \"SW\"; allowed: 'RE' \(ReLU\) or 'HS' \(h-swish\)"),
        (_set("block", "nl", "hs"), ROW + r": field 'nl' is \"hs\"; allowed: 'RE'"),
        (_set("block", "stride", 3), ROW + r": field 'stride' is 3; allowed: 1 or 2"),
        (_set("block", "stride", 0), ROW + r": field 'stride' is 0; allowed: 1 or 2"),
        (_set("block", "kernel", 4), ROW + r": field 'kernel' is 4; allowed: a positive odd integer"),
        (_set("block", "kernel", 0), ROW + r": field 'kernel' is 0; allowed: a positive odd integer"),
        (_set("block", "kernel", -3), ROW + r": field 'kernel' is -3; allowed: a positive odd integer"),
        (_set("block", "out", 0), ROW + r": field 'out' is 0; allowed: a positive integer"),
        (_set("block", "exp_size", -8), ROW + r": field 'exp_size' is -8; allowed: a positive integer"),
        # the stem and head rows
        (_set("stem", "nl", "RELU"), r"stem: field 'nl' is \"RELU\"; allowed: 'RE' \(ReLU\) or 'HS' \(h-swish\)"),
        (_set("stem", "kernel", 2), r"stem: field 'kernel' is 2; allowed: a positive odd integer"),
        (_set("stem", "exp_size", 16), r"stem: unknown field 'exp_size'; allowed fields are \['kernel', 'out', 'nl', 'stride'\]"),
        (_set("head", "hidden", 0), r"head: field 'hidden' is 0; allowed: a positive integer"),
        (_delete("head", "out"), r"head: missing field 'out'; add it \(a positive integer up to 4096\)"),
    ],
)
def test_bad_row_message(tmp_path, mutate, pattern):
    data = small_dict()
    mutate(data)
    message = spec_error(write(tmp_path, data))
    assert re.search(pattern, message), message


def test_row_numbers_follow_the_paper(tmp_path):
    data = small_dict()
    data["blocks"][0]["stride"] = 4
    assert "blocks[0] (table row 2)" in spec_error(write(tmp_path, data, "first.json"))
    data = small_dict()
    data["blocks"][-1]["stride"] = 4
    assert "blocks[10] (table row 12)" in spec_error(write(tmp_path, data, "last.json"))


# ------------------------------------------------------------------------------ bad files


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda d: d.update(blocks=[]), r"field 'blocks' is an empty list; a network needs at least one bneck row"),
        (lambda d: d.update(blocks={"kernel": 3}), r"field 'blocks' is \{\"kernel\": 3\}; allowed: a list of bneck rows"),
        (lambda d: d["blocks"].__setitem__(2, 5), r"blocks\[2\] \(table row 4\): expected a JSON object with fields \[.*\], found 5"),
        (lambda d: d.update(stem=[3, 16]), r"stem: expected a JSON object with fields \['kernel', 'out', 'nl', 'stride'\], found \[3, 16\]"),
        (lambda d: d.update(heads={}), r"unknown top-level field 'heads'; allowed fields are \['blocks', 'head', 'name', 'notes', 'paper_table', 'stem'\]"),
        (lambda d: d.pop("head"), r"missing top-level field 'head'"),
        (lambda d: d.update(name=""), r"field 'name' is \"\"; allowed: a non-empty string"),
        (lambda d: d.update(name=7), r"field 'name' is 7; allowed: a non-empty string"),
    ],
)
def test_bad_structure_message(tmp_path, mutate, pattern):
    data = small_dict()
    mutate(data)
    message = spec_error(write(tmp_path, data))
    assert re.search(pattern, message), message


@pytest.mark.parametrize("top", [[1, 2], "small", 3, None])
def test_top_level_not_an_object(tmp_path, top):
    message = spec_error(write(tmp_path, json.dumps(top)))
    assert "the top level must be a JSON object with 'name', 'stem', 'blocks' and 'head'" in message


@pytest.mark.parametrize(
    "text",
    [
        '{\n  "name": "x",\n  "stem": {"kernel": 3, "out": 16,}\n}\n',  # trailing comma
        '{\n  "name": "x"\n  "stem": {}\n}\n',  # missing comma
        "",  # empty file
        "{'name': 'x'}",  # single quotes
    ],
)
def test_invalid_json_message_has_line_and_column(tmp_path, text):
    with pytest.raises(json.JSONDecodeError) as reference:  # where the standard library puts the error
        json.loads(text)
    message = spec_error(write(tmp_path, text))
    expected = f"invalid JSON at line {reference.value.lineno}, column {reference.value.colno}"
    assert expected in message, message


def test_non_utf8_file_gets_a_spec_error(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"name": "caf\u00e9"}'.encode("latin-1"))
    message = spec_error(path)
    assert str(path) in message and "UTF-8" in message


def test_odd_python_values_get_spec_errors():
    with pytest.raises(SpecError, match="arch must be"):
        load_spec(123)
    spec = json.loads(Path(BUILTIN_SPECS["small"]).read_text())
    spec["blocks"][0]["kernel"] = {3}
    with pytest.raises(SpecError, match=r"field 'kernel' is \{3\}"):
        spec_from_dict(spec)


@pytest.mark.parametrize("arch", ["medium", "Small", "no/such/spec.json"])
def test_unknown_arch_lists_the_choices(arch):
    with pytest.raises(SpecError, match=r"unknown arch .*use 'small', 'large' or the path to a spec JSON file"):
        build_model(arch)
    with pytest.raises(ValueError, match=re.escape(repr(arch))):
        load_spec(arch)


def test_unknown_arch_directory_is_not_a_spec(tmp_path):
    with pytest.raises(SpecError, match="unknown arch"):
        load_spec(tmp_path)


def test_spec_errors_are_not_key_or_type_errors(tmp_path):
    """Every mutation above is a SpecError; also a few malformed files picked for odd types."""
    cases = [
        {"name": "x", "stem": None, "blocks": [], "head": None},
        {"name": "x", "stem": {}, "blocks": [None], "head": {}},
        {"name": None},
        {},
    ]
    for i, case in enumerate(cases):
        path = write(tmp_path, case, f"case{i}.json")
        with pytest.raises(SpecError):
            load_spec(path)



# ------------------------------------------------------------------------------ absurd sizes


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (_set("block", "out", 10**9), ROW + r": field 'out' is 1000000000; allowed: a positive integer up to 4096"),
        (_set("block", "exp_size", 4097), ROW + r": field 'exp_size' is 4097; allowed: a positive integer up to 4096"),
        (_set("block", "kernel", 99_999), ROW + r": field 'kernel' is 99999; allowed: a positive odd integer up to 11"),
        (_set("block", "kernel", 13), ROW + r": field 'kernel' is 13; allowed: a positive odd integer up to 11"),
        (_set("stem", "kernel", 101), r"stem: field 'kernel' is 101; allowed: a positive odd integer up to 11"),
        (_set("head", "hidden", 10**30), r"head: field 'hidden' is 1000000000000000000000000000000; allowed: a positive integer up to 4096"),
        (lambda d: d.update(blocks=d["blocks"] * 6), r"field 'blocks' has 66 rows; allowed: 1 to 64"),
    ],
)
def test_sizes_outside_the_bounds(tmp_path, mutate, pattern):
    data = small_dict()
    mutate(data)
    message = spec_error(write(tmp_path, data))
    assert re.search(pattern, message), message


def test_the_bounds_admit_their_limits():
    data = small_dict()
    data["blocks"][3].update(kernel=11, exp_size=4096)
    data["head"]["hidden"] = 4096
    assert spec_from_dict(data).blocks[3].exp_size == 4096
    data = small_dict()
    data["blocks"] = data["blocks"][:4] * 16
    assert len(spec_from_dict(data).blocks) == 64


def test_too_many_parameters_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    """Each row is within its bounds, but together they make over 800 million parameters."""
    from mnv3 import spec as spec_module

    wide = {"kernel": 11, "exp_size": 4096, "out": 4096, "se": True, "nl": "HS", "stride": 1}
    data = small_dict()
    data["blocks"] = [wide] * 32
    data["head"]["out"] = 4096

    def no_allocation(*args, **kwargs):
        raise AssertionError("a layer was built before the spec was rejected")

    with monkeypatch.context() as patch:
        patch.setattr(nn.Conv2d, "__init__", no_allocation)
        message = spec_error(write(tmp_path, data))
    match = re.search(r"this spec makes a model of about ([\d,]+) parameters \(width_mult 1, 1000 classes, "
                      r"3 input channels\), over the limit of 100,000,000", message)
    assert match, message
    monkeypatch.setattr(spec_module, "MAX_PARAMETERS", 10**12)
    count = spec_module.estimate_parameters(spec_from_dict(data))
    assert int(match.group(1).replace(",", "")) == count > 8 * 10**8


@pytest.mark.parametrize("arch", ["small", "large"])
@pytest.mark.parametrize("num_classes,in_channels,width", [(1000, 3, 1.0), (10, 1, 0.5), (10, 3, 1.25), (100, 3, 0.35)])
def test_parameter_estimate_equals_the_built_model(arch, num_classes, in_channels, width):
    from mnv3.spec import estimate_parameters

    model = build_model(arch, num_classes=num_classes, in_channels=in_channels, width_mult=width)
    expected = sum(p.numel() for p in model.parameters())
    assert estimate_parameters(load_spec(arch), num_classes=num_classes, in_channels=in_channels, width_mult=width) == expected


def test_deep_nesting_is_a_spec_error(tmp_path):
    depth = 100_000  # far past Python's recursion limit
    message = spec_error(write(tmp_path, '{"name": "x", "stem": ' + "[" * depth + "]" * depth + "}"))
    assert "nested too deeply" in message, message


def test_deeply_nested_value_in_a_dict_is_shown_briefly():
    """A nested value built in Python (no JSON parser involved) still gets a one-line message."""
    nested: list = []
    for _ in range(50_000):
        nested = [nested]
    data = small_dict()
    data["stem"] = nested
    with pytest.raises(SpecError) as err:
        spec_from_dict(data, "deep")
    message = str(err.value)
    assert message.startswith("deep: stem: expected a JSON object") and len(message) < 300, message


def test_oversized_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text(" " * (2**20 + 1) + "{}", encoding="utf-8")
    message = spec_error(path)
    assert "1,048,579 bytes; allowed: up to 1,048,576" in message, message
