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

Bounds, checked before any tensor is allocated (the paper's largest values in brackets):

* ``kernel``: odd, 1 to :data:`MAX_KERNEL` = 11 [5]; ``stride``: 1 or 2 [2];
* ``out``, ``exp_size``, ``hidden``: 1 to :data:`MAX_CHANNELS` = 4096 [1280, Large's hidden];
* ``blocks``: 1 to :data:`MAX_BLOCKS` = 64 rows [15, Large];
* the model: at most :data:`MAX_PARAMETERS` = 100 million parameters at width 1.0 with 1000
  classes [5.48 million, Large], estimated by :func:`estimate_parameters`;
* the file: at most :data:`MAX_SPEC_BYTES` = 1 MiB [2 KB], nested no deeper than JSON's parser allows.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .layers import make_divisible

__all__ = [
    "SpecError", "StemSpec", "BlockSpec", "HeadSpec", "ModelSpec", "load_spec", "spec_from_dict",
    "estimate_parameters", "check_size", "BUILTIN_SPECS", "MAX_KERNEL", "MAX_CHANNELS", "MAX_BLOCKS",
    "MAX_PARAMETERS", "MAX_SPEC_BYTES", "show_value",
]  # fmt: skip

SPEC_DIR = Path(__file__).parent / "specs"
BUILTIN_SPECS = {"small": SPEC_DIR / "small.json", "large": SPEC_DIR / "large.json"}
NONLINEARITIES = {"RE": "ReLU", "HS": "h-swish"}

# Generous bounds that no sensible spec reaches, so that a typo (an extra zero, a million rows)
# fails here with a message rather than in the allocator or after minutes of building.
MAX_KERNEL = 11  # the paper uses 3 and 5; MnasNet's search space, which it starts from, 3 to 7
MAX_CHANNELS = 4096  # the paper's widest layer is Large's 1280-wide hidden layer
MAX_BLOCKS = 64  # the paper's tables have 11 (Small) and 15 (Large) bneck rows
MAX_PARAMETERS = 100_000_000  # about 18x MobileNetV3-Large (5.48 million)
MAX_SPEC_BYTES = 2**20  # the built-in specs are about 2 KB


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


def show_value(value: Any, limit: int = 80) -> str:
    """A found value as the message shows it: JSON where possible, else Python's repr, cut to
    ``limit`` characters so that one line stays one line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        try:
            text = repr(value)
        except RecursionError:
            text = "a deeply nested value"
    except RecursionError:
        text = "a deeply nested value"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _channels(v: Any) -> bool:
    return _positive_int(v) and v <= MAX_CHANNELS


def _odd_kernel(v: Any) -> bool:
    return _positive_int(v) and v % 2 == 1 and v <= MAX_KERNEL


_CHANNELS_ALLOWED = f"a positive integer up to {MAX_CHANNELS}"
_RULES: dict[str, tuple[Any, str]] = {
    "kernel": (_odd_kernel, f"a positive odd integer up to {MAX_KERNEL} (3 or 5 in the paper)"),
    "exp_size": (_channels, _CHANNELS_ALLOWED),
    "out": (_channels, _CHANNELS_ALLOWED),
    "hidden": (_channels, _CHANNELS_ALLOWED),
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
        raise SpecError(f"{source}: {where}: expected a JSON object with fields {list(fields)}, found {show_value(obj)}.")
    for key in obj:
        if key not in fields:
            raise SpecError(f"{source}: {where}: unknown field {key!r:.80}; allowed fields are {list(fields)}.")
    for key in fields:
        if key not in obj:
            raise SpecError(f"{source}: {where}: missing field {key!r}; add it ({_RULES[key][1]}).")
        check, allowed = _RULES[key]
        if not check(obj[key]):
            raise SpecError(f"{source}: {where}: field {key!r} is {show_value(obj[key])}; allowed: {allowed}.")
    return cls(**{k: obj[k] for k in fields})


def spec_from_dict(data: Any, source: str = "<dict>") -> ModelSpec:
    """Validate a spec in its JSON form and return it as a ModelSpec.

    Raises SpecError, naming ``source``, the row and the field, for anything that is not a valid
    network within the bounds in this module's docstring.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the top level must be a JSON object with 'name', 'stem', 'blocks' and 'head'.")
    for key in data:
        if key not in _TOP_LEVEL:
            raise SpecError(f"{source}: unknown top-level field {key!r:.80}; allowed fields are {sorted(_TOP_LEVEL)}.")
    for key in ("name", "stem", "blocks", "head"):
        if key not in data:
            raise SpecError(f"{source}: missing top-level field {key!r}.")
    if not isinstance(data["name"], str) or not data["name"]:
        raise SpecError(f"{source}: field 'name' is {show_value(data['name'])}; allowed: a non-empty string.")
    blocks = data["blocks"]
    if not isinstance(blocks, list):
        raise SpecError(f"{source}: field 'blocks' is {show_value(blocks)}; allowed: a list of bneck rows.")
    if not blocks:
        raise SpecError(f"{source}: field 'blocks' is an empty list; a network needs at least one bneck row.")
    if len(blocks) > MAX_BLOCKS:
        raise SpecError(f"{source}: field 'blocks' has {len(blocks):,} rows; allowed: 1 to {MAX_BLOCKS} "
                        "(the paper's tables have 11 and 15).")
    stem = _parse_section(data["stem"], "stem", "stem", source)
    # Rows are counted as in the paper's tables, where the stem convolution is row 1.
    parsed = tuple(
        _parse_section(b, "block", f"blocks[{i}] (table row {i + 2})", source) for i, b in enumerate(blocks)
    )
    head = _parse_section(data["head"], "head", "head", source)
    spec = ModelSpec(name=data["name"], stem=stem, blocks=parsed, head=head, source=source)
    check_size(spec)
    return spec


def estimate_parameters(spec: ModelSpec, *, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0) -> int:
    """The number of parameters (weights, biases, BatchNorm scales and shifts; not the running
    statistics) of ``build_model(spec, ...)``, computed from the spec alone, without allocating.

    It follows ``mnv3.model.MobileNetV3`` layer by layer (channel rounding, the skipped expansion,
    squeeze width, the head's ratio to the last block); a test keeps the two equal.
    """
    def scale(channels: int) -> int:
        return make_divisible(channels * width_mult)

    def conv_bn(cin: int, cout: int, kernel: int, groups: int = 1) -> int:
        return cin // groups * cout * kernel * kernel + 2 * cout  # conv without bias, BN scale and shift

    channels = scale(spec.stem.out)
    total = conv_bn(in_channels, channels, spec.stem.kernel)
    for row in spec.blocks:
        exp, out = scale(row.exp_size), scale(row.out)
        if exp != channels:
            total += conv_bn(channels, exp, 1)
        total += conv_bn(exp, exp, row.kernel, groups=exp)
        if row.se:
            squeeze = make_divisible(exp // 4)
            total += (exp * squeeze + squeeze) + (squeeze * exp + exp)  # two 1x1 convs with bias
        total += conv_bn(exp, out, 1)
        channels = out
    last_out = spec.blocks[-1].out
    head_out = channels * (spec.head.out // last_out) if spec.head.out % last_out == 0 else scale(spec.head.out)
    hidden = scale(spec.head.hidden)
    total += conv_bn(channels, head_out, 1)
    return total + (head_out * hidden + hidden) + (hidden * num_classes + num_classes)


def check_size(spec: ModelSpec, *, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0) -> None:
    """Raise SpecError when the model would have more than MAX_PARAMETERS parameters."""
    count = estimate_parameters(spec, num_classes=num_classes, in_channels=in_channels, width_mult=width_mult)
    if count > MAX_PARAMETERS:
        raise SpecError(
            f"{spec.source}: this spec makes a model of about {count:,} parameters (width_mult "
            f"{width_mult:g}, {num_classes} classes, {in_channels} input channels), over the limit of "
            f"{MAX_PARAMETERS:,} (MobileNetV3-Large has 5.48 million); use fewer or narrower rows."
        )


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
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: the spec file is {size:,} bytes; allowed: up to {MAX_SPEC_BYTES:,} "
                            "(a spec holds one short row per layer, about 2 KB).")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read the spec file ({err}); save it as UTF-8 JSON.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}.") from None
    except RecursionError:
        raise SpecError(f"{path}: the JSON is nested too deeply to parse; a spec is an object of rows, "
                        "two levels deep.") from None
    return spec_from_dict(data, source=str(path))
