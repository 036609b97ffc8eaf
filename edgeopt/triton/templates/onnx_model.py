"""Triton Python-backend model that serves an ONNX file with ONNX Runtime (written by edgeopt).

The ONNX flavour of edgeopt's python backend (``target.backend: python`` with
``spec.onnx.enabled: true``): a CPU deployment on any Triton release, even one
without the onnxruntime backend (the pytriton build has only the Python
backend).  It imports numpy and onnxruntime, never TensorFlow, so the stub's
environment needs nothing of the converter's.

Batching works as in the SavedModel flavour: with dynamic batching the
requests Triton hands over together are concatenated, run once and split
back; requests that cannot be merged run one by one, and a failing request
gets its own error response.  Everything model-specific comes from
config.pbtxt (``parameters { key: "onnx_file" }``) and the ONNX file itself.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

#: ONNX Runtime's input type strings → numpy dtypes (what a TensorFlow signature can produce).
ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class TritonPythonModel:
    """One ONNX Runtime session per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(version_dir, os.path.basename(params.get("onnx_file") or "model.onnx"))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            device = {"device_id": int(args.get("model_instance_device_id", "0"))}
            providers = [("CUDAExecutionProvider", device), "CPUExecutionProvider"]  # type: ignore[list-item]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._session = ort.InferenceSession(path, options, providers=providers)
        self._ranks = {i.name: len(i.shape) for i in self._session.get_inputs()}
        self._types = {i.name: ORT_TYPES.get(i.type, np.float32) for i in self._session.get_inputs()}
        self._max_batch = int(config.get("max_batch_size") or 0)
        self._inputs = [t["name"] for t in config["input"]]
        self._outputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]]
        self._output_dims = {t["name"]: [int(d) for d in t["dims"]] for t in config["output"]}
        missing = [n for n in self._inputs if n not in self._ranks]
        if missing:
            raise RuntimeError(f"config inputs {missing} are not inputs of {path} (it takes {sorted(self._ranks)})")

    # ------------------------------------------------------------------ running

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = {}
        for name, value in feed.items():
            if value.ndim != self._ranks[name] and value.size == 1 and self._ranks[name] == 0:
                value = value.reshape(())  # Triton's [1] for a scalar input
            args[name] = value if self._types[name] is np.object_ else value.astype(self._types[name], copy=False)
        names = [n for n, _ in self._outputs]
        values = self._session.run(names, args)
        out = {}
        for (name, np_dtype), value in zip(self._outputs, values, strict=True):
            value = np.asarray(value)
            dims = self._output_dims[name]
            if self._max_batch == 0 and value.ndim != len(dims) and value.size == int(np.prod(dims)):
                value = value.reshape(dims)
            out[name] = value.astype(np.object_) if np_dtype is np.object_ else value.astype(np_dtype, copy=False)
        return out

    def _read(self, request: Any) -> dict[str, np.ndarray]:
        feed = {}
        for name in self._inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name!r} is missing from the request")
            feed[name] = tensor.as_numpy()
        return feed

    @staticmethod
    def _response(outputs: dict[str, np.ndarray]) -> Any:
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in outputs.items()])

    def _execute_one(self, request: Any) -> Any:
        try:
            return self._response(self._run(self._read(request)))
        except Exception as exc:  # one bad request must not fail its neighbours
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))

    def _execute_merged(self, requests: list[Any]) -> list[Any] | None:
        """One ORT call for all requests, or None when they cannot be merged safely."""
        try:
            feeds = [self._read(r) for r in requests]
        except Exception:
            return None
        sizes = []
        for feed in feeds:
            batch = {v.shape[0] for v in feed.values() if v.ndim >= 1}
            if len(batch) != 1:
                return None
            sizes.append(batch.pop())
        merged = {}
        for name in self._inputs:
            parts = [f[name] for f in feeds]
            if len({p.shape[1:] for p in parts}) != 1:
                return None
            merged[name] = np.concatenate(parts, axis=0)
        try:
            result = self._run(merged)
        except Exception:
            return None
        total = sum(sizes)
        if any(v.ndim == 0 or v.shape[0] != total for v in result.values()):
            return None
        responses, start = [], 0
        for size in sizes:
            responses.append(self._response({n: v[start : start + size] for n, v in result.items()}))
            start += size
        return responses

    def execute(self, requests: list[Any]) -> list[Any]:
        if self._max_batch > 0 and len(requests) > 1:
            merged = self._execute_merged(requests)
            if merged is not None:
                return merged
        return [self._execute_one(r) for r in requests]

    def finalize(self) -> None:
        self._session = None
