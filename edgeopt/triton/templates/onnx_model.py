"""Triton Python-backend model that serves an ONNX file with ONNX Runtime (written by edgeopt).

The ONNX flavour of edgeopt's python backend (``target.backend: python`` with
``spec.onnx.enabled: true``): a CPU deployment on any Triton release, even one
without the onnxruntime backend (the pytriton build has only the Python
backend).  It imports numpy and onnxruntime, never TensorFlow, so the stub's
environment needs nothing of the converter's.

Batching is the SavedModel flavour's, from ``_edgeopt_batching`` (published
beside this file): with dynamic batching the requests Triton hands over
together are concatenated, run once and split back; requests that cannot be
merged run one by one, and a failing request gets its own error response.
Everything model-specific comes from config.pbtxt (``parameters { key:
"onnx_file" }``) and the ONNX file itself.
"""

from __future__ import annotations

import json
import os
from typing import Any

import _edgeopt_batching as batching
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

    def execute(self, requests: list[Any]) -> list[Any]:
        return batching.execute(requests, self._inputs, self._run, max_batch=self._max_batch)

    def finalize(self) -> None:
        self._session = None
