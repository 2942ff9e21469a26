"""Which ops of a lowered ExecuTorch program run in the XNNPACK delegate (ExecuTorch's own count),
and the check ExecuTorch lacks: that nothing touching the input runs outside it."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

from .deps import DelegationError, import_delegation_info


def _op_name(target: Any) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return name.split(":")[0].strip("<> ").replace("EdgeOpOverload ", "")


def _input_dependent(graph, user_inputs: set[str] | None) -> set:
    """Nodes whose value depends on a user input (placeholders not in the signature's params,
    buffers and constants). Ops outside the delegate that depend on no input only prepare
    constants (e.g. a scalar's dtype copy) and cost nothing per image."""
    tainted: set = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            if user_inputs is None or node.name in user_inputs:
                tainted.add(node)
        elif any(arg in tainted for arg in node.all_input_nodes):
            tainted.add(node)
    return tainted


def _op_type(node_name: str) -> str:
    # get_delegation_info's grouping: a node's name less its "_<n>" de-duplication suffix.
    return re.sub(r"_\d+$", "", node_name)


def _lowered_modules(gm) -> list:
    return [getattr(gm, node.args[0].target) for node in gm.graph.nodes
            if node.op == "call_function" and _op_name(node.target) == "executorch_call_delegate"]  # fmt: skip


def _op_names(graphs) -> dict[str, str]:
    """get_delegation_info names ops after graph nodes ("aten_convolution_default"); parity.json has
    always named them by their op ("aten.convolution.default"), and the committed reports must read
    the same, so each node-name group is mapped back to its op."""
    names: dict[str, str] = {}
    for graph in graphs:
        for node in graph.nodes:
            if node.op == "call_function":
                names.setdefault(_op_type(node.name), _op_name(node.target))
    return names


def delegation_report(edge_program) -> dict[str, Any]:
    """Which ops of a lowered program run in a backend delegate and which do not.

    ``edge_program`` is an EdgeProgramManager (from ``to_edge_transform_and_lower``), an
    ExportedProgram or a GraphModule. The counts are ExecuTorch's own
    (``executorch.devtools.backend_debug.get_delegation_info``), keyed by op name
    ("aten.convolution.default") and without the ``getitem`` bookkeeping nodes:
    ``delegated_by_op`` (ops inside the delegates, ``delegated_ops`` their total),
    ``non_delegated_by_op`` (``non_delegated_ops``), ``delegates`` (delegated subgraphs) and
    ``backends`` (their backend ids, sorted). What ExecuTorch does not say is added here:
    ``non_delegated_compute``, the non-delegated ops that touch the input data (these run per
    image in ExecuTorch's portable kernels), and ``fully_delegated``, True when there are none and
    something was delegated. Raises MissingDependencyError when executorch is not installed.
    """
    program = edge_program.exported_program() if hasattr(edge_program, "exported_program") else edge_program
    gm = program.graph_module if hasattr(program, "graph_module") else program
    signature = getattr(program, "graph_signature", None)
    user_inputs = set(signature.user_inputs) if signature is not None else None
    tainted = _input_dependent(gm.graph, user_inputs)

    info = import_delegation_info()(gm)
    lowered = _lowered_modules(gm)
    names = _op_names([gm.graph] + [m.original_module.graph for m in lowered])
    delegated: dict[str, int] = {}
    outside: dict[str, int] = {}
    for op_type, breakdown in info.delegation_by_operator.items():
        name = names.get(op_type, op_type)
        if name == "getitem":
            continue
        for counts, n in ((delegated, breakdown.delegated), (outside, breakdown.non_delegated)):
            if n:
                counts[name] = counts.get(name, 0) + n
    compute: Counter = Counter(
        _op_name(node.target) for node in gm.graph.nodes
        if node.op == "call_function" and node in tainted
        and _op_name(node.target) not in ("getitem", "executorch_call_delegate")
    )  # fmt: skip
    backends = [getattr(m, "backend_id", type(m).__name__) for m in lowered]
    return {
        "delegates": info.num_delegated_subgraphs,
        "backends": sorted(set(backends)),
        "delegated_ops": sum(delegated.values()),
        "delegated_by_op": dict(sorted(delegated.items())),
        "non_delegated_ops": sum(outside.values()),
        "non_delegated_by_op": dict(sorted(outside.items())),
        "non_delegated_compute": dict(sorted(compute.items())),
        "fully_delegated": bool(backends) and not compute,
    }


def check_delegation(report: dict[str, Any], *, what: str = "the program") -> None:
    """Raise DelegationError unless every op that touches the input data is in the delegate."""
    compute = report["non_delegated_compute"]
    if report["fully_delegated"]:
        return
    convs = [op for op in compute if "conv" in op]
    detail = ", ".join(f"{op} x{n}" for op, n in compute.items()) or "nothing was delegated"
    raise DelegationError(
        f"{what} is not fully delegated to XNNPACK: {'convolutions stay outside the delegate; ' if convs else ''}"
        f"ops outside: {detail}. They would run in ExecuTorch's slow portable kernels. Check the "
        "model for ops XNNPACK cannot take (or pass require_full_delegation=False / --allow-undelegated)."
    )
