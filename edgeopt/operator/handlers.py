"""kopf handlers: thin. They read the body, call conversion/serving, and map errors.

Importing this module registers the handlers with kopf's default registry;
``edgeopt operator`` imports it and runs kopf. The OptimizedModel is the only
place state lives (status, annotations); the operator's memory is a cache, so
any replica can take over after a restart or a peering hand-over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf

from edgeopt.operator import conversion, metrics, queueing, resources, serving, serving_reconcile, status, tenancy
from edgeopt.operator.conversion import Indexes
from edgeopt.operator.kube import GROUP, PLURAL, VERSION, Kube, KubeError, load_api_client
from edgeopt.operator.plan import post_event
from edgeopt.operator.runtime import Runtime
from edgeopt.operator.settings import OperatorSettings

FINALIZER = "edgeopt.io/finalizer"


@contextmanager
def kopf_errors() -> Iterator[None]:
    """API trouble that may heal is retried by kopf with backoff; the rest is permanent."""
    try:
        yield
    except KubeError as exc:
        if exc.temporary:
            raise kopf.TemporaryError(str(exc), delay=10) from exc
        raise kopf.PermanentError(str(exc)) from exc


def runtime(memo: Any) -> Runtime:
    rt: Runtime = memo.runtime
    return rt


@kopf.on.startup()
def configure(settings: Any, memo: Any, logger: Any, **_: Any) -> None:
    """Keep kopf's bookkeeping under edgeopt.io, connect the API client, open /metrics."""
    config: OperatorSettings = memo.get("config") or OperatorSettings.from_env()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="edgeopt.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="edgeopt.io", key="last-handled-configuration"
    )
    settings.peering.lifetime = config.peering_lifetime_seconds
    settings.posting.level = logging.WARNING  # our own Events say what happened; kopf adds only trouble
    settings.execution.max_workers = 16  # sync handlers: API calls of many resources overlap
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Server-side filtering: the operator is sent its own Jobs and Pods only, never the cluster's.
    settings.watching.label_selectors["batch", "v1", "jobs"] = resources.managed_selector()
    settings.watching.label_selectors["v1", "pods"] = resources.managed_selector()
    kube = Kube(load_api_client(), namespaces=config.namespaces)
    kube.on_call = metrics.record_api_call
    memo.runtime = Runtime(settings=config, kube=kube)
    metrics.serve(config.metrics_port)
    logger.info(
        "edgeopt operator: namespaces=%s, at once: %d conversions per GPU kind, %d without a GPU; converter image %s",
        ",".join(config.namespaces) or "(all)",
        config.max_concurrent_conversions,
        config.max_concurrent_cpu_conversions,
        config.converter_image,
    )


@kopf.on.startup()
async def start_serving(memo: Any, **_: Any) -> None:
    """The serving reconcile (serving_reconcile.py): every Triton endpoint serves what the resources say."""
    if getattr(memo, "runtime", None) is None:
        raise kopf.TemporaryError("waiting for configure", delay=0.2)
    memo.serving = serving_reconcile.ServingReconciler(runtime(memo))
    memo.serving.start()


@kopf.on.cleanup()
async def stop_serving(memo: Any, **_: Any) -> None:
    if getattr(memo, "serving", None) is not None:
        await memo.serving.stop()


def peered(memo: Any, **_: Any) -> bool:
    rt = getattr(memo, "runtime", None)
    return bool(rt and rt.settings.peering_name)


@kopf.timer(GROUP, VERSION, PLURAL, interval=serving_reconcile.HEARTBEAT_SECONDS, when=peered)
async def serving_heartbeat(memo: Any, **_: Any) -> None:
    """kopf runs timers on the active peer only: the serving reconcile acts only while these arrive."""
    memo.serving.beat()


