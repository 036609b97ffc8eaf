"""Serving: every published model through the real Triton, measured by perf_analyzer over HTTP and gRPC.

Each model the bench builds (conv+BN, MobileNetV2, ResNet50) is published
with ``publish_version`` (python backend, max_batch_size 8), loaded into the
real Triton (explicit mode) and measured by Triton's own ``perf_analyzer``
(:mod:`bench.perf_analyzer`) at batch 1 and 8 and concurrency 1, 2, 4 and 8,
over HTTP and over gRPC: latency p50/p90/p99 and inferences/s.

The baseline is the same SavedModel called in this process with TensorFlow
(:mod:`bench.tfrun`) on the same inputs, with the same number of requests
spread over the same number of threads.  The three contenders of one
(batch, concurrency) cell run back to back in an order that rotates from
cell to cell, so the other engineers' load hits all of them alike.  Before
measuring, Triton's answers over HTTP and gRPC are checked against the
baseline's.  The old tritonclient.http loop stays as one cross-check row per
model (its p50 against perf_analyzer's HTTP p50 at batch 1, concurrency 1).

Target: Triton ≤ 1.3× in-process TF at batch 8 (latency at concurrency 1 and
time per inference at concurrency 8).  Quick mode measures a reduced matrix.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import models
from bench import perf_analyzer as pa
from bench.context import Context
from bench.report import AreaResult, Target, fmt
from bench.stats import Samples, percentile

AREA = "serving"
OVERHEAD_TARGET = 1.3
TF = "TF optimized (in-process)"  # same name as the converter area's, one colour in the chart
BASELINE = "in-process TF"
RUNTIME = {"http": "Triton HTTP", "grpc": "Triton gRPC"}

Call = Callable[[], Any]


@dataclass(frozen=True)
class Plan:
    """What to measure for one model: the matrix and how many requests per perf_analyzer window."""

    case: models.ModelCase
    batches: tuple[int, ...]
    concurrency: tuple[int, ...]
    window: pa.Window
    crosscheck_requests: int


def plans(quick: bool) -> list[Plan]:
    by_name = {c.name: c for c in models.cases(quick)}
    if quick:
        return [
            Plan(by_name["convbn"], (1, 8), (1, 4), pa.Window(50), 30),
            Plan(by_name["mobilenetv2"], (1,), (1,), pa.Window(10), 10),
        ]
    return [
        Plan(by_name["convbn"], (1, 8), (1, 2, 4, 8), pa.Window(200), 200),
        Plan(by_name["mobilenetv2"], (1, 8), (1, 2, 4, 8), pa.Window(30), 40),
        Plan(by_name["resnet50"], (1, 8), (1, 2, 4, 8), pa.Window(10), 20),
    ]


# --------------------------------------------------------------------------- the in-process side


def run_block(make_call: Callable[[], Call], requests: int, concurrency: int) -> tuple[list[float], float]:
    """``requests`` calls spread over ``concurrency`` threads (each with its own ``make_call()``).

    Returns per-call latencies (ms) and the block's wall time (s).
    """
    calls = [make_call() for _ in range(concurrency)]
    lock = threading.Lock()
    remaining = [requests]
    latencies: list[float] = []
    errors: list[BaseException] = []

    def worker(call: Call) -> None:
        while True:
            with lock:
                if remaining[0] <= 0 or errors:
                    return
                remaining[0] -= 1
            t0 = time.perf_counter()
            try:
                call()
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            took = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in calls]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"a request failed: {errors[0]!r}") from errors[0]
    return latencies, wall


def block_stats(latencies: list[float], wall: float, batch: int) -> dict[str, Any]:
    """The same figures perf_analyzer reports: p50/p90/p99 latency (ms) and inferences/s."""
    s = Samples("block", latencies).summary()
    s["p90"] = round(percentile(latencies, 90), 4) if latencies else None
    s["inferencesPerSecond"] = round(len(latencies) * batch / wall, 2) if wall else None
    return s


def tf_call_factory(savedmodel: Path, batch: int) -> tuple[Callable[[], Call], dict[str, Any], Any]:
    from bench.tfrun import load_runner

    run, inputs, keep = load_runner(savedmodel, batch)
    return (lambda: run), inputs, keep


# --------------------------------------------------------------------------- Triton clients


def http_call_factory(url: str, model: str, inputs: dict[str, Any]) -> Callable[[], Call]:
    """tritonclient.http, one persistent connection per worker (the cross-check loop and the answer check)."""
    import tritonclient.http as httpclient

    from edgeopt.triton.client import build_request

    def make() -> Call:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=300.0)
        infer_inputs, _ = build_request(httpclient, inputs, None)

        def call() -> Any:
            result = client.infer(model, infer_inputs)
            return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}

        return call

    return make


def grpc_answer(url: str, model: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """One inference through Triton's gRPC endpoint (tritonclient.grpc 2.51 runs on protobuf 4)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    client = grpcclient.InferenceServerClient(url)
    try:
        infer_inputs = []
        for name, array in inputs.items():
            item = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            infer_inputs.append(item)
        result = client.infer(model, infer_inputs, client_timeout=300.0)
        return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}
    finally:
        client.close()


