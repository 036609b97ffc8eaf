"""Stage 6 — validate: the converted model must answer like the original.

Both run on the same inputs (the calibration samples when the spec names a
file, otherwise seeded random data shaped like the inputs); NaN or Inf in
the result fails, and so does any element outside ``atol + rtol * |ref|``.
The error says which output and by how much, so a user can decide between
loosening the tolerance and not shipping the model.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeopt.artifact import TensorInfo
from edgeopt.converter import feeds
from edgeopt.converter.graph_model import ModelFn
from edgeopt.errors import ValidationError
from edgeopt.spec import ModelSpec, resolve_uri


def validation_inputs(spec: ModelSpec, inputs: Sequence[TensorInfo]) -> tuple[dict[str, np.ndarray], str]:
    """Inputs to compare on, and where they came from."""
    cal = spec.tensorrt.calibration
    if cal is not None and cal.uri:
        path = resolve_uri(cal.uri)
        arrays = feeds.take_samples(feeds.load_sample_file(path, inputs), spec.validation.samples)
        return arrays, f"file:{path}"
    batch = spec.validation.samples
    return feeds.random_inputs(inputs, batch=batch, seed=spec.validation.seed), f"random(seed={spec.validation.seed})"


def compare(
    reference: dict[str, np.ndarray], result: dict[str, np.ndarray], *, rtol: float, atol: float
) -> dict[str, Any]:
    """Per-output max abs/rel error; raise ValidationError on NaN/Inf or a mismatch beyond tolerance."""
    per_output: dict[str, Any] = {}
    max_abs = 0.0
    max_rel = 0.0
    for key, ref in reference.items():
        if key not in result:
            raise ValidationError(f"the converted model has no output {key!r} (it has: {', '.join(result)})")
        got = np.asarray(result[key])
        ref = np.asarray(ref)
        if got.shape != ref.shape:
            raise ValidationError(f"output {key!r} has shape {list(got.shape)}, the original {list(ref.shape)}")
        if got.dtype.kind not in "fc":
            equal = bool(np.array_equal(got, ref))
            per_output[key] = {"equal": equal}
            if not equal:
                raise ValidationError(f"output {key!r} ({got.dtype}) differs from the original")
            continue
        bad = ~np.isfinite(got) & np.isfinite(ref)
        if bad.any():
            raise ValidationError(
                f"output {key!r} holds {int(bad.sum())} NaN/Inf value(s) where the original is finite"
            )
        # np.asarray: for rank-0 outputs (a scalar graph) numpy arithmetic yields scalars, not arrays.
        diff = np.asarray(np.abs(got.astype(np.float64) - ref.astype(np.float64)))
        diff[~np.isfinite(diff)] = 0.0
        scale = np.asarray(np.abs(ref.astype(np.float64)))
        rel = np.where(scale > atol, diff / np.maximum(scale, 1e-30), 0.0)
        abs_err = float(diff.max()) if diff.size else 0.0
        rel_err = float(rel.max()) if rel.size else 0.0
        excess = diff - (atol + rtol * scale)
        per_output[key] = {"maxAbsError": abs_err, "maxRelError": rel_err}
        max_abs, max_rel = max(max_abs, abs_err), max(max_rel, rel_err)
        if (excess > 0).any():
            worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
            raise ValidationError(
                f"output {key!r} differs from the original beyond tolerance (rtol={rtol:g}, atol={atol:g}): "
                f"{int((excess > 0).sum())} of {excess.size} values off, max abs error {abs_err:.3g}, "
                f"max rel error {rel_err:.3g}; worst at index {list(map(int, worst))}: "
                f"{float(got[worst]):.6g} vs {float(ref[worst]):.6g} (off by {float(diff[worst]):.3g}, "
                f"allowed {float(atol + rtol * scale[worst]):.3g})"
            )
    return {"maxAbsError": max_abs, "maxRelError": max_rel, "outputs": per_output}


def _rows(ref: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-sample rows (batch first); a one-value-per-sample output is one row; None for a single value."""
    if ref.size < 2:
        return None
    if ref.ndim >= 2 and ref.size // ref.shape[0] >= 2:
        return ref.reshape(ref.shape[0], -1), got.reshape(got.shape[0], -1)
    return ref.reshape(1, -1), got.reshape(1, -1)


def correlation(ref: np.ndarray, got: np.ndarray, *, rtol: float, atol: float) -> dict[str, Any] | None:
    """The lowest per-sample Pearson correlation of ``got`` with ``ref``, and where it is.

    A sample equal to the original within ``rtol``/``atol`` counts as 1; so does a sample whose original
    is constant (no correlation to speak of: the elementwise check judges it).  An output that went
    constant (all zero, all one value) correlates 0, however close its values.  None: nothing to correlate
    (a single value, or not floats).
    """
    if ref.dtype.kind not in "fc" or got.shape != ref.shape:
        return None
    rows = _rows(ref.astype(np.float64), got.astype(np.float64))
    if rows is None:
        return None
    worst, at = 1.0, -1
    for i, (r, g) in enumerate(zip(*rows, strict=True)):
        if np.all(np.abs(g - r) <= atol + rtol * np.abs(r)):
            continue
        r, g = r - r.mean(), g - g.mean()
        rn, gn = float(np.linalg.norm(r)), float(np.linalg.norm(g))
        if rn <= 1e-12 * max(1.0, float(np.abs(rows[0][i]).max())):
            continue
        value = float(np.dot(r, g) / (rn * gn)) if gn > 0 and np.isfinite(gn) else 0.0
        if value < worst:
            worst, at = value, i
    return {"min": worst, "sample": at}


def latency_ms(fn: ModelFn, inputs: dict[str, np.ndarray], *, runs: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``runs`` calls after ``warmup`` calls, in milliseconds."""
    for _ in range(warmup):
        fn(inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(inputs)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3)


def tolerance_use(
    reference: dict[str, np.ndarray], result: dict[str, np.ndarray], *, rtol: float, atol: float
) -> float:
    """The worst ``|got - ref| / (atol + rtol * |ref|)`` over the float outputs: above 1 fails ``compare``.

    NaN/Inf where the original is finite, or any difference under a zero tolerance, is infinite.
    """
    worst = 0.0
    for key, ref in reference.items():
        ref = np.asarray(ref)
        got = np.asarray(result[key]) if key in result else None
        if got is None or got.shape != ref.shape or got.dtype.kind not in "fc" or ref.dtype.kind not in "fc":
            continue
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        if (~np.isfinite(got) & np.isfinite(ref)).any():
            return float("inf")
        diff[~np.isfinite(diff)] = 0.0
        allowed = atol + rtol * np.abs(ref.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            use = np.where(diff > 0, diff / allowed, 0.0)
        if use.size:
            worst = max(worst, float(use.max()))
    return worst
