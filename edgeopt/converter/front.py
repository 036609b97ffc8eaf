"""The front stages both paths share: load → freeze → optimize, timed in the StageLog.

``pipeline`` (the SavedModel / TF-TRT path) and ``onnx_pipeline`` (the TF →
ONNX path) differ only after the optimized frozen graph exists; what comes
before is written once here, with one set of bookkeeping: the op counts as
loaded, before and after the transforms, and what each transform changed.
The ONNX path freezes ``for_onnx`` (functional control flow kept, XLA calls
inlined: see ``freeze``).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.converter.stages import StageLog
from edgeopt.spec import OptimizedModel


@dataclass
class Front:
    """What the front stages found: the op counts (loaded, before, after) and the transforms' record."""

    ops: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)


def load(model: OptimizedModel, log: StageLog, front: Front) -> Any:
    """The ``load`` stage: the LoadedModel (the caller closes it); its op count goes to ``front.ops``."""
    from edgeopt.converter import load as load_stage
    from edgeopt.converter.graph_model import op_counts

    with log.stage("load") as rec:
        loaded = load_stage.load_model(model)
        front.ops["loaded"] = op_counts(loaded.graph_def)
        loaded.graph_def = None  # only needed for the count; big models hold their weights in it
        rec.details["ops"] = front.ops["loaded"]["total"]
        if loaded.constants:
            rec.details["constants"] = loaded.constants
    return loaded


def freeze_optimize(
    loaded: Any, transforms: list[str], log: StageLog, front: Front, *, for_onnx: bool, keep: Path | None = None
) -> Any:
    """The ``freeze`` and ``optimize`` stages: the optimized FrozenModel (``keep``: its GraphDef written there)."""
    from edgeopt.converter import freeze, optimize
    from edgeopt.converter.graph_model import op_counts

    with log.stage("freeze") as rec:
        frozen = freeze.freeze(loaded, for_onnx=for_onnx)
        front.ops["before"] = op_counts(frozen.graph_def)
        rec.details["ops"] = front.ops["before"]["total"]
    with log.stage("optimize") as rec:
        optimized, front.steps = optimize.optimize(frozen, transforms)
        del frozen  # every GraphDef copy holds all the weights
        gc.collect()
        front.ops["after"] = op_counts(optimized.graph_def)
        rec.details["ops"] = front.ops["after"]["total"]
        if keep is not None:
            keep.write_bytes(optimized.graph_def.SerializeToString())
    return optimized