def max_abs_diff(got: dict[str, Any], ref: dict[str, Any]) -> float:
    import numpy as np

    if set(got) != set(ref):
        raise RuntimeError(f"Triton answered outputs {sorted(got)}, in-process TF {sorted(ref)}")
    worst = 0.0
    for key, want in ref.items():
        have = np.asarray(got[key]).reshape(np.asarray(want).shape)
        worst = max(worst, float(np.max(np.abs(have.astype("float64") - want.astype("float64")))))
    return worst


def check_answers(answers: dict[str, dict[str, Any]], ref: dict[str, Any], tolerance: float = 1e-3) -> dict[str, float]:
    """Max abs difference per protocol; a disagreement stops the area (its numbers would mean nothing)."""
    diffs = {proto: max_abs_diff(got, ref) for proto, got in answers.items()}
    bad = {k: v for k, v in diffs.items() if v > tolerance}
    if bad:
        raise RuntimeError(f"Triton and in-process TF disagree on the same inputs: {bad}")
    return diffs


# --------------------------------------------------------------------------- one model


def _artifact(prep: models.Prepared) -> Any:
    from edgeopt.artifact import Artifact, TensorInfo

    sig = json.loads((prep.artefact / "signature.json").read_text())
    return Artifact(
        savedmodel_dir=prep.optimized,
        signature_key=sig["signature_key"],
        inputs=[TensorInfo(**t) for t in sig["inputs"]],
        outputs=[TensorInfo(**t) for t in sig["outputs"]],
        report=prep.report,
    )


def _publish(prep: models.Prepared, repo: Path) -> Path:
    from edgeopt.spec import parse_manifest
    from edgeopt.triton.publish import publish_version

    model = parse_manifest(models.manifest(prep.case, prep.source_dir, repo))
    result = publish_version(_artifact(prep), model, repository=repo)
    return result.version_dir / "model.savedmodel"


def measure_cell(
    ctx: Context,
    plan: Plan,
    server: Any,
    tf_make: Callable[[], Call],
    input_file: Path,
    batch: int,
    concurrency: int,
    turn: int,
) -> dict[str, dict[str, Any]]:
    """HTTP, gRPC and in-process TF for one (batch, concurrency), in an order rotated by ``turn``."""
    name = plan.case.name
    urls = {"http": server.http_url.removeprefix("http://"), "grpc": server.grpc_url}
    out: dict[str, dict[str, Any]] = {}
    order = ["http", "grpc", "tf"]
    shift = turn % len(order)
    for side in order[shift:] + order[:shift]:
        if side == "tf":
            lat, wall = run_block(tf_make, 3 * plan.window.requests, concurrency)
            out[TF] = block_stats(lat, wall, batch)
            continue
        m, csv_path = pa.measure(
            name,
            urls[side],
            side,
            batch,
            concurrency,
            window=plan.window,
            workdir=ctx.dir("perf_analyzer"),
            input_data=input_file,
        )
        out[RUNTIME[side]] = {
            **m.latency_ms,
            "inferencesPerSecond": m.inferences_per_second,
            "stagesMs": m.stages_ms,
            "csv": csv_path.name,
        }
    return out


