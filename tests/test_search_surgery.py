"""NetAdapt's spec surgery (mnv3.search.surgery): the child is the parent with channels removed,
exactly, and never another structure."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mnv3.model import MobileNetV3, build_model
from mnv3.search.surgery import (
    Proposal,
    apply_proposal,
    bottleneck_groups,
    channel_choice,
    inherit_weights,
    shrink_bottleneck,
    shrink_expansion,
    structure,
    zero_cut_channels,
)
from mnv3.spec import SpecError, estimate_parameters, load_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def trained_like(model: MobileNetV3, seed: int = 0) -> MobileNetV3:
    """A model whose channels all differ, like a trained one's: BatchNorm scales and shifts and the
    biases drawn at random, the classifier at unit gain, and the running statistics measured on
    random images (a fresh model's 1/0/0/1 would hide a misaligned copy of them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=g))
                module.momentum = None  # a cumulative average over the batches below
                module.reset_running_stats()
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                if module.bias is not None:
                    module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=g))
                if isinstance(module, torch.nn.Linear):
                    module.weight.copy_(torch.randn(module.weight.shape, generator=g) / module.in_features**0.5)
        model.train()
        for _ in range(3):
            model(torch.randn(16, model.config["in_channels"], 32, 32, generator=g))
    return model.eval()


def test_small_groups_are_the_papers():
    spec = load_spec("small")
    # The paper's {24}, {40}, {48}, {96}, and block 0's 16 at the paper's strides, a bottleneck
    # that no residual shares.
    assert bottleneck_groups(spec) == [(0,), (1, 2), (3, 4, 5), (6, 7), (8, 9, 10)]
    assert [spec.blocks[g[0]].out for g in bottleneck_groups(spec)] == [16, 24, 40, 48, 96]
    # Without the first two stride-2 layers block 0 adds its output to the stem's, which the stem
    # writes: that tensor is left alone.
    assert bottleneck_groups(spec, drop_first_strides=2) == bottleneck_groups(spec)[1:]
    assert structure(spec, 2).residual[0] and not structure(spec, 0).residual[0]


def test_large_groups_follow_its_residuals():
    spec = load_spec("large")
    groups = bottleneck_groups(spec)
    assert all(len({spec.blocks[i].out for i in g}) == 1 for g in groups)
    assert [spec.blocks[g[0]].out for g in groups] == [24, 40, 80, 112, 160]
    assert groups[0] == (1, 2)


@pytest.mark.parametrize("drop", [0, 2])
@pytest.mark.parametrize(
    "proposal",
    [Proposal("E", (3,), 48), Proposal("E", (9,), 320), Proposal("B", (3, 4, 5), 24), Proposal("B", (8, 9, 10), 64),
     Proposal("B", (1, 2), 16)],
    ids=str,
)
def test_child_equals_parent_with_cut_channels_zeroed(proposal, drop):
    parent = trained_like(build_model("small", num_classes=10, in_channels=3, drop_first_strides=drop))
    child_spec = apply_proposal(parent.spec, proposal, drop_first_strides=drop)
    child = inherit_weights(parent, child_spec).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = parent(x)
        zeroed = zero_cut_channels(parent, child_spec)(x)
        after = child(x)
    assert (before - zeroed).abs().max() > 1e-2 * before.abs().max(), "the cut removed nothing the output depended on"
    torch.testing.assert_close(after, zeroed, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in child.parameters()) == estimate_parameters(child_spec, num_classes=10, in_channels=3)


def test_the_kept_channels_are_those_of_largest_norm():
    parent = trained_like(build_model("small", num_classes=10, in_channels=3))
    expand = parent.features[4].block[0][0].weight  # block 3's expansion conv, 96 filters
    with torch.no_grad():
        expand[:40] *= 0.01  # the first 40 filters become the weakest
    choice = channel_choice(parent, shrink_expansion(parent.spec, 3, 56))
    assert choice["expansion"][3].tolist() == list(range(40, 96))


def test_successive_cuts_compose():
    parent = trained_like(build_model("small", num_classes=10, in_channels=3, drop_first_strides=2))
    spec = parent.spec
    model = parent
    for proposal in (Proposal("E", (4,), 200), Proposal("B", (6, 7), 32), Proposal("E", (6,), 96)):
        spec = apply_proposal(spec, proposal, drop_first_strides=2)
        model = inherit_weights(model, spec)
    assert [b.exp_size for b in spec.blocks][4:7] == [200, 240, 96]
    assert [b.out for b in spec.blocks][6:8] == [32, 32]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_proposal_never_changes_the_structure():
    spec = load_spec("small")
    with pytest.raises(SpecError, match="lose its expansion conv"):
        shrink_expansion(spec, 3, 24)  # block 3 reads 24 channels: exp_size 24 drops its expansion conv
    with pytest.raises(SpecError, match="gain its residual"):
        shrink_bottleneck(spec, (6, 7), 40)  # block 6 reads 40 channels at stride 1: out 40 adds a residual
    with pytest.raises(SpecError, match="multiple of 8"):
        shrink_expansion(spec, 4, 100)
    with pytest.raises(SpecError, match="does not shrink"):
        shrink_expansion(spec, 4, 240)
    with pytest.raises(SpecError, match="do not share one residual"):
        shrink_bottleneck(spec, (3, 4), 32)


def test_a_wider_or_restructured_child_is_refused():
    parent = build_model("small", num_classes=10, in_channels=3)
    wider = dataclasses.replace(parent.spec, blocks=(dataclasses.replace(parent.spec.blocks[0], kernel=5), *parent.spec.blocks[1:]))
    with pytest.raises(SpecError, match="kernel"):
        inherit_weights(parent, wider)
    with pytest.raises(ValueError, match="width 1.0"):
        inherit_weights(build_model("small", width_mult=0.75), parent.spec)
