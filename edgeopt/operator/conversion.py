"""The conversion lifecycle, observe and act: one Job per (uid, generation), and what its progress means.

Every function here reads what it needs (the resource, this uid's Jobs, a finished Job's Pods, the
slot indexes), asks a pure function in ``decide``/``progress``/``queueing`` what to do, and hands the
answer to ``plan.act``. No branch here both decides and calls the API.

* ``ensure_conversion`` (create/update/resume of an OptimizedModel): stop Jobs of older generations,
  wait for a slot of the conversion's class, create the ConfigMap and Job (a 409 adopts them).
* ``track_job``/``track_pod``/``job_lost`` (every event of a managed Job or Pod): move the owner's
  phase Pending → Converting → Publishing/Ready or Failed, with the Pod's own reason while it waits.

Everything the operator learns is written to the resource's status, never kept only in memory; the
in-memory bits (``Runtime.seen``, the slot reservations) are caches. Both entry points are
idempotent, so replaying them after an operator restart is harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeopt.errors import SpecError
from edgeopt.operator import decide, diagnosis, kueue, progress, queueing, resources, status
from edgeopt.operator.kube import KubeError
from edgeopt.operator.plan import act
from edgeopt.operator.plan import patch_status_checked as patch_status_checked  # re-exported: serving.py
from edgeopt.operator.plan import post_event as post_event  # re-exported: serving.py's old import path
from edgeopt.operator.runtime import Runtime, model_from_body, serving_url
from edgeopt.operator.runtime import triton_url as triton_url  # re-exported: serving.py's old import path
from edgeopt.spec import OptimizedModel

log = logging.getLogger(__name__)
#: Slot classes kept by (uid, generation) before the cache starts over.
SLOT_CACHE = 10_000


@dataclass(frozen=True)
class Indexes:
    """kopf's indexes that admission reads (see handlers.py): no LIST per admission."""

    queue: Mapping[Any, Iterable[Any]]  # capacity_queue: (namespace, name) -> [QueueEntry]
    jobs: Mapping[Any, Iterable[Any]]  # conversion_jobs: (namespace, job) -> [SlotClass or None]
    publishers: Mapping[str, Iterable[Any]]  # publishers: model name -> its publishers
    stalls: Mapping[Any, Iterable[str | None]] = field(default_factory=dict)  # stalled_pods: (ns, job) -> [since]


def queue_entry(rt: Runtime, body: Mapping[str, Any]) -> queueing.QueueEntry:
    """The capacity queue index's value; the spec is parsed (milliseconds) only for a resource that may wait.

    A generation's spec never changes, so its class is cached by (uid, generation).
    """
    if not queueing.may_wait(body):
        return queueing.queue_entry(body, None)
    meta = body.get("metadata") or {}
    key = (str(meta.get("uid")), decide.generation(body))
    if key not in rt.slot_classes:
        if len(rt.slot_classes) > SLOT_CACHE:
            rt.slot_classes.clear()
        rt.slot_classes[key] = decide.slot_of_body(body, rt.settings)
    return queueing.queue_entry(body, rt.slot_classes[key])


def indexed(rt: Runtime, job: Mapping[str, Any]) -> None:
    """A Job event arrived: the Job index has it now (or has dropped it), so its reservation goes.

    Without this a Job deleted before the next admission looked at the index would keep its slot.
    """
    meta = job.get("metadata") or {}
    with rt.capacity_lock:
        rt.slots.release((meta.get("namespace") or "", meta.get("name") or ""))


# --------------------------------------------------------------------------- create / update / resume


def ensure_conversion(rt: Runtime, body: Mapping[str, Any], indexes: Indexes) -> None:
    """Make sure the Job for the current generation exists, and say so in the status.

    Raises kopf.TemporaryError while waiting for a slot; KubeError when the API fails. Writes status
    itself (not through kopf's patch) so that a Job adopted after a restart can be tracked at once.
    """
    try:
        model = model_from_body(body)
    except SpecError as exc:
        act(rt, body, decide.spec_error(body, exc))
        return
    meta = body["metadata"]
    mine: list[Any] = []
    if decide.needs_jobs(body, model):
        mine = rt.kube.list_jobs(f"{resources.UID_LABEL}={meta['uid']}", namespace=meta["namespace"])
    step = decide.generation_step(body, model, mine, serving=bool(serving_url(rt.settings, model)))
    act(rt, body, step.plan)
    if step.next == decide.ADOPT and step.job is not None:
        log.info("adopting the existing Job %s/%s", meta["namespace"], step.job["metadata"]["name"])
        _adopt(rt, body, model, step.job)
    elif step.next == decide.ADMIT:
        _admit_and_create(rt, body, model, indexes)


