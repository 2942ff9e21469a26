"""Network specs as data: one JSON object per row of the paper's Tables 1 (Large) and 2 (Small).

A spec file looks like this (see ``mnv3/specs/small.json``)::

    {
      "name": "mobilenet_v3_small",
      "stem":   {"kernel": 3, "out": 16, "nl": "HS", "stride": 2},
      "blocks": [{"kernel": 3, "exp_size": 16, "out": 16, "se": true, "nl": "RE", "stride": 2}, ...],
      "head":   {"out": 576, "nl": "HS", "hidden": 1024}
    }

The column names are the paper's: exp size, #out, SE, NL (RE = ReLU, HS = h-swish) and s (stride).
``load_spec`` checks every field and fails with one message naming the file, the row, the field,
what was found and what is allowed, so a typo never surfaces as a traceback from inside torch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["SpecError", "StemSpec", "BlockSpec", "HeadSpec", "ModelSpec", "load_spec", "spec_from_dict", "BUILTIN_SPECS"]

SPEC_DIR = Path(__file__).parent / "specs"
BUILTIN_SPECS = {"small": SPEC_DIR / "small.json", "large": SPEC_DIR / "large.json"}
NONLINEARITIES = {"RE": "ReLU", "HS": "h-swish"}


class SpecError(ValueError):
    """A spec file or dict that does not describe a valid network."""


@dataclass(frozen=True)
class StemSpec:
    kernel: int
    out: int
    nl: str
    stride: int


@dataclass(frozen=True)
class BlockSpec:
    kernel: int
    exp_size: int
    out: int
    se: bool
    nl: str
    stride: int


@dataclass(frozen=True)
class HeadSpec:
    out: int  # the last 1x1 convolution, before pooling
    nl: str
    hidden: int  # the 1x1 "NBN" layer after pooling (a Linear in torchvision)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    stem: StemSpec
    blocks: tuple[BlockSpec, ...]
    head: HeadSpec
    source: str = "<dict>"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as stored in checkpoints so a run never depends on a spec file changing."""
        return {
            "name": self.name,
            "stem": asdict(self.stem),
            "blocks": [asdict(b) for b in self.blocks],
            "head": asdict(self.head),
        }


def _show(value: Any) -> str:
    """A found value as the message shows it: JSON where possible, else Python's repr."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _odd_kernel(v: Any) -> bool:
    return _positive_int(v) and v % 2 == 1


_RULES: dict[str, tuple[Any, str]] = {
    "kernel": (_odd_kernel, "a positive odd integer (3 or 5 in the paper)"),
    "exp_size": (_positive_int, "a positive integer"),
    "out": (_positive_int, "a positive integer"),
    "hidden": (_positive_int, "a positive integer"),
    "se": (lambda v: isinstance(v, bool), "true or false"),
    "nl": (lambda v: v in NONLINEARITIES, "'RE' (ReLU) or 'HS' (h-swish)"),
    "stride": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v in (1, 2), "1 or 2"),
}
_SECTIONS: dict[str, tuple[type, tuple[str, ...]]] = {
    "stem": (StemSpec, ("kernel", "out", "nl", "stride")),
    "block": (BlockSpec, ("kernel", "exp_size", "out", "se", "nl", "stride")),
    "head": (HeadSpec, ("out", "nl", "hidden")),
}
_TOP_LEVEL = {"name", "stem", "blocks", "head", "paper_table", "notes"}


def _parse_section(obj: Any, kind: str, where: str, source: str):
    cls, fields = _SECTIONS[kind]
    if not isinstance(obj, dict):
        raise SpecError(f"{source}: {where}: expected a JSON object with fields {list(fields)}, found {obj!r}.")
    for key in obj:
        if key not in fields:
            raise SpecError(f"{source}: {where}: unknown field {key!r}; allowed fields are {list(fields)}.")
    for key in fields:
        if key not in obj:
            raise SpecError(f"{source}: {where}: missing field {key!r}; add it ({_RULES[key][1]}).")
        check, allowed = _RULES[key]
        if not check(obj[key]):
            raise SpecError(f"{source}: {where}: field {key!r} is {_show(obj[key])}; allowed: {allowed}.")
    return cls(**{k: obj[k] for k in fields})


def spec_from_dict(data: Any, source: str = "<dict>") -> ModelSpec:
    """Validate a spec in its JSON form and return it as a ModelSpec."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the top level must be a JSON object with 'name', 'stem', 'blocks' and 'head'.")
    for key in data:
        if key not in _TOP_LEVEL:
            raise SpecError(f"{source}: unknown top-level field {key!r}; allowed fields are {sorted(_TOP_LEVEL)}.")
    for key in ("name", "stem", "blocks", "head"):
        if key not in data:
            raise SpecError(f"{source}: missing top-level field {key!r}.")
    if not isinstance(data["name"], str) or not data["name"]:
        raise SpecError(f"{source}: field 'name' is {_show(data['name'])}; allowed: a non-empty string.")
    blocks = data["blocks"]
    if not isinstance(blocks, list):
        raise SpecError(f"{source}: field 'blocks' is {_show(blocks)}; allowed: a list of bneck rows.")
    if not blocks:
        raise SpecError(f"{source}: field 'blocks' is an empty list; a network needs at least one bneck row.")
    stem = _parse_section(data["stem"], "stem", "stem", source)
    # Rows are counted as in the paper's tables, where the stem convolution is row 1.
    parsed = tuple(
        _parse_section(b, "block", f"blocks[{i}] (table row {i + 2})", source) for i, b in enumerate(blocks)
    )
    head = _parse_section(data["head"], "head", "head", source)
    return ModelSpec(name=data["name"], stem=stem, blocks=parsed, head=head, source=source)


def load_spec(arch: str | Path | ModelSpec) -> ModelSpec:
    """Load "small", "large", or a path to a spec file of your own."""
    if isinstance(arch, ModelSpec):
        return arch
    if not isinstance(arch, (str, Path)):
        raise SpecError(f"arch must be 'small', 'large' or the path to a spec JSON file, got {arch!r}.")
    path = BUILTIN_SPECS.get(arch) if isinstance(arch, str) else None
    if path is None:
        path = Path(arch)
        if not path.is_file():
            raise SpecError(
                f"unknown arch {str(arch)!r}: use 'small', 'large' or the path to a spec JSON file "
                f"(no file found at {path.resolve()})."
            )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read the spec file ({err}); save it as UTF-8 JSON.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}.") from None
    return spec_from_dict(data, source=str(path))