def measure_model(ctx: Context, plan: Plan, server: Any, savedmodel: Path, result: AreaResult) -> dict[str, Any]:
    label, name = plan.case.label, plan.case.name
    details: dict[str, Any] = {"window": plan.window.__dict__, "cells": {}, "maxAbsDiff": {}}
    turn = 0
    for batch in plan.batches:
        tf_make, inputs, keep = tf_call_factory(savedmodel, batch)
        ref = tf_make()()
        http_make = http_call_factory(server.http_url, name, inputs)
        answers = {"http": http_make()(), "grpc": grpc_answer(server.grpc_url, name, inputs)}
        details["maxAbsDiff"][f"b{batch}"] = check_answers(answers, ref)
        input_file = pa.write_input_data(ctx.dir("perf_analyzer") / f"{name}-b{batch}-input.json", inputs)
        run_block(tf_make, max(plan.concurrency) * 2, max(plan.concurrency))  # warm-up: tracing, thread pools
        for concurrency in plan.concurrency:
            cell = measure_cell(ctx, plan, server, tf_make, input_file, batch, concurrency, turn)
            turn += 1
            details["cells"][f"b{batch}c{concurrency}"] = cell
            for runtime, s in cell.items():
                result.point(
                    label,
                    runtime,
                    batch=batch,
                    concurrency=concurrency,
                    p50_ms=s["p50"],
                    p90_ms=s["p90"],
                    p99_ms=s["p99"],
                    per_second=s["inferencesPerSecond"],
                )
            ctx.log(
                f"serving: {label} b{batch} c{concurrency}: "
                + ", ".join(f"{rt} p50 {s['p50']:.2f} ms {s['inferencesPerSecond']:.0f}/s" for rt, s in cell.items())
            )
        if batch == 1:
            lat, _ = run_block(http_make, plan.crosscheck_requests, 1)
            details["crosscheckTritonclientHttp"] = Samples("loop", lat).summary()
        del tf_make, keep
    return details


def table_rows(result: AreaResult, plan: Plan, details: dict[str, Any]) -> None:
    """Latency at concurrency 1 per batch and protocol, time per inference at the top concurrency, cross-check."""
    label, cells = plan.case.label, details["cells"]
    top = max(plan.concurrency)
    for batch in plan.batches:
        c1 = cells[f"b{batch}c1"]
        target = Target(OVERHEAD_TARGET) if batch == 8 else None
        for runtime in RUNTIME.values():
            s, tf = c1[runtime], c1[TF]
            result.row(
                f"{label} b{batch} c1 latency p50, {runtime}",
                s["p50"],
                tf["p50"],
                "ms",
                target=target,
                baseline_name=BASELINE,
                note=f"p99 {fmt(s['p99'])} vs {fmt(tf['p99'], 'ms')}",
            )
    if top > 1:
        batch = max(plan.batches)
        cell = cells[f"b{batch}c{top}"]
        tf_ips = cell[TF]["inferencesPerSecond"]
        for runtime in RUNTIME.values():
            ips = cell[runtime]["inferencesPerSecond"]
            result.row(
                f"{label} b{batch} c{top} time per inference, {runtime}",
                1000 / ips if ips else None,
                1000 / tf_ips if tf_ips else None,
                "ms",
                target=Target(OVERHEAD_TARGET) if batch == 8 else None,
                baseline_name=BASELINE,
                note=f"{fmt(ips)} vs {fmt(tf_ips, 'inf/s')}",
            )
    loop = details.get("crosscheckTritonclientHttp")
    if loop:
        result.row(
            f"{label} b1 c1 p50, tritonclient.http loop (cross-check, n={loop['n']})",
            loop["p50"],
            cells["b1c1"][RUNTIME["http"]]["p50"],
            "ms",
            baseline_name="perf_analyzer HTTP",
        )


def run(ctx: Context) -> AreaResult:
    from edgeopt.triton.client import TritonClient
    from edgeopt_dev.triton_server import TritonServer

    result = AreaResult(AREA)
    result.details["perfAnalyzer"] = pa.check_runs()
    repo = ctx.dir("serving-repo")
    todo = plans(ctx.quick)
    published = {p.case.name: _publish(models.prepare(ctx, p.case), repo) for p in todo}
    server = TritonServer(repo, log_path=ctx.dir("logs") / "tritonserver.log")
    server.start()
    ctx.log(f"serving: tritonserver at {server.http_url}, gRPC {server.grpc_url}; {result.details['perfAnalyzer']}")
    try:
        client = TritonClient(server.http_url, timeout=300.0)
        for plan in todo:
            t0 = time.monotonic()
            client.load(plan.case.name)
            load_seconds = round(time.monotonic() - t0, 2)
            ctx.log(f"serving: {plan.case.label} loaded in {load_seconds:.1f}s")
            details = measure_model(ctx, plan, server, published[plan.case.name], result)
            details["loadSeconds"] = load_seconds
            client.unload(plan.case.name)
            result.details[plan.case.label] = details
            table_rows(result, plan, details)
    finally:
        server.stop()
    return result
