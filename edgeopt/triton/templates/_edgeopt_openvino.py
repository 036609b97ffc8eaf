"""OpenVINO on the CPU for edgeopt's OpenVINO models (written by edgeopt).

One source for how an OpenVINO IR version runs: the python backend's
``model.py`` (published beside this file), the converter's validation and the
bench all load this module, so what was validated is what Triton runs.

- Precision: ``auto`` leaves it to OpenVINO (bf16 on CPUs with AVX512-BF16 or
  AMX, f32 elsewhere); ``f32`` sets ``INFERENCE_PRECISION_HINT`` for true FP32.
- Shapes: OpenVINO's CPU plugin runs a static-shape model faster than a
  dynamic one, so each batch size in ``static_batches`` (1 and the largest
  batch, which the Triton warmup also sends) gets a model reshaped to it and
  compiled once; other sizes run on the dynamic model.
- One stream, the latency hint: a Triton instance runs one request at a time.

It imports only numpy and openvino.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import openvino as ov

PRECISIONS = ("auto", "f32")


def compile_config(precision: str, threads: int = 0) -> dict[str, Any]:
    """The CPU plugin settings of every compiled model."""
    if precision not in PRECISIONS:
        raise ValueError(f"inference precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    if precision == "f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return config


class Runner:
    """Runs one OpenVINO IR file: name → array in, name → array out."""

    def __init__(
        self, path: str, *, precision: str = "auto", threads: int = 0, static_batches: Iterable[int] = ()
    ) -> None:
        self.core = ov.Core()
        self.model = self.core.read_model(path)
        self.config = compile_config(precision, threads)
        self.inputs = [i.get_any_name() for i in self.model.inputs]
        self.outputs = [o.get_any_name() for o in self.model.outputs]
        self.static_batches = frozenset(int(b) for b in static_batches if int(b) > 0)
        self._requests: dict[Any, Any] = {}

    def _request(self, feed: dict[str, np.ndarray]) -> Any:
        batches = {v.shape[0] for v in feed.values() if v.ndim >= 1}
        static = len(batches) == 1 and next(iter(batches)) in self.static_batches
        key = tuple(sorted((k, v.shape) for k, v in feed.items())) if static else None
        request = self._requests.get(key)
        if request is None:
            model = self.model
            if static:
                model = self.model.clone()
                model.reshape({name: ov.PartialShape(list(feed[name].shape)) for name in self.inputs})
            request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            self._requests[key] = request
        return request

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.inputs if n not in feed]
        if missing:
            raise ValueError(f"inputs {missing} are missing (the model takes {self.inputs})")
        request = self._request(feed)
        values = request.infer({n: np.ascontiguousarray(feed[n]) for n in self.inputs}).to_tuple()
        return {name: np.asarray(v) for name, v in zip(self.outputs, values, strict=True)}

    def runtime_precision(self) -> str:
        """What the CPU plugin really computes in (``bf16``, ``f32``...), from a compiled model."""
        compiled = self.core.compile_model(self.model, "CPU", self.config)
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
        return str(value.to_string() if hasattr(value, "to_string") else value)
