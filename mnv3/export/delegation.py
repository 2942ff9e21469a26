"""Which ops of a lowered ExecuTorch program run in the XNNPACK delegate, and the check that
nothing touching the input runs outside it."""
from __future__ import annotations

from collections import Counter
from typing import Any

from .deps import DelegationError


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


def delegation_report(edge_program) -> dict[str, Any]:
    """Which ops of a lowered program run in a backend delegate and which do not.

    ``edge_program`` is an EdgeProgramManager (from ``to_edge_transform_and_lower``), an
    ExportedProgram or a GraphModule. Returns counts per op name: ``delegated_by_op`` (inside
    ``executorch_call_delegate``), ``non_delegated_by_op`` (everything else but ``getitem``), and
    ``non_delegated_compute``, the non-delegated ops that touch the input data: these run per image
    in ExecuTorch's portable kernels. ``fully_delegated`` is True when there are none.
    """
    program = edge_program.exported_program() if hasattr(edge_program, "exported_program") else edge_program
    gm = program.graph_module if hasattr(program, "graph_module") else program
    signature = getattr(program, "graph_signature", None)
    user_inputs = set(signature.user_inputs) if signature is not None else None
    tainted = _input_dependent(gm.graph, user_inputs)

    delegated: Counter = Counter()
    outside: Counter = Counter()
    compute: Counter = Counter()
    backends: list[str] = []
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = _op_name(node.target)
        if name == "executorch_call_delegate":
            lowered = getattr(gm, node.args[0].target)
            backends.append(getattr(lowered, "backend_id", type(lowered).__name__))
            inner = getattr(lowered, "original_module", None)
            if inner is not None:
                inner_gm = inner.graph_module if hasattr(inner, "graph_module") else inner
                delegated.update(
                    _op_name(n.target)
                    for n in inner_gm.graph.nodes
                    if n.op == "call_function" and _op_name(n.target) != "getitem"
                )
            continue
        if name == "getitem":
            continue
        outside[name] += 1
        if node in tainted:
            compute[name] += 1
    return {
        "delegates": len(backends),
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
