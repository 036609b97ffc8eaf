"""The pure half of TF-TRT: conversion parameters, engine shapes and calibration feeding.

These decide *what* TrtGraphConverterV2 is asked to do.  They need neither
TensorFlow nor a GPU, so they are unit-tested on every machine, while
``tftrt.py`` (which does need TensorRT) only runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifact import TensorInfo
from edgeopt.converter import feeds
from edgeopt.errors import ConversionError, InputError
from edgeopt.spec import TensorRT, resolve_uri

TRT_UNAVAILABLE_HINT = (
    "this TensorFlow was not built with TensorRT, so TF-TRT cannot run here: run the GPU converter image "
    "(the NVIDIA TensorFlow container with TF-TRT), or set spec.tensorrt.enabled: false to publish the "
    "frozen and optimized model without TensorRT"
)


def conversion_params(trt: TensorRT) -> dict[str, Any]:
    """Keyword arguments for ``TrtGraphConverterV2`` (besides the SavedModel dir and signature).

    Dynamic-shape mode with a "Range" profile is used so one engine serves every
    batch size from 1 to ``maxBatchSize`` (implicit batch mode is deprecated in
    TensorRT 8+ and cannot handle unknown non-batch dimensions).
    """
    return {
        "precision_mode": trt.precision,
        "minimum_segment_size": trt.minimum_segment_size,
        "maximum_cached_engines": trt.maximum_cached_engines,
        "max_workspace_size_bytes": trt.max_workspace_size_bytes,
        "use_calibration": trt.precision == "INT8",
        "use_dynamic_shape": True,
        "dynamic_shape_profile_strategy": "Range",
        "allow_build_at_runtime": True,
    }


def engine_shapes(inputs: Sequence[TensorInfo], max_batch_size: int) -> list[dict[str, tuple[int, ...]]]:
    """The input shapes to build engines for ahead of time.

    With the Range profile, building for batch 1 and batch ``max_batch_size``
    gives one profile spanning both.  A fixed batch dimension gives one shape.
    Unknown non-batch dimensions cannot be planned: the spec must declare them.
    """
    unknown = [t.name for t in inputs if t.shape is None or any(d < 0 for d in t.shape[1:])]
    if unknown:
        raise ConversionError(
            f"cannot build TensorRT engines ahead: input(s) {', '.join(unknown)} have unknown non-batch "
            "dimensions; declare full shapes in spec.source.inputs (only the first dimension may be -1), "
            "or set spec.tensorrt.buildEngines: false to build at the first request"
        )
    batches = [1, max_batch_size] if max_batch_size > 1 else [1]
    plans: list[dict[str, tuple[int, ...]]] = []
    for b in batches:
        plan = {t.name: tuple(b if (i == 0 and d < 0) else d for i, d in enumerate(t.shape or [])) for t in inputs}
        if plan not in plans:
            plans.append(plan)
    return plans


def calibration_arrays(
    trt: TensorRT, inputs: Sequence[TensorInfo], *, seed: int = 0
) -> tuple[dict[str, np.ndarray], str]:
    """INT8 calibration samples and where they came from ("file:<path>" or "synthetic").

    Synthetic data is used only when the spec opts in explicitly; the report says so.
    """
    cal = trt.calibration
    if cal is None or (not cal.uri and not cal.synthetic):
        raise InputError(
            "INT8 needs calibration data: set spec.tensorrt.calibration.uri to a .npy/.npz file, or opt in to "
            "random data with spec.tensorrt.calibration.synthetic: true"
        )
    if cal.uri:
        path: Path = resolve_uri(cal.uri)
        arrays = feeds.take_samples(feeds.load_sample_file(path, inputs), cal.samples)
        return arrays, f"file:{path}"
    return feeds.random_inputs(inputs, batch=cal.samples, seed=seed), "synthetic"


def calibration_batches(
    arrays: dict[str, np.ndarray], inputs: Sequence[TensorInfo], max_batch_size: int
) -> list[tuple[np.ndarray, ...]]:
    """Calibration feeds as positional tuples in input order, batches no larger than ``max_batch_size``."""
    return [tuple(batch[t.name] for t in inputs) for batch in feeds.split_batches(arrays, max_batch_size)]