def _adopt(rt: Runtime, body: Mapping[str, Any], model: OptimizedModel, job: Mapping[str, Any]) -> None:
    act(rt, body, decide.adopt(body, model, job["metadata"]["name"]))
    rt.seen.forget(job, "job")
    track_job(rt, job)
    recheck_pods(rt, body["metadata"]["namespace"], job["metadata"]["name"])


def _admission(rt: Runtime, body: Mapping[str, Any], slot: queueing.SlotClass, indexes: Indexes) -> queueing.Admission:
    """Observe the slots of ``slot``'s class under the lock, decide, and reserve when admitted."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    settings = rt.settings
    with rt.capacity_lock:  # only bookkeeping in here: the API calls run in parallel
        state = queueing.SlotState(
            queue=indexes.queue,
            running=rt.slots.running(indexes.jobs),
            holders=rt.slots.holders(),
            stalls=indexes.stalls,
            now=dt.datetime.now(dt.timezone.utc),
        )
        me = (meta.get("creationTimestamp") or "", ns, name)
        limit = settings.conversion_limit(slot.resource, slot.product)
        admission = queueing.decide_admission(me, slot, limit, state, settings.capacity_stall_seconds)
        if admission.admitted:
            rt.slots.reserve((ns, decide.job_name(body)), (ns, name), slot)
    return admission


def _admit_and_create(rt: Runtime, body: Mapping[str, Any], model: OptimizedModel, indexes: Indexes) -> None:
    """Tenancy, then a slot of the conversion's class (none when Kueue admits it), then the ConfigMap and Job."""
    refused = decide.refusal(body, model, rt.settings)
    if refused is not None:
        act(rt, body, refused)
        return
    slot = decide.slot_of(model, rt.settings)
    if slot is not None:
        admission = _admission(rt, body, slot, indexes)
        if not admission.admitted:
            act(rt, body, decide.waiting(body, admission, rt.settings.capacity_poll_seconds))  # raises: retry
            return
    key = (body["metadata"]["namespace"], decide.job_name(body))
    try:
        plan = decide.name_taken(body, model, indexes.publishers, rt.settings)
        if plan is not None:
            _release(rt, key)
            act(rt, body, plan)
            return
        acted = act(rt, body, decide.create_job(body, model, key[1], rt.settings))
    except KubeError as exc:
        _release(rt, key)
        if exc.temporary:
            raise
        act(rt, body, decide.rejected(body, str(exc)))
        return
    except BaseException:
        _release(rt, key)
        raise
    made, created = acted.jobs[-1] if acted.jobs else (None, True)
    if made is not None and not created:
        log.info("adopting the existing Job %s/%s", *key)
        rt.seen.forget(made, "job")
        track_job(rt, made)
    if made is not None:
        recheck_pods(rt, *key)


def _release(rt: Runtime, key: queueing.JobKey) -> None:
    with rt.capacity_lock:
        rt.slots.release(key)


# --------------------------------------------------------------------------- Job and Pod progress


def track_job(rt: Runtime, job: Mapping[str, Any]) -> None:
    """Reflect one managed Job's state on its OptimizedModel."""
    ref = progress.ref_of(job)
    if ref is None:
        return
    state = status.job_state(job)
    key = rt.seen.key(job, "job")
    if rt.seen.same(key, state):
        return
    if state == status.JOB_PENDING and kueue.queue_of(job) is not None and kueue.suspended(job):
        _kueue_word(rt, job, ref)  # Kueue holds it: its Workload speaks (and watch_kueue re-reads it)
        rt.seen.remember(key, state)
        return
    if state in (status.JOB_PENDING, status.JOB_STARTING):
        rt.seen.remember(key, state)  # nothing to say yet: ensure_conversion already wrote Pending
        return
    body = rt.kube.read_model(ref.namespace, ref.model)
    plan = progress.started(body, ref, state)
    if plan is None and body is not None and progress.finished_news(body, ref, state):
        pods = rt.kube.list_pods(ref.namespace, f"{resources.JOB_LABEL}={ref.job}")
        plan = progress.finished(body, ref, job, state, pods, rt.settings)
    if plan is not None and body is not None:
        act(rt, body, plan)
    rt.seen.remember(key, state)


