"""Triton Python-backend model that serves a TensorFlow SavedModel (written by edgeopt).

Triton releases after 25.02 have no TensorFlow backend, so a TF or TF-TRT
SavedModel is served from here: the Python backend stub runs this file with
TensorFlow in its environment.  Everything this file needs (tensor names,
dtypes, batching, the signature key) comes from the model's config.pbtxt, so
the file is the same for every model and every version.

Batching: with dynamic batching Triton hands ``execute`` several requests at
once, each with its own batch dimension.  They are concatenated and run as one
batch, and every output is split back by each request's batch size.  When that
is not possible (different trailing shapes, or a model whose outputs do not
keep the batch dim) each request runs on its own, and a request that fails gets
its own error response without failing the others.

This file is copied into each version directory; it imports only numpy and
TensorFlow (inside ``initialize``) and Triton's ``triton_python_backend_utils``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _fit(array: np.ndarray, spec: Any) -> np.ndarray:
    """Reshape ``array`` to the signature's rank when Triton's [1]-for-scalar convention differs."""
    if spec.shape.rank is None or array.ndim == spec.shape.rank:
        return array
    wanted = [-1 if d is None else int(d) for d in spec.shape.as_list()]
    if wanted.count(-1) <= 1:
        return array.reshape(wanted)
    return array


class TritonPythonModel:
    """Loads the SavedModel once per model instance and runs its signature."""

    def initialize(self, args: dict[str, str]) -> None:
        # Each model instance is its own stub process, so the environment set here is this instance's.
        if args.get("model_instance_kind") == "GPU":
            # Pin TensorFlow to the GPU Triton gave this instance, and share it with other models.
            os.environ["CUDA_VISIBLE_DEVICES"] = str(args.get("model_instance_device_id", "0"))
            os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        self._tf = tf
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(version_dir, params.get("savedmodel_dir") or "model.savedmodel")
        key = params.get("signature_key") or "serving_default"
        self._model = tf.saved_model.load(path)
        if key not in self._model.signatures:
            raise RuntimeError(
                f"{path}: no signature {key!r}; it has {', '.join(sorted(self._model.signatures)) or 'none'}"
            )
        self._fn = self._model.signatures[key]
        self._specs = dict(self._fn.structured_input_signature[1])
        self._max_batch = int(config.get("max_batch_size") or 0)
        self._inputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["input"]]
        self._outputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]]
        self._output_dims = {t["name"]: [int(d) for d in t["dims"]] for t in config["output"]}
        missing = [name for name, _ in self._inputs if name not in self._specs]
        if missing:
            raise RuntimeError(f"config inputs {missing} are not in signature {key!r} (it takes {sorted(self._specs)})")

    # ------------------------------------------------------------------ running

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = self._tf
        args = {
            name: tf.convert_to_tensor(_fit(value, self._specs[name]), dtype=self._specs[name].dtype)
            for name, value in feed.items()
        }
        result = self._fn(**args)
        out: dict[str, np.ndarray] = {}
        for name, np_dtype in self._outputs:
            if name not in result:
                raise KeyError(f"the signature has no output {name!r}; it has {sorted(result)}")
            value = self._to_config_shape(name, result[name].numpy())
            out[name] = value.astype(np.object_) if np_dtype is np.object_ else value.astype(np_dtype, copy=False)
        return out

    def _to_config_shape(self, name: str, value: np.ndarray) -> np.ndarray:
        """A scalar signature output is declared as dims [1] (Triton has no scalars without batching)."""
        dims = self._output_dims[name]
        if self._max_batch == 0 and value.ndim != len(dims) and -1 not in dims and value.size == int(np.prod(dims)):
            return value.reshape(dims)
        return value

    def _read(self, request: Any) -> dict[str, np.ndarray]:
        feed = {}
        for name, _ in self._inputs:
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
        """One TF call for all requests, or None when they cannot be merged safely."""
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
        for name, _ in self._inputs:
            parts = [f[name] for f in feeds]
            if len({p.shape[1:] for p in parts}) != 1:
                return None
            merged[name] = np.concatenate(parts, axis=0)
        try:
            result = self._run(merged)
        except Exception:
            return None  # let each request run alone and report its own error
        total = sum(sizes)
        if any(v.ndim == 0 or v.shape[0] != total for v in result.values()):
            return None
        responses = []
        start = 0
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
        self._fn = None
        self._model = None
