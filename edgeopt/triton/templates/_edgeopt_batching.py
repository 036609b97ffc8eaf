"""Request handling shared by edgeopt's Python-backend models (written by edgeopt).

Both flavours of ``model.py`` (TensorFlow SavedModel, ONNX Runtime) differ
only in how they run one feed; reading requests, merging them into one batch
and splitting the outputs back are the same, and live here once.

With dynamic batching Triton hands ``execute`` several requests at once, each
with its own batch dimension.  They are concatenated and run as one batch, and
every output is split back by each request's batch size.  When that is not
possible (different trailing shapes, or a model whose outputs do not keep the
batch dim) each request runs on its own, and a request that fails gets its own
error response without failing the others.

This file is published beside ``model.py`` in every version directory: the
Python backend stub appends the version directory to ``sys.path`` before it
imports ``model.py``, so ``import _edgeopt_batching`` finds this copy, the one
of the same version.  It imports only numpy and Triton's
``triton_python_backend_utils``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

#: Runs one feed (input name → array) and returns the outputs (output name → array).
Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def read(request: Any, inputs: Sequence[str]) -> dict[str, np.ndarray]:
    feed = {}
    for name in inputs:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise ValueError(f"input {name!r} is missing from the request")
        feed[name] = tensor.as_numpy()
    return feed


def response(outputs: dict[str, np.ndarray]) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in outputs.items()])


def execute_one(request: Any, inputs: Sequence[str], run: Run) -> Any:
    try:
        return response(run(read(request, inputs)))
    except Exception as exc:  # one bad request must not fail its neighbours
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))


def execute_merged(requests: Sequence[Any], inputs: Sequence[str], run: Run) -> list[Any] | None:
    """One model call for all requests, or None when they cannot be merged safely."""
    try:
        feeds = [read(r, inputs) for r in requests]
    except Exception:
        return None
    sizes = []
    for feed in feeds:
        batch = {v.shape[0] for v in feed.values() if v.ndim >= 1}
        if len(batch) != 1:
            return None
        sizes.append(batch.pop())
    merged = {}
    for name in inputs:
        parts = [f[name] for f in feeds]
        if len({p.shape[1:] for p in parts}) != 1:
            return None
        merged[name] = np.concatenate(parts, axis=0)
    try:
        result = run(merged)
    except Exception:
        return None  # let each request run alone and report its own error
    total = sum(sizes)
    if any(v.ndim == 0 or v.shape[0] != total for v in result.values()):
        return None
    responses, start = [], 0
    for size in sizes:
        responses.append(response({n: v[start : start + size] for n, v in result.items()}))
        start += size
    return responses


def execute(requests: Sequence[Any], inputs: Sequence[str], run: Run, *, max_batch: int) -> list[Any]:
    """Triton's ``execute``: merged when the model batches and that is safe, else one by one."""
    if max_batch > 0 and len(requests) > 1:
        merged = execute_merged(requests, inputs, run)
        if merged is not None:
            return merged
    return [execute_one(r, inputs, run) for r in requests]