@kopf.index(GROUP, VERSION, PLURAL)
async def capacity_queue(body: Any, namespace: Any, name: Any, memo: Any, **_: Any) -> dict[Any, Any]:
    """(namespace, name) -> QueueEntry (created, waiting, slot class): who waits, in which order, for what.

    async although it does no I/O: a sync one runs in kopf's thread pool, where every event of every
    resource queued behind the reconcile handlers' API calls (seconds at 100 resources) before kopf
    could even add its finalizer.
    """
    return {(namespace or "", name): conversion.queue_entry(runtime(memo), body)}


@kopf.index(GROUP, VERSION, PLURAL)
async def publishers(body: Any, **_: Any) -> dict[str, dict[str, Any]]:
    """Published model name -> the OptimizedModels that published it: tenancy's name checks, with no LIST."""
    return tenancy.publisher_entry(body)


@kopf.index("batch", "v1", "jobs", labels={resources.MANAGED_BY: resources.MANAGED_BY_VALUE})
async def conversion_jobs(body: Any, namespace: Any, name: Any, **_: Any) -> dict[Any, Any]:
    """(namespace, job) -> the slot class it holds, or None: the slot count, with no LIST of the cluster's Jobs.

    kopf fills it from the Job watch the operator has anyway (its own Jobs only, by label), and
    after a restart from the initial listing before any handler runs, so the limits survive restarts.
    """
    return {(namespace or "", name): queueing.job_slot(body)}


@kopf.index("v1", "pods", labels={resources.MANAGED_BY: resources.MANAGED_BY_VALUE})
async def stalled_pods(body: Any, namespace: Any, **_: Any) -> dict[Any, Any]:
    """(namespace, job) -> since when each of its Pods cannot start (None: it can): stalled Jobs give their slot up."""
    job = (body.get("metadata", {}).get("labels") or {}).get(resources.JOB_LABEL)
    if not job or queueing.is_cleanup(body):
        return {}
    return {(namespace or "", job): queueing.pod_stalled_since(body)}


@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=10)
@kopf.on.create(GROUP, VERSION, PLURAL, backoff=10)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=10)
def reconcile(body: Any, memo: Any, **kwargs: Any) -> None:
    """One Job per (uid, generation); waits in Pending (WaitingForCapacity) when its class's slots are busy."""
    indexes = Indexes(kwargs["capacity_queue"], kwargs["conversion_jobs"], kwargs["publishers"], kwargs["stalled_pods"])
    with kopf_errors():
        conversion.ensure_conversion(runtime(memo), body, indexes)


@kopf.on.event("batch", "v1", "jobs", labels={resources.MANAGED_BY: resources.MANAGED_BY_VALUE})
def job_event(type: Any, body: Any, memo: Any, logger: Any, **_: Any) -> None:
    """A managed Job changed: move its OptimizedModel's phase. Runs on the initial listing too."""
    conversion.indexed(runtime(memo), body)
    try:
        if type == "DELETED":
            runtime(memo).seen.forget(body, "job")
            conversion.job_lost(runtime(memo), body)
            return
        conversion.track_job(runtime(memo), body)
    except KubeError as exc:  # event handlers are not retried; the next Job event or a restart re-tracks
        runtime(memo).seen.forget(body, "job")
        logger.warning("could not reflect Job %s on its OptimizedModel: %s", body.metadata.name, exc)


@kopf.on.event("v1", "pods", labels={resources.MANAGED_BY: resources.MANAGED_BY_VALUE})
def pod_event(type: Any, body: Any, memo: Any, logger: Any, **_: Any) -> None:
    """A converter Pod changed: its scheduler/kubelet reason (Unschedulable, ImagePullBackOff...) goes on the model."""
    if type == "DELETED":
        runtime(memo).seen.forget(body, "pod")
        return
    try:
        conversion.track_pod(runtime(memo), body)
    except KubeError as exc:  # the next Pod event retries
        runtime(memo).seen.forget(body, "pod")
        logger.warning("could not reflect Pod %s on its OptimizedModel: %s", body.metadata.name, exc)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def model_event(type: Any, body: Any, memo: Any, **_: Any) -> None:
    """Keep the models-ready gauge and what should serve exact, including after a restart (initial listing).

    async for the same reason as capacity_queue: no I/O, so no trip through the busy thread pool.
    """
    ns, name = body.metadata.namespace or "", body.metadata.name or ""
    metrics.observe_phase(ns, name, None if type == "DELETED" else (body.get("status") or {}).get("phase"))
    memo.serving.observe_model(type, body)


