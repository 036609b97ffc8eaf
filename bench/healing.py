"""Healing: how fast a new Triton replica serves its models, and what a rolling restart costs clients.

Real tritonserver processes on their own loopback addresses (as Pods on the
dev cluster), toy python-backend models (``edgeopt_dev.toy_models``), and the
operator's own serving reconcile (``ServingReconciler``, its loop as in the
operator, fed the replicas directly instead of through EndpointSlices).

* **New replica → N models served** (N = 1 and 20): from the new
  tritonserver's start to every model answering ready on it, loaded by the
  reconcile (it retries each second while the replica does not answer yet).
  Baseline: the same Triton started with ``--load-model`` for all N (it
  loads them before it serves: the floor). Target: ≤ 1.5× that floor (the
  issue's "within 30 s of the new Pod starting" is the value for one model;
  20 Python-backend models take Triton itself about 30 s on 2 shared cores).
* **Failed requests during a rolling restart** of 2 replicas: a client sends
  requests back to back, each to the next endpoint kube-proxy would route to.
  A new replica joins when its readiness gate would be True (every model
  loaded); the old one leaves, then stops. Baseline: no gate (it joins once
  Triton is live, as with the readiness probe alone). Target: 0.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.context import Context
from bench.report import AreaResult, Target

AREA = "healing"
#: The operator's loads against Triton loading the same models itself at start.
FLOOR_RATIO = 1.5


def _models(repo: Path, n: int) -> list[str]:
    from edgeopt_dev.toy_models import write_model

    names = [f"m{i:02d}" for i in range(n)]
    for name in names:
        write_model(repo, name, 1, 5.0, [1])
    return names


@contextmanager
def _reconciler(urls: list[str], names: list[str], *, service: bool = False) -> Iterator[object]:
    """The operator's serving reconcile in its own event loop (a thread), wanting ``names`` on ``urls``."""
    from edgeopt.operator import serving_plan as plan
    from edgeopt.operator.endpoints import Endpoint
    from edgeopt.operator.runtime import Runtime
    from edgeopt.operator.serving_reconcile import ServingReconciler
    from edgeopt.operator.settings import OperatorSettings

    settings = OperatorSettings(triton_url=urls[0], serving_audit_seconds=30.0)
    rec = ServingReconciler(Runtime(settings=settings, kube=None))  # type: ignore[arg-type]
    for name in names:
        if service:
            rec.wants[("bench", name)] = plan.Want("bench", name, name, (1,))
        else:
            for url in urls:
                rec.wants[("bench", f"{name}@{url}")] = plan.Want("bench", f"{name}@{url}", name, (1,), url=url)
    done = threading.Event()

    async def main() -> None:
        rec.start()
        if service:  # the replicas as the EndpointSlice watch would report them (no API server here)
            rec.service = ("bench", "triton")
            rec._slices = {"bench": {}}
            rec.endpoints = tuple(Endpoint(u, u, u, "bench", False) for u in urls)
            rec.listed.set()
            rec.kick()
        while not done.is_set():
            await asyncio.sleep(0.05)
        await rec.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        done.set()
        thread.join(timeout=30)


