"""The conversion lifecycle: one Job per (uid, generation), and what its progress means.

Two entry points, both idempotent so that replaying them after an operator
restart is harmless:

* ``ensure_conversion`` (create/update/resume of an OptimizedModel): stop Jobs
  of older generations, wait for a capacity slot, create the ConfigMap and Job
  (a 409 adopts the existing ones).
* ``track_job`` (every event of a managed Job): move the owner's phase
  Pending → Converting → Publishing/Ready or Failed, reading the converter's
  Summary from the Pod's termination message.

Everything the operator learns is written to the resource's status, never kept
only in memory; the in-memory bits (``seen``, the capacity lock) are caches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from edgeopt.artifact import Summary
from edgeopt.errors import SpecError
from edgeopt.operator import diagnosis, metrics, resources, status, tenancy
from edgeopt.operator.kube import Kube, KubeError
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import API_VERSION, KIND, OptimizedModel, parse_manifest, precision_of, uses_onnx

log = logging.getLogger(__name__)


#: (namespace, Job name): how a conversion Job is keyed in the capacity count.
JobKey = tuple[str, str]


@dataclass
class SlotLedger:
    """Who holds a conversion slot: the managed Jobs kopf has indexed, plus this process's reservations.

    The count comes from the index of the operator's own Jobs (``handlers.conversion_jobs``), which
    kopf fills from its watch and, after a restart, from its initial listing before any handler
    runs: no LIST per admission. The index learns of a new Job one watch event after its creation,
    so a Job this process starts is reserved before ``Runtime.capacity_lock`` is released and stays
    reserved until the index has it (or its creation failed): the limit is never exceeded. Call
    everything with the lock held.
    """

    #: (namespace, job) -> its owner (namespace, name), from admission until the index shows the Job
    reserved: dict[JobKey, tuple[str, str]] = field(default_factory=dict)

    def running(self, jobs: Mapping[Any, Any]) -> set[JobKey]:
        """``jobs``: the index, (namespace, job) -> values that are true while the Job holds a slot."""
        for key in [k for k in self.reserved if k in jobs]:
            del self.reserved[key]  # the index has it now, running or not: its word replaces ours
        return {(str(k[0]), str(k[1])) for k, held in jobs.items() if any(held)} | set(self.reserved)

    def holders(self) -> set[tuple[str, str]]:
        """Owners with a reserved slot: not waiting in the queue any more, even before their status says so."""
        return set(self.reserved.values())

    def reserve(self, job: JobKey, owner: tuple[str, str]) -> None:
        self.reserved[job] = owner

    def release(self, job: JobKey) -> None:
        self.reserved.pop(job, None)


@dataclass
class Runtime:
    """What the handlers share: settings, the API wrapper and small caches."""

    settings: OperatorSettings
    kube: Kube
    capacity_lock: threading.Lock = field(default_factory=threading.Lock)
    slots: SlotLedger = field(default_factory=SlotLedger)
    #: (namespace, job name) -> last job state acted upon; avoids re-reading Pods on every Job update.
    seen: dict[tuple[str, str], str] = field(default_factory=dict)


def post_event(obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
    """An Event on ``obj`` (any mapping with apiVersion/kind/metadata; kopf types it as Body)."""
    target: Any = dict(obj)
    # kopf.event, not kopf.info: posting.level (WARNING) keeps kopf's own chatter out, not ours.
    kopf.event(target, type="Warning" if warning else "Normal", reason=reason, message=message)


#: Re-reads after a resourceVersion conflict before giving up (kopf or the next event retries).
CONFLICT_RETRIES = 4


def patch_status_checked(
    rt: Runtime, body: Mapping[str, Any], decide: Callable[[Mapping[str, Any]], dict[str, Any] | None]
) -> Mapping[str, Any] | None:
    """Write ``decide(body)`` onto exactly the status it was decided from; on a conflict, re-read and decide again.

    Two writers (Job events, Pod events, the serving timer) may act on the
    same resource at once; a patch conditional on resourceVersion means one
    never overwrites what the other just wrote from a stale read. Returns the
    body the patch was decided from (None: nothing to do, or the resource is gone).
    """
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta.get("uid")
    for _ in range(CONFLICT_RETRIES):
        patch = decide(body)
        if patch is None:
            return None
        try:
            rt.kube.patch_model_status(ns, name, patch, resource_version=body["metadata"].get("resourceVersion"))
            return body
        except KubeError as exc:
            if exc.status != 409:
                raise
        fresh = rt.kube.read_model(ns, name)
        if fresh is None or fresh["metadata"].get("uid") != uid:
            return None
        body = fresh
    raise KubeError(f"the status of {ns}/{name} kept changing under us; retrying later", status=409, temporary=True)


def model_from_body(body: Mapping[str, Any]) -> OptimizedModel:
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": dict(body.get("spec") or {}),
    }
    return parse_manifest(doc)


def triton_url(rt: Runtime, model: OptimizedModel) -> str | None:
    """The Triton to talk to; a spec URL outside the allow-list is never contacted (no SSRF)."""
    url = model.spec.serving.triton_url
    if url and not tenancy.triton_url_allowed(url, rt.settings):
        return None
    return url or rt.settings.triton_url


def effective_precision(model: OptimizedModel) -> str:
    # The ONNX path converts to its precision with or without TensorRT; the TF path only through TF-TRT.
    return precision_of(model.spec) if model.spec.tensorrt.enabled or uses_onnx(model.spec) else "FP32"


# --------------------------------------------------------------------------- capacity


def queue_entry(body: Mapping[str, Any]) -> tuple[str, bool]:
    """(creationTimestamp, waiting) for the capacity queue index.

    A resource is waiting when its current generation has no Job yet: never
    seen by the operator, or held back with WaitingForCapacity.
    """
    meta = body.get("metadata") or {}
    st = body.get("status") or {}
    if meta.get("deletionTimestamp"):
        return meta.get("creationTimestamp") or "", False
    ready = status.condition(st, status.READY_CONDITION) or {}
    waiting = (
        st.get("observedGeneration") != meta.get("generation") or ready.get("reason") == status.WAITING_FOR_CAPACITY
    )
    if st.get("phase") == status.FAILED and st.get("observedGeneration") == meta.get("generation"):
        waiting = False
    return meta.get("creationTimestamp") or "", waiting


def is_cleanup(job: Mapping[str, Any]) -> bool:
    return ((job.get("metadata") or {}).get("labels") or {}).get(resources.PURPOSE_LABEL) == "cleanup"


def holds_slot(job: Mapping[str, Any]) -> bool:
    """A managed Job that counts against max_concurrent_conversions (the value of the Job index)."""
    return bool(
        not (job.get("metadata") or {}).get("deletionTimestamp")
        and not is_cleanup(job)
        and status.job_state(job) in status.JOB_UNFINISHED
    )


def indexed(rt: Runtime, job: Mapping[str, Any]) -> None:
    """A Job event arrived: the Job index has it now (or has dropped it), so its reservation goes.

    Without this a Job deleted before the next admission looked at the index would keep its slot.
    """
    meta = job.get("metadata") or {}
    with rt.capacity_lock:
        rt.slots.release((meta.get("namespace") or "", meta.get("name") or ""))


def ahead_in_queue(
    queue: Mapping[Any, Any], namespace: str, name: str, created: str, holding: set[tuple[str, str]] | None = None
) -> int:
    """Waiting resources created before this one (ties broken by namespace/name).

    ``holding``: resources that already hold a slot although their status does not say so yet.
    """
    me = (created, namespace, name)
    count = 0
    for key, entries in queue.items():
        if holding and tuple(key) in holding:
            continue
        for created_at, waiting in entries:
            if waiting and (created_at, *key) < me:
                count += 1
    return count


# --------------------------------------------------------------------------- create / update / resume


def ensure_conversion(
    rt: Runtime,
    body: Mapping[str, Any],
    queue: Mapping[Any, Any],
    jobs: Mapping[Any, Any],
    publishers: Mapping[str, Iterable[Any]],
) -> None:
    """Make sure the Job for the current generation exists, and say so in the status.

    ``queue``, ``jobs`` and ``publishers`` are kopf's indexes (see handlers.py).
    Raises kopf.TemporaryError while waiting for capacity; KubeError when the
    API fails. Writes status itself (not through kopf's patch) so that a Job
    adopted after a restart can be tracked at once, in the right order.
    """
    meta = body["metadata"]
    ns, name, uid, gen = meta["namespace"], meta["name"], meta["uid"], int(meta["generation"])
    st = dict(body.get("status") or {})
    owner = dict(body)
    try:
        model = model_from_body(body)
    except SpecError as exc:
        patch = status.invalid_spec(st, gen, str(exc))
        if status.changed(st, patch):
            rt.kube.patch_model_status(ns, name, patch)
            post_event(owner, warning=True, reason="InvalidSpec", message=str(exc))
        return

    if _rolled_back(rt, body, model, st, gen):
        return
    job = resources.job_name(name, gen, uid)
    if st.get("observedGeneration") == gen and st.get("jobName") == job:
        return  # this generation's Job was made and is tracked; it may be finished and TTL-deleted

    mine = [] if never_had_a_job(st, gen) else rt.kube.list_jobs(f"{resources.UID_LABEL}={uid}", namespace=ns)
    for old in mine:
        old_meta = old["metadata"]
        old_gen = int((old_meta.get("labels") or {}).get(resources.GENERATION_LABEL, "0"))
        if old_gen < gen and status.job_state(old) in status.JOB_UNFINISHED:
            rt.kube.delete_job(ns, old_meta["name"])
            post_event(
                owner,
                reason="Superseded",
                message=f"stopped Job {old_meta['name']} of generation {old_gen}: the spec changed",
            )
    existing = next((j for j in mine if j["metadata"]["name"] == job), None)
    if existing is None:
        existing = _admit_and_create(rt, body, model, job, (queue, jobs, publishers))
        if existing is None:
            return  # refused, or created and recorded
    # A previous run of the operator created the Job but died before recording it.
    log.info("adopting the existing Job %s/%s", ns, job)
    rt.kube.patch_model_status(ns, name, status.job_created(st, gen, job, model.model_name, effective_precision(model)))
    rt.seen.pop((ns, job), None)
    track_job(rt, existing)


def never_had_a_job(st: Mapping[str, Any], gen: int) -> bool:
    """Generation 1 with no Job ever recorded: no Job of an older spec can be running.

    The per-uid LIST is then skipped (one call per new resource and per capacity re-check). A Job
    of this very generation may still exist, made by an operator that died before writing the
    status: its create answers 409 and ``_admit_and_create`` adopts it.
    """
    return gen == 1 and not st.get("jobName")


def _admit_and_create(
    rt: Runtime,
    body: Mapping[str, Any],
    model: OptimizedModel,
    job: str,
    indexes: tuple[Mapping[Any, Any], Mapping[Any, Any], Mapping[str, Iterable[Any]]],
) -> dict[str, Any] | None:
    """Tenancy, then a capacity slot, then the ConfigMap and Job; returns a Job that existed already (to adopt)."""
    queue, jobs, publishers = indexes
    meta = body["metadata"]
    ns, name, uid, gen = meta["namespace"], meta["name"], meta["uid"], int(meta["generation"])
    st = dict(body.get("status") or {})
    owner = dict(body)
    refused = tenancy.violations(model, rt.settings)
    if refused:  # before the capacity queue: a refused spec must never hold or wait for a slot
        _refuse(rt, body, Summary(False, tenancy.NOT_ALLOWED, "; ".join(refused)))
        return None
    slot = (ns, job)
    limit = rt.settings.max_concurrent_conversions
    with rt.capacity_lock:  # only bookkeeping in here: the API calls below run in parallel
        running = rt.slots.running(jobs)
        ahead = ahead_in_queue(queue, ns, name, meta.get("creationTimestamp") or "", rt.slots.holders())
        admitted = len(running) + ahead < limit
        if admitted:
            rt.slots.reserve(slot, (ns, name))
    if not admitted:
        patch = status.waiting_for_capacity(st, gen, len(running), limit)
        if status.changed(st, patch):
            rt.kube.patch_model_status(ns, name, patch)
            post_event(
                owner,
                reason=status.WAITING_FOR_CAPACITY,
                message=f"{len(running)} of {limit} conversions running, {ahead} waiting ahead",
            )
        raise kopf.TemporaryError("waiting for a conversion slot", delay=rt.settings.capacity_poll_seconds)
    try:
        # A name another resource has published here is refused before a Job could mount that
        # resource's directory read-write; once admitted, not on every capacity re-check.
        tenancy.check_name(publishers.get(model.model_name, ()), body, model, rt.settings.triton_url)
        made, created = _create_job(rt, body, model, job, gen, uid)
    except tenancy.NameTakenError as exc:
        with rt.capacity_lock:
            rt.slots.release(slot)
        _refuse(rt, body, Summary(False, exc.reason, str(exc)))
        return None
    except KubeError as exc:
        with rt.capacity_lock:
            rt.slots.release(slot)
        if exc.temporary:
            raise
        # The API refuses this Job (an invalid toleration, a quota, RBAC): record it, so this
        # resource leaves the capacity queue instead of blocking every younger one.
        message = f"the conversion Job was refused: {exc}"
        rt.kube.patch_model_status(ns, name, status.job_failed(st, gen, Summary(False, "JobRejected", message)))
        post_event(owner, warning=True, reason="JobRejected", message=message)
        return None
    except BaseException:
        with rt.capacity_lock:
            rt.slots.release(slot)
        raise
    if not created:
        return made
    rt.kube.patch_model_status(ns, name, status.job_created(st, gen, job, model.model_name, effective_precision(model)))
    return None


def _refuse(rt: Runtime, body: Mapping[str, Any], summary: Summary) -> None:
    """Failed at once, with an Event; no Job was made (tenancy: NotAllowed, OwnedByAnotherModel)."""
    meta = body["metadata"]
    st = dict(body.get("status") or {})
    patch = status.job_failed(st, int(meta["generation"]), summary)
    if status.changed(st, patch):
        rt.kube.patch_model_status(meta["namespace"], meta["name"], patch)
        post_event(dict(body), warning=True, reason=summary.reason, message=summary.message)


def _rolled_back(rt: Runtime, body: Mapping[str, Any], model: OptimizedModel, st: dict[str, Any], gen: int) -> bool:
    """``spec.target.version`` names a version in status.history: serve it again, no Job.

    The load itself is the serving timer's (Publishing → Ready), as after a conversion.
    """
    meta = body["metadata"]
    rollback = status.rollback_target(st, gen, model.spec.target.version)
    if rollback is None:
        return (status.condition(st, status.PUBLISHED) or {}).get("reason") == status.ROLLED_BACK and st.get(
            "observedGeneration"
        ) == gen
    for old in rt.kube.list_jobs(f"{resources.UID_LABEL}={meta['uid']}", namespace=meta["namespace"]):
        if status.job_state(old) in status.JOB_UNFINISHED:  # a conversion of an older spec: not wanted now
            rt.kube.delete_job(meta["namespace"], old["metadata"]["name"])
    serving = bool(triton_url(rt, model))
    rt.kube.patch_model_status(meta["namespace"], meta["name"], status.rolling_back(st, gen, rollback, serving=serving))
    post_event(
        dict(body),
        reason=status.ROLLED_BACK,
        message=f"spec.target.version {rollback} is a kept version: serving it again without a conversion",
    )
    return True


def serving_versions(st: Mapping[str, Any]) -> list[int]:
    """What Triton serves, as the status last saw it: never pruned by the next publish."""
    served = st.get("servingVersions")
    if served:
        return [int(v) for v in served]
    return [int(st["modelVersion"])] if st.get("modelVersion") else []


def _create_job(
    rt: Runtime, body: Mapping[str, Any], model: OptimizedModel, job: str, gen: int, uid: str
) -> tuple[dict[str, Any], bool]:
    """The ConfigMap and the Job; (the Job, whether this call made it): a 409 adopts what exists."""
    owner: Any = dict(body)
    cm = resources.manifest_configmap(model, dict(body.get("spec") or {}), name=job, generation=gen, uid=uid)
    st = body.get("status") or {}
    job_body = resources.conversion_job(
        model,
        rt.settings,
        name=job,
        generation=gen,
        uid=uid,
        configmap=job,
        serving_versions=serving_versions(st) or None,
        kept_versions=status.history_versions(st) or None,
    )
    kopf.adopt([cm, job_body], owner=owner)
    rt.kube.create_configmap(cm)
    made, created = rt.kube.create_job(job_body)
    if created:
        post_event(owner, reason="JobCreated", message=f"created Job {job} for generation {gen}")
    return made, created


# --------------------------------------------------------------------------- Job progress


def track_job(rt: Runtime, job: Mapping[str, Any]) -> None:
    """Reflect one managed Job's state on its OptimizedModel."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    ns, job_name = meta.get("namespace"), meta.get("name")
    model_name, uid = resource_name(job), labels.get(resources.UID_LABEL)
    if not (ns and job_name and model_name and uid) or is_cleanup(job):
        return
    gen = int(labels.get(resources.GENERATION_LABEL, "0"))
    state = status.job_state(job)
    key = (ns, job_name)
    if rt.seen.get(key) == state:
        return
    if state in (status.JOB_PENDING, status.JOB_STARTING):
        rt.seen[key] = state  # nothing to say yet: ensure_conversion already wrote Pending
        return

    body = rt.kube.read_model(ns, model_name)
    if body is None or body["metadata"].get("uid") != uid:
        rt.seen[key] = state
        return
    st = body.get("status") or {}
    current_gen = int(body["metadata"].get("generation") or 0)
    if gen != current_gen or st.get("jobName") not in (None, job_name):
        rt.seen[key] = state  # a superseded generation: its result no longer describes the spec
        return
    phase = st.get("phase")

    if state == status.JOB_RUNNING and phase in (None, status.PENDING):

        def running(b: Mapping[str, Any]) -> dict[str, Any] | None:
            fresh = b.get("status") or {}
            if fresh.get("phase") not in (None, status.PENDING) or fresh.get("jobName") not in (None, job_name):
                return None
            return status.job_running(fresh, gen, job_name)

        if patch_status_checked(rt, body, running):
            post_event(body, reason="Converting", message=f"Job {job_name} started converting")
    elif state in (status.JOB_SUCCEEDED, status.JOB_FAILED) and not (
        st.get("observedGeneration") == gen and phase in (status.PUBLISHING, status.READY, status.FAILED)
    ):
        _finished(rt, body, job, state, gen)
    rt.seen[key] = state


def resource_name(obj: Mapping[str, Any]) -> str | None:
    """The OptimizedModel a Job or Pod belongs to, by its full name.

    The model label is cut at 63 characters (a label's limit; a name may be
    253), so it is the last resort: the annotation first, then the owner
    reference the Job carries.
    """
    meta = obj.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(resources.RESOURCE_ANNOTATION)
    if name:
        return str(name)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith("edgeopt.io/"):
            return str(ref.get("name"))
    label = (meta.get("labels") or {}).get(resources.MODEL_LABEL)
    return str(label) if label else None


def track_pod(rt: Runtime, pod: Mapping[str, Any]) -> None:
    """A converter Pod changed: show its own reason (Unschedulable, ImagePullBackOff, OOMKilled...) on the model.

    Reads the OptimizedModel only when the diagnosis changed since this Pod
    was last seen, and writes only what ``status.decide_pod`` says.
    """
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    ns, job_name, uid = meta.get("namespace"), labels.get(resources.JOB_LABEL), labels.get(resources.UID_LABEL)
    model_name = resource_name(pod)
    if not (ns and job_name and uid and model_name) or labels.get(resources.PURPOSE_LABEL) == "cleanup":
        return
    found = diagnosis.diagnose_pod(pod, resources.CONTAINER_NAME)
    key = (ns, f"pod/{meta.get('name')}")
    seen = (found.reason, found.message) if found else ""
    if rt.seen.get(key) == str(seen):
        return
    rt.seen[key] = str(seen)
    if found is None:
        return
    body = rt.kube.read_model(ns, model_name)
    if body is None or body["metadata"].get("uid") != uid or body["metadata"].get("deletionTimestamp"):
        return
    gen = int(labels.get(resources.GENERATION_LABEL, "0"))
    if gen != int(body["metadata"].get("generation") or 0):
        return
    decisions: list[status.PodDecision] = []

    def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
        decision = status.decide_pod(b.get("status"), gen, job_name, found)
        decisions[:] = [decision] if decision else []
        return decision.patch if decision else None

    if patch_status_checked(rt, body, decide) and decisions and decisions[0].event:
        post_event(body, warning=True, reason=found.reason, message=found.message)


def job_lost(rt: Runtime, job: Mapping[str, Any]) -> None:
    """A Job of the current generation vanished before finishing (``kubectl delete job``, say).

    Without this the resource would wait in Pending/Converting forever. Jobs
    that finished (TTL clean-up) or were superseded by a newer generation are
    not news.
    """
    if status.job_state(job) not in status.JOB_UNFINISHED or is_cleanup(job):
        return
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    ns, job_name = meta.get("namespace"), meta.get("name")
    model_name, uid = resource_name(job), labels.get(resources.UID_LABEL)
    if not (ns and job_name and model_name and uid):
        return
    body = rt.kube.read_model(ns, model_name)
    if body is None or body["metadata"].get("uid") != uid or body["metadata"].get("deletionTimestamp"):
        return
    st = body.get("status") or {}
    gen = int(labels.get(resources.GENERATION_LABEL, "0"))
    if gen != body["metadata"].get("generation") or st.get("jobName") != job_name or st.get("phase") in status.TERMINAL:
        return
    message = (
        f"Job {job_name} was deleted before it finished; change the spec (or re-create the resource) to convert again"
    )
    rt.kube.patch_model_status(ns, model_name, status.job_failed(st, gen, Summary(False, "JobDeleted", message)))
    post_event(body, warning=True, reason="JobDeleted", message=message)


def cleanup_needed(rt: Runtime, body: Mapping[str, Any]) -> bool:
    """Whether deleting this resource has anything to do (see handlers.needs_cleanup)."""
    try:
        model = model_from_body(body)
    except SpecError:
        return False
    if model.spec.target.deletion_policy == "Delete":
        return True
    return bool(triton_url(rt, model) and (body.get("status") or {}).get("modelVersion"))


def delete_published(rt: Runtime, body: Mapping[str, Any]) -> None:
    """``deletionPolicy: Delete``: start the Job that removes the published model; Retain keeps it."""
    try:
        model = model_from_body(body)
    except SpecError:
        return
    if model.spec.target.deletion_policy != "Delete":
        return
    uid = body["metadata"]["uid"]
    job = resources.cleanup_job(model, rt.settings, uid=uid)
    if job is None:
        post_event(
            body,
            warning=True,
            reason="FilesKept",
            message=f"deletionPolicy Delete applies to pvc:// repositories; {model.spec.target.repository} "
            "is left as it is",
        )
        return
    _, created = rt.kube.create_job(job)
    if created:
        post_event(
            body,
            reason="DeletingFiles",
            message=f"Job {job['metadata']['name']} removes {model.model_name} from the repository",
        )


def _finished(rt: Runtime, body: dict[str, Any], job: Mapping[str, Any], state: str, gen: int) -> None:
    ns = body["metadata"]["namespace"]
    job_name = job["metadata"]["name"]
    pods = rt.kube.list_pods(ns, f"{resources.JOB_LABEL}={job_name}")
    message, code = status.terminated_message(pods, resources.CONTAINER_NAME)
    succeeded = state == status.JOB_SUCCEEDED
    summary = _failure_summary(job, pods) if not succeeded else None
    if summary is None and message is None and not succeeded:
        reason, msg = status.job_failure(job)
        summary = Summary(ok=False, reason=reason, message=msg)
    elif summary is None:
        summary = status.parse_summary(message, code, succeeded=succeeded)
    seconds = status.job_seconds(job)
    if succeeded and summary.ok:
        keep = 3
        try:
            model = model_from_body(body)
            serving = bool(triton_url(rt, model))
            keep = model.spec.target.versions_to_keep
        except SpecError:
            serving = False
        done = summary

        def succeeded_patch(b: Mapping[str, Any]) -> dict[str, Any] | None:
            if _already_finished(b, gen):
                return None
            return status.job_succeeded(b.get("status"), gen, done, serving=serving, job=job_name, keep=keep)

        if patch_status_checked(rt, body, succeeded_patch) is None:
            return
        metrics.record_conversion("succeeded", summary.reason or "Published", seconds)
        took = f" in {seconds:.0f}s" if seconds is not None else ""
        post_event(body, reason="Published", message=f"converted and published version {summary.version}{took}")
        if not serving:
            post_event(body, reason="Ready", message=f"version {summary.version} is published")
    else:
        failed = summary

        def failed_patch(b: Mapping[str, Any]) -> dict[str, Any] | None:
            return None if _already_finished(b, gen) else status.job_failed(b.get("status"), gen, failed)

        if patch_status_checked(rt, body, failed_patch) is None:
            return
        metrics.record_conversion("failed", summary.reason or "Failed", seconds)
        post_event(body, warning=True, reason=summary.reason or "ConversionFailed", message=summary.message)


def _already_finished(body: Mapping[str, Any], gen: int) -> bool:
    """This generation's result is recorded already (by another worker, or before a restart)."""
    st = body.get("status") or {}
    if int((body.get("metadata") or {}).get("generation") or 0) != gen:
        return True  # a newer spec: this Job's result no longer describes it
    return bool(
        st.get("observedGeneration") == gen and st.get("phase") in (status.PUBLISHING, status.READY, status.FAILED)
    )


def _failure_summary(job: Mapping[str, Any], pods: list[dict[str, Any]]) -> Summary | None:
    """A failed Job's reason when the Pod or the Job says more than the converter could.

    An OOM kill or the deadline stops the converter before it can write its
    Summary (the termination message is then a log tail), so their reason
    comes from kubelet (the container's ``OOMKilled``) and the job controller
    (``DeadlineExceeded``). None: the converter's own Summary says it best.
    """
    reason, message = status.job_failure(job)
    if reason == diagnosis.DEADLINE_EXCEEDED:
        return Summary(ok=False, reason=reason, message=message)
    ended = diagnosis.ended_reason(pods, resources.CONTAINER_NAME)
    if ended is not None:
        return Summary(ok=False, reason=ended.reason, message=ended.message)
    return None
