"""Stage 7 — report: everything measured, and the compact summary the operator shows.

``report.json`` (next to the published model) keeps the whole story: per
stage wall time and peak RSS, op counts by type before and after, what each
transform changed, TRT engines and segments, validation errors, latencies,
versions and the GPU.  The compact summary (a handful of numbers) is what
fits the 4 KiB termination message and the resource's status.
"""

from __future__ import annotations

import platform
from typing import Any

from edgeopt.converter.stages import StageRecord, process_peak_rss_mib

#: The keys of the compact summary (agreed with the operator, see the brief).
COMPACT_KEYS = (
    "opsBefore",
    "opsAfter",
    "trtEngines",
    "precision",
    "maxAbsError",
    "maxRelError",
    "latencyMsBefore",
    "latencyMsAfter",
    "conversionSeconds",
    "tensorflow",
    "tensorrt",
    "gpu",
)


def environment() -> dict[str, Any]:
    import tensorflow as tf

    from edgeopt.converter.tftrt import tensorrt_version

    gpu = None
    for dev in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(dev)
        gpu = details.get("device_name") or dev.name
        break
    return {
        "tensorflow": tf.__version__,
        "tensorrt": tensorrt_version(),
        "gpu": gpu,
        "python": platform.python_version(),
        "host": platform.node(),
    }


def build_report(
    *,
    model_name: str,
    source: dict[str, Any],
    stages: list[StageRecord],
    ops: dict[str, Any],
    transforms: list[dict[str, Any]],
    tensorrt: dict[str, Any],
    validation: dict[str, Any],
    latency: dict[str, Any],
    env: dict[str, Any],
    signature: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    return {
        "model": model_name,
        "source": source,
        "signature": signature,
        "stages": [s.as_report() for s in stages],
        "conversionSeconds": round(seconds, 3),
        "peakRssMiB": round(process_peak_rss_mib(), 1),
        "ops": ops,
        "transforms": transforms,
        "tensorrt": tensorrt,
        "validation": validation,
        "latencyMs": latency,
        "environment": env,
    }


def _round(v: Any) -> Any:
    return float(f"{v:.4g}") if isinstance(v, float) else v


def compact(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers the termination message and the resource status carry."""
    trt = report.get("tensorrt") or {}
    val = report.get("validation") or {}
    lat = report.get("latencyMs") or {}
    env = report.get("environment") or {}
    ops = report.get("ops") or {}
    data = {
        "opsBefore": (ops.get("before") or {}).get("total"),
        "opsAfter": (ops.get("after") or {}).get("total"),
        "trtEngines": trt.get("engines", 0),
        "precision": trt.get("precision"),
        "maxAbsError": val.get("maxAbsError"),
        "maxRelError": val.get("maxRelError"),
        "latencyMsBefore": lat.get("before"),
        "latencyMsAfter": lat.get("after"),
        "conversionSeconds": report.get("conversionSeconds"),
        "tensorflow": env.get("tensorflow"),
        "tensorrt": env.get("tensorrt"),
        "gpu": env.get("gpu"),
    }
    return {k: _round(data[k]) for k in COMPACT_KEYS}
