"""Converter: ops, conversion time and peak RSS per stage, and original-vs-optimized latency.

For each model the converter runs as the Job runs it (``edgeopt convert -f``
in its own process); its report.json gives ops before/after and each stage's
wall time and peak RSS.  Then the original SavedModel and the optimized
artefact are loaded side by side in this one TensorFlow runtime and called
alternately on the same inputs at batch 1 and 8; the table shows p50 and p99
and optimized/original.  Target: optimized p50 no slower (≤ 1.0×).
"""

from __future__ import annotations

import gc
from typing import Any

from bench import models
from bench.context import Context
from bench.report import AreaResult, Row, Target
from bench.stats import interleave
from bench.tfrun import load_runner

AREA = "converter"
#: The chart's runtime names; serving's in-process baseline is the same optimized SavedModel.
TF_OPTIMIZED = "TF optimized (in-process)"
BATCHES = (1, 8)


def stage_summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"stage": s["name"], "seconds": s.get("seconds"), "peakRssMiB": s.get("peak_rss_mib"), "status": s["status"]}
        for s in report.get("stages") or []
        if s.get("status") != "skipped"
    ]


def measure_latency(prep: models.Prepared, ctx: Context) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for batch in BATCHES:
        orig, _, keep_a = load_runner(prep.original, batch)
        opt, _, keep_b = load_runner(prep.optimized, batch)
        samples = interleave({"original": orig, "optimized": opt}, prep.case.iterations, warmup=5)
        out[batch] = {k: v.summary() for k, v in samples.items()}
        ctx.log(
            f"{prep.case.label} b{batch}: p50 original {out[batch]['original']['p50']:.2f} ms, "
            f"optimized {out[batch]['optimized']['p50']:.2f} ms"
        )
        del orig, opt, keep_a, keep_b, samples
        gc.collect()
    return out


def run(ctx: Context) -> AreaResult:
    result = AreaResult(AREA)
    for case in models.cases(ctx.quick):
        prep = models.prepare(ctx, case)
        report = prep.report
        ops = report.get("ops") or {}
        before = (ops.get("before") or {}).get("total")
        after = (ops.get("after") or {}).get("total")
        stages = stage_summary(report)
        peak = max((s["peakRssMiB"] or 0 for s in stages), default=None)
        latency = measure_latency(prep, ctx)
        result.details[case.label] = {
            "ops": {
                "before": before,
                "after": after,
                "loaded": (ops.get("loaded") or {}).get("total"),
                "beforeByType": (ops.get("before") or {}).get("byType"),
                "afterByType": (ops.get("after") or {}).get("byType"),
            },
            "conversionSeconds": report.get("conversionSeconds"),
            "stages": stages,
            "latencyMs": latency,
            "original": "Keras SavedModel" if case.kind == "keras" else "frozen graph, no transforms",
            "converterReportLatencyMs": report.get("latencyMs"),
        }
        label = case.label
        result.rows.append(Row(AREA, f"{label} graph ops (optimized vs frozen)", after, before, "ops"))
        # Per-stage time and RSS are in the JSON (details.<model>.stages), not in the terminal.
        result.rows.append(Row(AREA, f"{label} conversion time", report.get("conversionSeconds"), None, "s"))
        result.rows.append(Row(AREA, f"{label} conversion peak RSS (max over stages)", peak, None, "MiB"))
        for batch in BATCHES:
            o, b = latency[batch]["optimized"], latency[batch]["original"]
            for runtime, s in (("TF original", b), (TF_OPTIMIZED, o)):
                result.point(label, runtime, batch=batch, p50_ms=s["p50"], p99_ms=s["p99"])
            n = o["n"]
            result.rows.append(
                Row(
                    AREA,
                    f"{label} latency p50, batch {batch} (n={n}, interleaved)",
                    o["p50"],
                    b["p50"],
                    "ms",
                    Target(1.0),
                    baseline_name="original",
                )
            )
            result.rows.append(
                Row(AREA, f"{label} latency p99, batch {batch}", o["p99"], b["p99"], "ms", baseline_name="original")
            )
        result.details.setdefault("environment", report.get("environment"))
    return result