def _all_ready(url: str, names: list[str], timeout: float) -> float:
    from edgeopt.triton.client import RetryPolicy, TritonClient

    client = TritonClient(url, timeout=5, retry=RetryPolicy(attempts=1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            index = client.repository_index()
            ready = {e["name"] for e in index if e.get("state") == "READY"}
            if set(names) <= ready:
                return time.monotonic()
        except Exception:  # not up yet
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{len(names)} models not ready on {url} after {timeout:.0f}s")


def new_replica_seconds(ctx: Context, n: int, *, baseline: bool) -> float:
    from edgeopt_dev.netutil import free_port
    from edgeopt_dev.triton_server import TritonServer

    repo = ctx.dir("healing", f"repo-{n}")
    names = _models(repo, n)
    host = "127.0.0.2"
    port = free_port(host)
    url = f"http://{host}:{port}"
    log = ctx.dir("healing", "logs") / f"new-{n}-{'baseline' if baseline else 'edgeopt'}.log"
    server = TritonServer(
        repo, host=host, http_port=port, log_path=log, load_models=names if baseline else (), startup_timeout=300
    )
    if baseline:
        started = time.monotonic()
        with server:
            return _all_ready(url, names, 300) - started
    with _reconciler([url], names) as rec:
        started = time.monotonic()
        rec.kick()  # type: ignore[attr-defined]  # the EndpointSlice event of the new Pod
        with server:
            return _all_ready(url, names, 300) - started


class _Client:
    """Requests back to back, each to the next routable endpoint (round robin), no retries."""

    def __init__(self, name: str, routable: list[str]) -> None:
        self.name, self.routable = name, routable
        self.count = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from edgeopt.triton.client import RetryPolicy, TritonClient

        x = {"x": np.array([[1.0]], dtype=np.float32)}
        i = 0
        while not self._stop.is_set():
            targets = list(self.routable)
            url = targets[i % len(targets)]
            i += 1
            try:
                TritonClient(url, timeout=30, retry=RetryPolicy(attempts=1)).infer(self.name, x)
            except Exception as exc:
                self.failed += 1
                self.errors.append(f"{url}: {str(exc)[:200]}")
            self.count += 1

    def __enter__(self) -> _Client:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def rolling_restart(ctx: Context, *, gate: bool) -> tuple[int, int, list[str]]:
    """(failed, sent, first errors) while 2 replicas are replaced one by one."""
    from edgeopt.operator.endpoints import Endpoint
    from edgeopt_dev.netutil import free_port
    from edgeopt_dev.triton_server import TritonServer

    repo = ctx.dir("healing", "repo-rolling")
    names = _models(repo, 1)
    logs = ctx.dir("healing", "logs")

    def replica(i: int) -> TritonServer:
        host = f"127.0.0.{i}"
        return TritonServer(repo, host=host, http_port=free_port(host), log_path=logs / f"roll-{gate}-{i}.log").start()

    old = [replica(2), replica(3)]
    with _reconciler([s.http_url for s in old], names, service=True) as rec:
        for s in old:
            _all_ready(s.http_url, names, 120)
        routable = [s.http_url for s in old]
        with _Client(names[0], routable) as client:
            time.sleep(1.0)
            for i, gone in ((4, old[0]), (5, old[1])):
                new = replica(i)
                rec.endpoints = (*rec.endpoints, Endpoint(new.http_url, new.http_url, new.http_url, "bench", False))  # type: ignore[attr-defined]
                rec.kick()  # type: ignore[attr-defined]
                if gate:  # Ready once the gate is True: every model loaded there
                    _all_ready(new.http_url, names, 120)
                routable.append(new.http_url)
                routable.remove(gone.http_url)  # terminating: no new connections
                time.sleep(0.5)
                gone.stop()
                rec.endpoints = tuple(e for e in rec.endpoints if e.url != gone.http_url)  # type: ignore[attr-defined]
                old.append(new)
                time.sleep(1.0)
    for s in old:
        s.stop()
    return client.failed, client.count, client.errors[:3]


def run(ctx: Context) -> AreaResult:
    result = AreaResult(AREA)
    for n in (1, 20):
        edgeopt = new_replica_seconds(ctx, n, baseline=False)
        base = new_replica_seconds(ctx, n, baseline=True)
        result.row(
            f"new Triton replica → {n} model{'s' if n > 1 else ''} served",
            edgeopt,
            base,
            "s",
            target=Target(FLOOR_RATIO),
            baseline_name="Triton --load-model at start",
            note="from the new tritonserver's start; the operator's serving reconcile loads them",
        )
    failed, sent, errors = rolling_restart(ctx, gate=True)
    base_failed, base_sent, base_errors = rolling_restart(ctx, gate=False)
    result.row(
        "failed requests in a rolling restart of 2 replicas",
        failed,
        base_failed,
        "requests",
        target=Target(0, "value"),
        baseline_name="no readiness gate (joins once Triton is live)",
        note=f"{sent} requests (baseline {base_sent})",
    )
    result.details["rolling"] = {
        "sent": sent,
        "failed": failed,
        "errors": errors,
        "baseline": {"sent": base_sent, "failed": base_failed, "errors": base_errors},
    }
    return result