def needs_loading(body: Any, **_: Any) -> bool:
    st = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    return bool(st.get("phase") == status.PUBLISHING and st.get("observedGeneration") == generation)


@kopf.timer(GROUP, VERSION, PLURAL, interval=5.0, when=needs_loading)
async def load_into_triton(body: Any, memo: Any, **kwargs: Any) -> None:
    """Publishing → Ready: switch every Triton endpoint to the published version, replica by replica.

    Triton unreachable is ServingReady=False and a retry with backoff; the
    conversion Job is never re-run for it.
    """
    endpoints = await asyncio.to_thread(memo.serving.endpoints_for, body)
    await serving.load_published(runtime(memo), body, endpoints, retry=int(kwargs.get("retry") or 0))


def waits_in_kueue(body: Any, memo: Any = None, **_: Any) -> bool:
    """A resource whose current Job may be queue-managed and not yet admitted: Pending, with a queue name."""
    st = body.get("status") or {}
    if st.get("phase") != status.PENDING or not st.get("jobName"):
        return False
    if st.get("observedGeneration") != (body.get("metadata") or {}).get("generation"):
        return False
    rt = getattr(memo, "runtime", None) if memo is not None else None
    default = rt.settings.converter_queue_name if rt is not None else None
    return bool(((body.get("spec") or {}).get("converter") or {}).get("queueName") or default)


@kopf.daemon(GROUP, VERSION, PLURAL, when=waits_in_kueue, cancellation_timeout=5.0)
async def kueue_watch(body: Any, memo: Any, logger: Any, stopped: Any, **_: Any) -> None:
    """Every ``kueue_poll_seconds``, re-read the Workload of a Job Kueue holds: its changes touch no Job.

    kopf stops the daemon once the resource leaves Pending (the filter no longer matches).
    """
    rt = runtime(memo)
    ns, name = body.metadata.namespace or "", body.metadata.name or ""
    while not stopped:
        try:
            await asyncio.to_thread(conversion.watch_kueue, rt, ns, name)
        except KubeError as exc:  # the next round retries
            logger.warning("could not read Kueue's word on %s/%s: %s", ns, name, exc)
        await stopped.wait(rt.settings.kueue_poll_seconds)


def needs_cleanup(body: Any, memo: Any = None, **_: Any) -> bool:
    """The finalizer only where a delete has work: a Triton that may serve it, or files to remove.

    Elsewhere a delete is immediate, even with no operator running (after
    ``helm uninstall``, say).
    """
    rt = getattr(memo, "runtime", None) if memo is not None else None
    if rt is None:
        return True  # not configured yet: the safe side
    return conversion.cleanup_needed(rt, body)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=needs_cleanup)
async def unload_from_triton(body: Any, memo: Any, logger: Any, **kwargs: Any) -> None:
    """Unload (best effort, bounded), then remove files if deletionPolicy is Delete. Jobs go by GC."""
    try:
        endpoints = await asyncio.to_thread(memo.serving.endpoints_for, body)
    except KubeError as exc:  # never block deletion on the clean-up
        logger.warning("could not list Triton's endpoints to unload from: %s", exc)
        endpoints = []
    await serving.unload(runtime(memo), body, endpoints, logger, kwargs["publishers"])
    try:
        await asyncio.to_thread(conversion.delete_published, runtime(memo), body)
    except KubeError as exc:  # never block deletion on the clean-up
        logger.warning("could not start the clean-up Job: %s", exc)
        post_event(body, warning=True, reason="FilesKept", message=f"could not remove the files: {exc}")
