"""The paper's search, the part of it one machine can do: NetAdapt over our JSON specs.

Section 4 of Howard et al. 2019 finds MobileNetV3's blocks with platform-aware NAS (MnasNet's
controller, far beyond one machine), then tunes each layer's width with NetAdapt (Yang et al. 2018)
against latency measured on a phone's CPU. This package does the second part for real, on our
specs, with ExecuTorch latency on this machine's CPU standing in for the phone's:

* :mod:`~mnv3.search.surgery`: NetAdapt's proposals as plain functions on a spec, and weight
  inheritance (largest-norm channels kept) from a built model;
* :mod:`~mnv3.search.latency`: measuring a spec on ExecuTorch, and a cheap latency model fitted on
  those measurements; :mod:`~mnv3.search.validation` checks it on held-out specs;
* :mod:`~mnv3.search.proxy`: a proposal's proxy accuracy (BatchNorm re-estimated, a short
  fine-tune, a fixed validation slice; never the test set);
* :mod:`~mnv3.search.netadapt`: the search loop, its log and resume, and the spec it writes;
* :mod:`~mnv3.search.compare`: the searched spec against the width multipliers, trained from
  scratch with several seeds, at equal measured latency;
* :mod:`~mnv3.search.results`: the files above read back for notebook 08;
* :mod:`~mnv3.search.cli`: ``python -m mnv3.search`` (``run``, ``latency``, ``compare``).
"""
from .cli import main, parse_target
from .compare import CompareConfig, compare, frontier_gap, spec_at_width
from .latency import LatencyModel, LatencyStore, ProgramCache, Setting, features, latency_key, random_specs, time_programs
from .netadapt import SearchConfig, SearchError, make_proposals, read_log, run_search
from .proxy import ProxyConfig, proxy_accuracy
from .surgery import (
    Proposal,
    apply_proposal,
    bottleneck_groups,
    inherit_weights,
    shrink_bottleneck,
    shrink_expansion,
    structure,
    zero_cut_channels,
)
from .validation import validate, validate_latency

__all__ = [
    "main", "parse_target", "CompareConfig", "compare", "frontier_gap", "spec_at_width", "LatencyModel", "LatencyStore",
    "ProgramCache", "Setting", "features", "latency_key", "random_specs", "time_programs", "SearchConfig", "SearchError",
    "make_proposals", "read_log", "run_search", "ProxyConfig", "proxy_accuracy", "Proposal", "apply_proposal",
    "bottleneck_groups", "inherit_weights", "shrink_bottleneck", "shrink_expansion", "structure", "zero_cut_channels",
    "validate", "validate_latency",
]  # fmt: skip
