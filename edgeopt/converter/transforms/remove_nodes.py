"""``remove_nodes(op=Identity, op=CheckNumerics)``: bypass single-input pass-through nodes.

Consumers are rewired to the node's input; control edges are kept, and
pass-throughs that are part of cond/while plumbing are left alone.
"""

from __future__ import annotations

from typing import Any

from edgeopt.converter.transforms.graph import StepResult, copy_node, node_of, port_of, rebuild

CONTROL_FLOW_OPS = {
    "Switch",
    "RefSwitch",
    "Merge",
    "RefMerge",
    "Enter",
    "RefEnter",
    "Exit",
    "RefExit",
    "NextIteration",
    "RefNextIteration",
    "LoopCond",
    "ControlTrigger",
}
IDENTITY_OPS = ("Identity", "Snapshot", "StopGradient")
CHECK_NUMERICS_OPS = ("CheckNumerics", "CheckNumericsV2")


def _droppable(graph_def: Any, ops: tuple[str, ...], protected: set[str]) -> dict[str, tuple[str, list[str]]]:
    by_name = {n.name: n for n in graph_def.node}
    drop: dict[str, tuple[str, list[str]]] = {}
    for n in graph_def.node:
        if n.op not in ops or n.name in protected:
            continue
        data = [i for i in n.input if not i.startswith("^")]
        if len(data) != 1:
            continue
        src = by_name.get(node_of(data[0]))
        if src is None or src.op in CONTROL_FLOW_OPS:
            continue  # cond/while plumbing: leave it alone
        drop[n.name] = (data[0], [i for i in n.input if i.startswith("^")])
    return drop


def bypass(graph_def: Any, ops: tuple[str, ...], protected: set[str]) -> StepResult:
    """Remove the pass-through nodes of the given op types, wiring consumers to their input."""
    drop = _droppable(graph_def, ops, protected)

    def resolve(inp: str) -> tuple[str, list[str]]:
        ctrl: list[str] = []
        seen = set()
        while node_of(inp) in drop and port_of(inp) in (0, -1) and node_of(inp) not in seen:
            seen.add(node_of(inp))
            target, extra = drop[node_of(inp)]
            ctrl.extend(extra)
            inp = "^" + node_of(target) if inp.startswith("^") else target
        return inp, ctrl

    kept = []
    for n in graph_def.node:
        if n.name in drop:
            continue
        m = copy_node(n)
        data_inputs: list[str] = []
        ctrl_inputs: list[str] = []
        for inp in n.input:
            new, extra = resolve(inp)
            (ctrl_inputs if new.startswith("^") else data_inputs).append(new)
            ctrl_inputs.extend(extra)
        seen_ctrl = []
        for c in ctrl_inputs:
            if c not in seen_ctrl and c[1:] not in {node_of(d) for d in data_inputs}:
                seen_ctrl.append(c)
        del m.input[:]
        m.input.extend(data_inputs + seen_ctrl)
        kept.append(m)
    return StepResult(rebuild(graph_def, kept), len(drop))


def remove_identity(graph_def: Any, protected: set[str]) -> StepResult:
    return bypass(graph_def, IDENTITY_OPS, protected)


def remove_check_numerics(graph_def: Any, protected: set[str]) -> StepResult:
    return bypass(graph_def, CHECK_NUMERICS_OPS, protected)


def remove_nodes(graph_def: Any, protected: set[str]) -> StepResult:
    """The guide's ``remove_nodes(op=Identity, op=CheckNumerics)`` in one step."""
    return bypass(graph_def, IDENTITY_OPS + CHECK_NUMERICS_OPS, protected)
