"""Toy Triton models with no framework: y = x + c in Triton's Python backend, for serving tests and the bench.

A model whose answer says which version served it, that loads in a second
and needs nothing but numpy, so restarts, switches and 20-model replicas can
be exercised on a shared CPU.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

MODEL_PY = textwrap.dedent(
    """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for r in requests:
                x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", (x + {add}).astype(np.float32))]))
            return out
    """
)


def write_model(repo: Path, name: str, version: int, add: float, policy: list[int]) -> None:
    """A python-backend model (y = x + add) published as version ``version``; config.pbtxt last, as the publisher."""
    (repo / name / str(version)).mkdir(parents=True, exist_ok=True)
    (repo / name / str(version) / "model.py").write_text(MODEL_PY.format(add=add))
    versions = ", ".join(map(str, policy))
    config = f"""name: "{name}"
backend: "python"
max_batch_size: 8
input [{{ name: "x" data_type: TYPE_FP32 dims: [ 1 ] }}]
output [{{ name: "y" data_type: TYPE_FP32 dims: [ 1 ] }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
version_policy: {{ specific: {{ versions: [ {versions} ] }} }}
"""
    tmp = repo / name / "config.pbtxt.tmp"
    tmp.write_text(config)
    tmp.replace(repo / name / "config.pbtxt")
