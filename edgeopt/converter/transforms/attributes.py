"""``add_default_attributes``: write every attr an op declares a default for into its NodeDef.

Graphs saved by older TensorFlow lack attrs added to ops since; the
importer fills them in memory, but transforms that read attrs (``data_format``,
``epsilon``, ``is_training``) and tools that read the file should see them.
"""

from __future__ import annotations

from typing import Any

from tensorflow.python.framework import op_def_registry

from edgeopt.converter.transforms.graph import StepResult, copy_node, rebuild


def add_default_attributes(graph_def: Any, protected: set[str]) -> StepResult:
    nodes = []
    changed = 0
    for n in graph_def.node:
        op_def = op_def_registry.get(n.op)
        missing = [a for a in op_def.attr if a.HasField("default_value") and a.name not in n.attr] if op_def else []
        if not missing:
            nodes.append(n)
            continue
        m = copy_node(n)
        for a in missing:
            m.attr[a.name].CopyFrom(a.default_value)
        nodes.append(m)
        changed += 1
    return StepResult(rebuild(graph_def, nodes), changed)
