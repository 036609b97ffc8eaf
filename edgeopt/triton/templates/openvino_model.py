"""Triton Python-backend model that serves OpenVINO IR with OpenVINO on the CPU (written by edgeopt).

The OpenVINO flavour of edgeopt's python backend (``target.backend: python``
with ``spec.openvino.enabled: true``): a CPU deployment on any Triton release,
even one without the openvino backend (the pytriton build has only the Python
backend).  It imports numpy and openvino, never TensorFlow.  How the model
runs (precision, static shapes per batch size) lives in ``_edgeopt_openvino``
and batching in ``_edgeopt_batching``, both published beside this file; the
settings come from config.pbtxt's ``parameters``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import _edgeopt_batching as batching
import _edgeopt_openvino as openvino_run
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One OpenVINO runner per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(version_dir, os.path.basename(params.get("openvino_file") or "model.xml"))
        static = [int(b) for b in (params.get("static_batch_sizes") or "").split(",") if b.strip()]
        self._runner = openvino_run.Runner(
            path, precision=params.get("inference_precision") or "auto", static_batches=static
        )
        self._max_batch = int(config.get("max_batch_size") or 0)
        self._inputs = [t["name"] for t in config["input"]]
        self._outputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]]
        missing = [n for n in self._inputs if n not in self._runner.inputs]
        if missing:
            raise RuntimeError(f"config inputs {missing} are not inputs of {path} (it takes {self._runner.inputs})")

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._runner.run(feed)
        return {name: values[name].astype(np_dtype, copy=False) for name, np_dtype in self._outputs}

    def execute(self, requests: list[Any]) -> list[Any]:
        return batching.execute(requests, self._inputs, self._run, max_batch=self._max_batch)

    def finalize(self) -> None:
        self._runner = None  # type: ignore[assignment]
