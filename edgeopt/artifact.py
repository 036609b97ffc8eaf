"""What the converter hands to the publisher, and the summary the operator reads.

The converter produces a SavedModel plus the signature it really has (names,
Triton dtypes, shapes with -1 for the batch); the publisher turns that into a
Triton model version and config.pbtxt.  The termination-message summary is the
only thing the operator learns about a conversion, so its keys are fixed here.
Standard library only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Kubernetes truncates termination messages at 4096 bytes.
TERMINATION_MESSAGE_LIMIT = 4096
TERMINATION_LOG_ENV = "EDGEOPT_TERMINATION_LOG"
#: Versions Triton is serving, set by the operator on the converter Job (comma list);
#: the publisher never prunes them.
SERVING_VERSIONS_ENV = "EDGEOPT_SERVING_VERSIONS"
#: Versions in the resource's status.history (rollback targets), set by the operator; never pruned.
KEPT_VERSIONS_ENV = "EDGEOPT_KEPT_VERSIONS"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
#: The optimized frozen GraphDef, beside the SavedModel in every version and ``--output`` (guide step 5.2).
OPTIMIZED_GRAPH_FILE = "optimized_graph.pb"


@dataclass
class TensorInfo:
    name: str  # the name Triton clients use (signature key for SavedModels)
    dtype: str  # Triton dtype: FP32, INT64, ...
    shape: list[int]  # full shape, -1 for unknown dims; shape[0] is the batch when batched


@dataclass
class Artifact:
    """A converted model, ready to publish."""

    #: The artefact: a SavedModel directory, or for ``model_format`` onnx/plan the model.onnx/model.plan file.
    savedmodel_dir: Path
    signature_key: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    trt_applied: bool = False
    precision: str | None = None
    gpu: bool = False
    report: dict[str, Any] = field(default_factory=dict)
    warmup_inputs: dict[str, Any] = field(default_factory=dict)  # name -> numpy array, optional
    model_format: str = "savedmodel"  # savedmodel | onnx | plan

    @property
    def work_dir(self) -> Path:
        """The converter's scratch dir holding the artefact, report.json and signature.json."""
        return self.savedmodel_dir.parent

    def signature_dict(self) -> dict[str, Any]:
        return {
            "signature_key": self.signature_key,
            "inputs": [asdict(t) for t in self.inputs],
            "outputs": [asdict(t) for t in self.outputs],
        }


@dataclass
class Summary:
    """The converter's last word, written to the termination-message path.

    ``reason`` is a CamelCase condition reason (``Published``, ``InvalidInput``,
    ``TensorRTUnavailable``...); ``message`` is the one-paragraph explanation.
    """

    ok: bool
    reason: str
    message: str
    model: str | None = None
    version: int | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        data["report"] = {}
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        while len(text.encode()) > TERMINATION_MESSAGE_LIMIT and data["message"]:
            data["message"] = data["message"][: max(0, len(data["message"]) - 256)] + "…"
            text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        return text

    @classmethod
    def from_json(cls, text: str) -> Summary:
        data = json.loads(text)
        return cls(
            ok=bool(data.get("ok")),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            model=data.get("model"),
            version=data.get("version"),
            report=dict(data.get("report") or {}),
        )


def termination_log_path(explicit: str | None = None) -> Path | None:
    """Where to write the summary: a flag, the env, or /dev/termination-log if writable."""
    path = explicit or os.environ.get(TERMINATION_LOG_ENV)
    if path:
        return Path(path)
    default = Path(DEFAULT_TERMINATION_LOG)
    if default.exists() and os.access(default, os.W_OK):
        return default
    return None


def write_summary(summary: Summary, path: Path | None) -> None:
    if path is None:
        return
    try:
        path.write_text(summary.to_json())
    except OSError:
        pass  # the summary is a convenience for the operator; the exit code still tells