def _kueue_word(rt: Runtime, job: Mapping[str, Any], ref: progress.Ref, body: Mapping[str, Any] | None = None) -> None:
    """Observe the Job's Workload, decide (``progress.queued``), act; ``body`` when already read."""
    found = kueue.observe(rt.kube, job)
    if found is None:
        return
    body = body if body is not None else rt.kube.read_model(ref.namespace, ref.model)
    plan = progress.queued(body, ref, found)
    if plan is not None and body is not None:
        act(rt, body, plan)


def watch_kueue(rt: Runtime, namespace: str, name: str) -> None:
    """Re-read the Workload of a resource whose Job waits, suspended, for Kueue (the ``kueue_watch`` daemon).

    A Workload changing (quota reserved, evicted, a new pending reason) does not
    touch its Job, so no Job event would say so.
    """
    body = rt.kube.read_model(namespace, name)
    job_name = ((body or {}).get("status") or {}).get("jobName")
    if body is None or not job_name:
        return
    jobs = rt.kube.list_jobs(f"{resources.UID_LABEL}={body['metadata']['uid']}", namespace=namespace)
    job = next((j for j in jobs if (j.get("metadata") or {}).get("name") == job_name), None)
    ref = progress.ref_of(job) if job is not None else None
    if job is None or ref is None or status.job_state(job) != status.JOB_PENDING or not kueue.suspended(job):
        return
    _kueue_word(rt, job, ref, body)


def track_pod(rt: Runtime, pod: Mapping[str, Any]) -> None:
    """A converter Pod changed: show its own reason (Unschedulable, ImagePullBackOff, OOMKilled...) on the model.

    Reads the OptimizedModel only when the diagnosis changed since this Pod was last seen.
    """
    ref = progress.ref_of(pod, pod=True)
    if ref is None:
        return
    found = diagnosis.diagnose_pod(pod, resources.CONTAINER_NAME)
    key, seen = rt.seen.key(pod, "pod"), progress.pod_seen(found)
    if rt.seen.same(key, seen):
        return
    rt.seen.remember(key, seen)
    if found is None:
        return
    body = rt.kube.read_model(ref.namespace, ref.model)
    plan = progress.pod_diagnosed(body, ref, found)
    if plan is not None and body is not None:
        act(rt, body, plan)
    elif progress.awaits_job_name(body, ref):
        rt.seen.forget(pod, "pod")  # too early: recheck_pods looks again once the status names the Job


def recheck_pods(rt: Runtime, namespace: str, job_name: str) -> None:
    """Look at a just-created (or adopted) Job's Pods once the status names it.

    The Job is created before the status records its name, and a Pod with no GPU to go to is
    Unschedulable within a second; if that event came first, nothing would show it: the scheduler
    writes no new Pod status while the reason stays the same. Best effort: the Pod's next event
    also does it.
    """
    try:
        pods = rt.kube.list_pods(namespace, f"{resources.JOB_LABEL}={job_name}")
        for pod in pods:
            rt.seen.forget(pod, "pod")
            track_pod(rt, pod)
    except KubeError as exc:
        log.warning("could not look at the Pods of Job %s/%s: %s", namespace, job_name, exc)


def job_lost(rt: Runtime, job: Mapping[str, Any]) -> None:
    """A Job of the current generation vanished before finishing: Failed with JobDeleted."""
    ref = progress.ref_of(job)
    if ref is None or status.job_state(job) not in status.JOB_UNFINISHED:
        return
    body = rt.kube.read_model(ref.namespace, ref.model)
    plan = progress.lost(body, ref, job)
    if plan is not None and body is not None:
        act(rt, body, plan)


def cleanup_needed(rt: Runtime, body: Mapping[str, Any]) -> bool:
    """Whether deleting this resource has anything to do (see handlers.needs_cleanup)."""
    return progress.cleanup_needed(body, rt.settings)


def delete_published(rt: Runtime, body: Mapping[str, Any]) -> None:
    """``deletionPolicy: Delete``: start the Job that removes the published model; Retain keeps it."""
    act(rt, body, progress.cleanup(body, rt.settings))
