"""Serving: the published model through the real Triton (Python backend) against in-process TensorFlow.

The converted artefact is published with ``publish_version`` (python
backend, max_batch_size 8), Triton from the nvidia-pytriton wheel loads it,
and a tritonclient.http loop sends the same numpy inputs that the baseline
feeds straight to the SavedModel's signature in this process.  Concurrency 1
gives latency, concurrency 8 (one thread and one persistent connection per
worker on both sides) gives throughput.  Rounds alternate which side goes
first, so the load of the other engineers' tests hits both alike.

The PyPI ``perf-analyzer`` package is not used: ``pip install perf-analyzer``
resolves here to a 0.1.0 placeholder without the binary (checked 2026-11-21),
so the loop below is the measurement.  Target: overhead ≤ 1.3× at batch 8.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import models
from bench.context import Context
from bench.report import AreaResult, Row, Target
from bench.stats import Samples

AREA = "serving"
OVERHEAD_TARGET = 1.3

Call = Callable[[], Any]


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


def compare(
    sides: dict[str, Callable[[], Call]], *, requests: int, concurrency: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Alternate blocks of each side; latency percentiles and throughput (requests/s) per side."""
    samples = {name: Samples(name) for name in sides}
    wall = dict.fromkeys(sides, 0.0)
    names = list(sides)
    for name in names:  # warm-up: connections, TF function tracing, Triton's first execute
        run_block(sides[name], max(concurrency, 4), concurrency)
    for r in range(rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            lat, took = run_block(sides[name], requests, concurrency)
            samples[name].ms.extend(lat)
            wall[name] += took
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        out[name] = dict(samples[name].summary())
        out[name]["throughput"] = round(len(samples[name].ms) / wall[name], 3) if wall[name] else None
    return out


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


def triton_call_factory(url: str, model: str, inputs: dict[str, Any]) -> Callable[[], Call]:
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


def tf_call_factory(savedmodel: Path, batch: int) -> tuple[Callable[[], Call], dict[str, Any]]:
    from bench.tfrun import load_runner

    run, inputs, keep = load_runner(savedmodel, batch)

    def make() -> Call:
        _ = keep  # the loaded object must outlive every call
        return run

    return make, inputs


def check_same_answers(triton: Call, tf_run: Call) -> float:
    import numpy as np

    a, b = triton(), tf_run()
    worst = 0.0
    for key, ref in b.items():
        got = np.asarray(a[key]).reshape(np.asarray(ref).shape)
        worst = max(worst, float(np.max(np.abs(got.astype("float64") - ref.astype("float64")))))
    if worst > 1e-3:
        raise RuntimeError(f"Triton and in-process TF disagree by {worst:g} on the same inputs")
    return worst


def serving_cases(quick: bool) -> list[tuple[models.ModelCase, int, int]]:
    """(model, requests per block, rounds)."""
    by_name = {c.name: c for c in models.cases(quick)}
    if quick:
        return [(by_name["convbn"], 20, 2)]
    return [(by_name["convbn"], 100, 4), (by_name["mobilenetv2"], 16, 3)]


def run(ctx: Context) -> AreaResult:
    from edgeopt.triton.client import TritonClient
    from edgeopt_dev.triton_server import TritonServer

    result = AreaResult(AREA)
    repo = ctx.dir("serving-repo")
    cases = serving_cases(ctx.quick)
    published: dict[str, Path] = {}
    for case, _, _ in cases:
        prep = models.prepare(ctx, case)
        published[case.name] = _publish(prep, repo)
    server = TritonServer(repo, log_path=ctx.dir("logs") / "tritonserver.log")
    server.start()
    ctx.log(f"serving: tritonserver live in {server.startup_seconds:.1f}s at {server.http_url}")
    try:
        client = TritonClient(server.http_url, timeout=300.0)
        for case, requests, rounds in cases:
            t0 = time.monotonic()
            client.load(case.name)
            ctx.log(f"serving: {case.label} loaded in {time.monotonic() - t0:.1f}s")
            details: dict[str, Any] = {"loadSeconds": round(time.monotonic() - t0, 2)}
            for batch in (1, 8):
                tf_make, inputs = tf_call_factory(published[case.name], batch)
                triton_make = triton_call_factory(server.http_url, case.name, inputs)
                details[f"maxAbsDiffBatch{batch}"] = check_same_answers(triton_make(), tf_make())
                for concurrency in (1, 8):
                    n = requests if concurrency == 1 else requests * 2
                    stats = compare({"triton": triton_make, "tf": tf_make}, requests=n, concurrency=concurrency,
                                    rounds=rounds)  # fmt: skip
                    details[f"b{batch}c{concurrency}"] = stats
                    ctx.log(f"serving: {case.label} b{batch} c{concurrency}: {stats}")
                    tri, tf = stats["triton"], stats["tf"]
                    target = Target(OVERHEAD_TARGET) if batch == 8 else None
                    where = f"{case.label} batch {batch}, concurrency {concurrency}"
                    if concurrency == 1:
                        result.rows.append(Row(AREA, f"{where}: latency p50 (n={tri['n']})", tri["p50"], tf["p50"],
                                               "ms", target, baseline_name="in-process TF"))  # fmt: skip
                        result.rows.append(Row(AREA, f"{where}: latency p99", tri["p99"], tf["p99"], "ms",
                                               baseline_name="in-process TF"))  # fmt: skip
                    else:
                        # Overhead as time per request, so ≤ 1.3× reads the same way as for latency.
                        per_req = {k: (1000 / v["throughput"] if v["throughput"] else None) for k, v in stats.items()}
                        result.rows.append(Row(AREA, f"{where}: time per request at full load "
                                               f"({tri['throughput']:.1f} vs {tf['throughput']:.1f} req/s)",
                                               per_req["triton"], per_req["tf"], "ms", target,
                                               baseline_name="in-process TF"))  # fmt: skip
            client.unload(case.name)
            result.details[case.label] = details
    finally:
        server.stop()
    return result
