"""Spec surgery with weight inheritance: NetAdapt's two ways to make a network narrower.

NetAdapt (Yang et al. 2018, arXiv 1804.03230, section 3.2) shrinks one layer at a time and keeps
the filters with the largest L2 norm. MobileNetV3 (Howard et al. 2019, section 4.2) applies it with
two kinds of proposals, which are the two kinds here:

* **(E)** :func:`shrink_expansion`: reduce one bneck block's expansion size (``exp_size``);
* **(B)** :func:`shrink_bottleneck`: reduce the bottleneck (``out``) of every block that shares it
  through residual connections, so each residual connection survives.

Both work on a :class:`~mnv3.spec.ModelSpec` (plain data) and never change the network's structure:
which blocks have an expansion convolution (the builder drops it when ``exp_size`` equals the input
channels) and which have a residual connection (stride 1 and equal channels) stay as they are, and
:func:`check_same_structure` refuses a spec where either would change. :func:`inherit_weights` then
builds the child model and copies the parent's weights into it, channel by channel, consistently
through the expansion convolution, its BatchNorm, the depthwise convolution, squeeze-and-excite
and the projection, and the next layers' inputs.

Channel counts stay multiples of :data:`CHANNEL_STEP` (8, the width multiplier's rounding, so a
spec means the same at width 1.0), and at least :data:`MIN_CHANNELS`. The search runs at width 1.0:
a spec's numbers are the layers' channels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..layers import make_divisible
from ..model import MobileNetV3, resolve_strides
from ..spec import BlockSpec, ModelSpec, SpecError

__all__ = [
    "CHANNEL_STEP",
    "MIN_CHANNELS",
    "Structure",
    "structure",
    "check_same_structure",
    "bottleneck_groups",
    "shrink_expansion",
    "shrink_bottleneck",
    "Proposal",
    "apply_proposal",
    "channel_choice",
    "inherit_weights",
    "zero_cut_channels",
]

CHANNEL_STEP = 8  # make_divisible's divisor: a multiple of 8 is a fixed point at width 1.0
MIN_CHANNELS = 8


@dataclass(frozen=True)
class Structure:
    """What a spec's numbers decide beyond widths: per block whether it has an expansion conv and
    a residual connection, and which channel tensor (0 = the stem's output) each block reads and
    writes. Two specs of one structure have the same layers, only of other widths."""

    expand: tuple[bool, ...]
    residual: tuple[bool, ...]
    reads: tuple[int, ...]
    writes: tuple[int, ...]


def structure(spec: ModelSpec, drop_first_strides: int = 0) -> Structure:
    """The :class:`Structure` of ``spec`` at ``drop_first_strides`` (strides decide residuals)."""
    strides = resolve_strides(spec, drop_first_strides)[1:]
    expand, residual, reads, writes = [], [], [], []
    channels, tensor = spec.stem.out, 0
    for row, stride in zip(spec.blocks, strides):
        expand.append(row.exp_size != channels)
        residual.append(stride == 1 and row.out == channels)
        reads.append(tensor)
        if not residual[-1]:
            tensor += 1
        writes.append(tensor)
        channels = row.out
    return Structure(tuple(expand), tuple(residual), tuple(reads), tuple(writes))


def check_same_structure(parent: ModelSpec, child: ModelSpec, drop_first_strides: int = 0) -> None:
    """Raise SpecError when ``child`` is not ``parent`` with other widths: a dropped or added
    expansion conv, residual connection, row or stride, or another kernel, SE or nonlinearity."""
    if len(parent.blocks) != len(child.blocks):
        raise SpecError(f"{child.source}: {len(child.blocks)} blocks, the parent has {len(parent.blocks)}")
    for i, (p, c) in enumerate(zip(parent.blocks, child.blocks)):
        for field in ("kernel", "se", "nl", "stride"):
            if getattr(p, field) != getattr(c, field):
                raise SpecError(f"{child.source}: blocks[{i}].{field} is {getattr(c, field)!r}, the parent's {getattr(p, field)!r}")
    a, b = structure(parent, drop_first_strides), structure(child, drop_first_strides)
    inputs = [child.stem.out] + [row.out for row in child.blocks[:-1]]
    for i in range(len(parent.blocks)):
        if a.expand[i] != b.expand[i]:
            raise SpecError(f"{child.source}: blocks[{i}] would {'lose' if a.expand[i] else 'gain'} its expansion conv "
                            f"(exp_size {child.blocks[i].exp_size}, input channels {inputs[i]}: the builder drops the "
                            "expansion conv when they are equal)")
        if a.residual[i] != b.residual[i]:
            raise SpecError(f"{child.source}: blocks[{i}] would {'lose' if a.residual[i] else 'gain'} its residual connection "
                            f"(input channels {inputs[i]}, out {child.blocks[i].out})")


def bottleneck_groups(spec: ModelSpec, drop_first_strides: int = 0) -> list[tuple[int, ...]]:
    """The blocks whose ``out`` must shrink together, one tuple of block indices per channel
    tensor that residual connections share. Left out: the tensor the stem writes (shrinking it
    would change the stem) and any tensor read by a block without an expansion conv (its
    ``exp_size`` would have to follow). For Small at the paper's strides: (1, 2), (3, 4, 5),
    (6, 7), (8, 9, 10), the paper's {24}, {40}, {48} and {96}, and (0,), block 0's 16, which no
    residual shares (with ``drop_first_strides`` 2 block 0 adds to the stem's tensor instead)."""
    s = structure(spec, drop_first_strides)
    groups: dict[int, list[int]] = {}
    for i, tensor in enumerate(s.writes):
        groups.setdefault(tensor, []).append(i)
    fixed = {0} | {s.reads[i] for i in range(len(spec.blocks)) if not s.expand[i]}
    return [tuple(blocks) for tensor, blocks in sorted(groups.items()) if tensor not in fixed]


def _replace_block(spec: ModelSpec, index: int, **changes: Any) -> tuple[BlockSpec, ...]:
    return tuple(dataclasses.replace(b, **changes) if i == index else b for i, b in enumerate(spec.blocks))


def _check_channels(value: int, what: str) -> None:
    if value < MIN_CHANNELS or value % CHANNEL_STEP:
        raise SpecError(f"{what} = {value}: channels must be a multiple of {CHANNEL_STEP}, at least {MIN_CHANNELS}")


def shrink_expansion(spec: ModelSpec, block: int, exp_size: int, *, drop_first_strides: int = 0) -> ModelSpec:
    """``spec`` with ``blocks[block].exp_size`` set to ``exp_size`` (a proposal of kind E).

    Raises SpecError when the width is not a multiple of 8 of at least 8, is not smaller, or
    would drop or add the block's expansion conv (``exp_size`` equal to its input channels)."""
    old = spec.blocks[block].exp_size
    _check_channels(exp_size, f"blocks[{block}].exp_size")
    if exp_size >= old:
        raise SpecError(f"blocks[{block}].exp_size {exp_size} does not shrink it (now {old})")
    child = dataclasses.replace(spec, blocks=_replace_block(spec, block, exp_size=exp_size), source=f"{spec.source} E{block}:{exp_size}")
    check_same_structure(spec, child, drop_first_strides)
    return child


def shrink_bottleneck(spec: ModelSpec, group: tuple[int, ...], out: int, *, drop_first_strides: int = 0) -> ModelSpec:
    """``spec`` with ``out`` of every block in ``group`` (one of :func:`bottleneck_groups`) set to
    ``out`` (a proposal of kind B). Raises SpecError as :func:`shrink_expansion` does, and when
    ``group`` is not one of the spec's groups."""
    if tuple(group) not in bottleneck_groups(spec, drop_first_strides):
        raise SpecError(f"blocks {list(group)} do not share one residual bottleneck; groups: {bottleneck_groups(spec, drop_first_strides)}")
    old = spec.blocks[group[0]].out
    _check_channels(out, f"out of blocks {list(group)}")
    if out >= old:
        raise SpecError(f"out {out} of blocks {list(group)} does not shrink it (now {old})")
    blocks = tuple(dataclasses.replace(b, out=out) if i in group else b for i, b in enumerate(spec.blocks))
    child = dataclasses.replace(spec, blocks=blocks, source=f"{spec.source} B{group[0]}-{group[-1]}:{out}")
    check_same_structure(spec, child, drop_first_strides)
    return child


@dataclass(frozen=True)
class Proposal:
    """One NetAdapt proposal: ``kind`` "E" (``blocks`` holds one block; ``channels`` its new
    exp_size) or "B" (``blocks`` a bottleneck group; ``channels`` their new out)."""

    kind: str
    blocks: tuple[int, ...]
    channels: int

    def label(self) -> str:
        """"E block 4 -> 184" or "B blocks 3-5 -> 32": what the proposal sets."""
        where = f"block {self.blocks[0]}" if self.kind == "E" else f"blocks {self.blocks[0]}-{self.blocks[-1]}"
        return f"{self.kind} {where} -> {self.channels}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "blocks": list(self.blocks), "channels": self.channels}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Proposal":
        return cls(str(data["kind"]), tuple(int(b) for b in data["blocks"]), int(data["channels"]))


def apply_proposal(spec: ModelSpec, proposal: Proposal, *, drop_first_strides: int = 0) -> ModelSpec:
    """The child spec of ``proposal`` (SpecError when it is not a valid shrink of ``spec``)."""
    if proposal.kind == "E":
        return shrink_expansion(spec, proposal.blocks[0], proposal.channels, drop_first_strides=drop_first_strides)
    if proposal.kind == "B":
        return shrink_bottleneck(spec, proposal.blocks, proposal.channels, drop_first_strides=drop_first_strides)
    raise SpecError(f"unknown proposal kind {proposal.kind!r}: E (expansion) or B (bottleneck)")


# ----------------------------------------------------------------------------- weights


def _keep(norms: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` largest ``norms``, in their original order (NetAdapt's rule)."""
    if count > len(norms):
        raise ValueError(f"cannot keep {count} of {len(norms)} channels")
    return norms.topk(count, sorted=False).indices.sort().values


def _filter_norms(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().float().flatten(1).pow(2).sum(1)


def _parts(block: nn.Module) -> dict[str, nn.Module]:
    """An InvertedResidual's layers by role: expand (ConvBNAct, optional), dw, se (optional), project."""
    layers = list(block.block)
    parts = {"dw": None, "se": None, "expand": None, "project": layers[-1]}
    body = layers[:-1]
    if len(body) and hasattr(body[-1], "fc1"):
        parts["se"] = body.pop()
    parts["dw"] = body.pop()
    parts["expand"] = body.pop() if body else None
    return parts


def channel_choice(parent: MobileNetV3, child_spec: ModelSpec) -> dict[str, Any]:
    """Which parent channels the child keeps, by largest L2 norm of the filters that make them.

    Returns {"tensors": {tensor id: kept indices}, "expansion": [per block kept indices],
    "squeeze": [per block kept SE indices or None]} (LongTensors, ascending). A bottleneck
    tensor's norm sums, over every block that writes it, the squared norms of the projection's
    filters; an expansion channel's is its expansion conv's filter (its depthwise filter where the
    block has no expansion conv); an SE squeeze channel's is fc1's filter.
    """
    drop = parent.config["drop_first_strides"]
    s = structure(parent.spec, drop)
    stem_conv = parent.features[0][0]
    writers: dict[int, list[torch.Tensor]] = {0: [_filter_norms(stem_conv.weight)]}
    blocks = [parent.features[1 + i] for i in range(len(parent.spec.blocks))]
    for i, block in enumerate(blocks):
        writers.setdefault(s.writes[i], []).append(_filter_norms(_parts(block)["project"][0].weight))
    widths = {0: child_spec.stem.out, **{s.writes[i]: row.out for i, row in enumerate(child_spec.blocks)}}
    tensors = {t: _keep(torch.stack(norms).sum(0), widths[t]) for t, norms in writers.items()}
    expansion, squeeze = [], []
    for i, (block, row) in enumerate(zip(blocks, child_spec.blocks)):
        parts = _parts(block)
        if parts["expand"] is None:  # the depthwise conv reads the input tensor: its channels follow it
            expansion.append(tensors[s.reads[i]])
        else:
            expansion.append(_keep(_filter_norms(parts["expand"][0].weight), row.exp_size))
        if parts["se"] is not None:
            squeeze.append(_keep(_filter_norms(parts["se"].fc1.weight), make_divisible(row.exp_size // 4)))
        else:
            squeeze.append(None)
    return {"tensors": tensors, "expansion": expansion, "squeeze": squeeze}


def _take(tensor: torch.Tensor, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None = None) -> torch.Tensor:
    if out_idx is not None:
        tensor = tensor.index_select(0, out_idx)
    if in_idx is not None:
        tensor = tensor.index_select(1, in_idx)
    return tensor


def _copy_conv_bn(dst: nn.Module, src: nn.Module, out_idx, in_idx=None) -> None:
    """A ConvBNAct (conv, BN, act) from ``src`` into ``dst``: conv weight rows ``out_idx``,
    columns ``in_idx`` (None for depthwise, whose weight is [C, 1, k, k]), BN entries ``out_idx``."""
    dst[0].weight.copy_(_take(src[0].weight, out_idx, in_idx))
    bn_dst, bn_src = dst[1], src[1]
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn_dst, name).copy_(_take(getattr(bn_src, name), out_idx))
    bn_dst.num_batches_tracked.copy_(bn_src.num_batches_tracked)


@torch.no_grad()
def inherit_weights(parent: MobileNetV3, child_spec: ModelSpec) -> MobileNetV3:
    """The child model of ``child_spec`` (same classes, channels, dropout and strides as
    ``parent``, width 1.0) holding the parent's weights for the channels it keeps
    (:func:`channel_choice`). Raises SpecError when ``child_spec`` changes the structure, and
    ValueError when the parent was built at another width than 1.0 or the child is wider."""
    config = parent.config
    if config["width_mult"] != 1.0:
        raise ValueError(f"the search works at width 1.0 (the spec's numbers are the channels); the parent has width {config['width_mult']}")
    drop = config["drop_first_strides"]
    check_same_structure(parent.spec, child_spec, drop)
    child = MobileNetV3(child_spec, **{k: v for k, v in config.items() if k != "spec"}).to(next(parent.parameters()).device)
    child.train(parent.training)
    choice = channel_choice(parent, child_spec)
    s = structure(child_spec, drop)
    tensors = choice["tensors"]
    _copy_conv_bn(child.features[0], parent.features[0], tensors[0], None)  # every input colour is kept
    for i in range(len(child_spec.blocks)):
        src, dst = _parts(parent.features[1 + i]), _parts(child.features[1 + i])
        in_idx, exp_idx, out_idx = tensors[s.reads[i]], choice["expansion"][i], tensors[s.writes[i]]
        if src["expand"] is not None:
            _copy_conv_bn(dst["expand"], src["expand"], exp_idx, in_idx)
        _copy_conv_bn(dst["dw"], src["dw"], exp_idx, None)
        if src["se"] is not None:
            sq_idx = choice["squeeze"][i]
            dst["se"].fc1.weight.copy_(_take(src["se"].fc1.weight, sq_idx, exp_idx))
            dst["se"].fc1.bias.copy_(src["se"].fc1.bias[sq_idx])
            dst["se"].fc2.weight.copy_(_take(src["se"].fc2.weight, exp_idx, sq_idx))
            dst["se"].fc2.bias.copy_(src["se"].fc2.bias[exp_idx])
        _copy_conv_bn(dst["project"], src["project"], out_idx, exp_idx)
    last = tensors[s.writes[-1]]
    _copy_conv_bn(child.features[-1], parent.features[-1], None, last)
    child.classifier.load_state_dict(parent.classifier.state_dict())
    return child


@torch.no_grad()
def zero_cut_channels(parent: MobileNetV3, child_spec: ModelSpec) -> MobileNetV3:
    """Silence, in place, every parent channel the child of ``child_spec`` drops: the weights that
    READ a dropped channel are zeroed, so it no longer reaches the output. Then the parent computes
    exactly what the child of :func:`inherit_weights` computes (in eval mode). For tests; returns
    ``parent``."""
    drop = parent.config["drop_first_strides"]
    choice = channel_choice(parent, child_spec)
    s = structure(parent.spec, drop)

    def dropped(kept: torch.Tensor, total: int) -> torch.Tensor:
        mask = torch.ones(total, dtype=torch.bool)
        mask[kept] = False
        return mask.nonzero().flatten()

    for i in range(len(parent.spec.blocks)):
        parts = _parts(parent.features[1 + i])
        gone_exp = dropped(choice["expansion"][i], parts["dw"][0].weight.shape[0])
        if parts["expand"] is not None:
            expand = parts["expand"][0].weight
            expand[:, dropped(choice["tensors"][s.reads[i]], expand.shape[1])] = 0
        parts["project"][0].weight[:, gone_exp] = 0
        if parts["se"] is not None:
            parts["se"].fc1.weight[:, gone_exp] = 0
            parts["se"].fc2.weight[:, dropped(choice["squeeze"][i], parts["se"].fc1.weight.shape[0])] = 0
    head = parent.features[-1][0]
    head.weight[:, dropped(choice["tensors"][s.writes[-1]], head.weight.shape[1])] = 0
    return parent
