"""``strip_unused_nodes`` and ``sort_by_execution_order``: what the graph keeps, and in which order."""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Any

from edgeopt.converter.transforms.graph import StepResult, copy_node, node_of, reachable, rebuild


def _constant_like(graph_def: Any) -> set[str]:
    """Consts, and Identity/Dequantize of them (quantize_weights turns a weight into Dequantize(Const))."""
    const = {n.name for n in graph_def.node if n.op == "Const"}
    changed = True
    while changed:
        changed = False
        for n in graph_def.node:
            fed_by_consts = bool(n.input) and all(node_of(i) in const for i in n.input)
            if n.name not in const and n.op in ("Identity", "Dequantize") and fed_by_consts:
                const.add(n.name)
                changed = True
    return const


def _dead_noops(graph_def: Any, protected: set[str]) -> set[str]:
    """NoOps that only wait on constants (frozen variable reads) guard nothing any more."""
    by_name = {n.name: n for n in graph_def.node}
    const = _constant_like(graph_def)
    dead: set[str] = set()
    changed = True
    while changed:
        changed = False
        for n in graph_def.node:
            if (
                n.op == "NoOp"
                and n.name not in dead
                and n.name not in protected
                and all(by_name.get(node_of(i)) is None or node_of(i) in const or node_of(i) in dead for i in n.input)
            ):
                dead.add(n.name)
                changed = True
    return dead


def strip_unused_nodes(graph_def: Any, protected: set[str]) -> StepResult:
    """Keep only what the outputs need (plus the input placeholders, which make the signature)."""
    total = len(graph_def.node)
    dead = _dead_noops(graph_def, protected)
    nodes = []
    for n in graph_def.node:
        if n.name in dead:
            continue
        m = copy_node(n)
        del m.input[:]
        m.input.extend(i for i in n.input if not (i.startswith("^") and node_of(i) in dead))
        nodes.append(m)
    graph_def = rebuild(graph_def, nodes)
    keep = reachable(graph_def, protected)
    kept = [n for n in graph_def.node if n.name in keep]
    return StepResult(rebuild(graph_def, kept), total - len(kept))


def sort_by_execution_order(graph_def: Any, protected: set[str]) -> StepResult:
    """Topological order (stable): every node after its inputs. Loops keep their original order."""
    by_name = {n.name: n for n in graph_def.node}
    index = {n.name: k for k, n in enumerate(graph_def.node)}
    pending = {
        n.name: {node_of(i) for i in n.input if node_of(i) in by_name and by_name[node_of(i)].op != "NextIteration"}
        for n in graph_def.node
    }
    users: dict[str, list[str]] = defaultdict(list)
    for name, deps in pending.items():
        for d in deps:
            users[d].append(name)
    ready = [(index[n], n) for n, deps in pending.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for u in users[name]:
            pending[u].discard(name)
            if not pending[u]:
                heapq.heappush(ready, (index[u], u))
    placed = set(order)
    order.extend(n.name for n in graph_def.node if n.name not in placed)
    moved = sum(1 for k, name in enumerate(order) if index[name] != k)
    return StepResult(rebuild(graph_def, [by_name[n] for n in order]), moved)
