"""Triton Python-backend model that serves a TensorFlow SavedModel (written by edgeopt).

Triton releases after 25.02 have no TensorFlow backend, so a TF or TF-TRT
SavedModel is served from here: the Python backend stub runs this file with
TensorFlow in its environment.  Everything this file needs (tensor names,
dtypes, batching, the signature key) comes from the model's config.pbtxt, so
the file is the same for every model and every version.

Batching (merging the requests Triton hands over together, splitting the
answers back, one error response per failing request) is shared with the ONNX
flavour in ``_edgeopt_batching``.

This file and ``_edgeopt_batching.py`` are copied into each version directory;
they import only numpy, TensorFlow (inside ``initialize``) and Triton's
``triton_python_backend_utils``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import _edgeopt_batching as batching
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
        self._inputs = [t["name"] for t in config["input"]]
        self._outputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]]
        self._output_dims = {t["name"]: [int(d) for d in t["dims"]] for t in config["output"]}
        missing = [name for name in self._inputs if name not in self._specs]
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

    def execute(self, requests: list[Any]) -> list[Any]:
        return batching.execute(requests, self._inputs, self._run, max_batch=self._max_batch)

    def finalize(self) -> None:
        self._fn = None
        self._model = None
