"""What a managed Job's or Pod's progress means for its OptimizedModel: pure functions that return a Plan.

Pending → Converting → Publishing/Ready or Failed, the Pod's own reason while it waits, a Job
deleted by hand, and the clean-up Job of a deleted resource. ``conversion.py`` observes and acts;
tests/unit/test_operator_decide.py covers every branch here without an API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeopt.artifact import Summary
from edgeopt.errors import SpecError
from edgeopt.operator import diagnosis, kueue, resources, status
from edgeopt.operator.decide import generation
from edgeopt.operator.plan import Event, Plan
from edgeopt.operator.runtime import model_from_body, serving_url
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import KIND


@dataclass(frozen=True)
class Ref:
    """Whom a managed Job or Pod belongs to, from its own labels and annotations."""

    namespace: str
    job: str  # the Job's name
    model: str  # the OptimizedModel's name
    uid: str
    generation: int


def resource_name(obj: Mapping[str, Any]) -> str | None:
    """The OptimizedModel a Job or Pod belongs to, by its full name.

    The model label is cut at 63 characters (a label's limit; a name may be 253), so it is the last
    resort: the annotation first, then the owner reference the Job carries.
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


def ref_of(obj: Mapping[str, Any], *, pod: bool = False) -> Ref | None:
    """None for a clean-up Job/Pod, or one missing what links it to a resource."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(resources.PURPOSE_LABEL) == "cleanup":
        return None
    ns, uid, model = meta.get("namespace"), labels.get(resources.UID_LABEL), resource_name(obj)
    job = labels.get(resources.JOB_LABEL) if pod else meta.get("name")
    if not (ns and job and uid and model):
        return None
    return Ref(str(ns), str(job), model, str(uid), int(labels.get(resources.GENERATION_LABEL, "0")))


def owns(body: Mapping[str, Any] | None, ref: Ref) -> bool:
    """The resource read back is the one the Job was made for (not a re-created namesake)."""
    return body is not None and (body.get("metadata") or {}).get("uid") == ref.uid


def current(body: Mapping[str, Any], ref: Ref) -> bool:
    """The Job converts the resource's current spec and is the one the status records (or none yet)."""
    st = body.get("status") or {}
    return ref.generation == generation(body) and st.get("jobName") in (None, ref.job)


def already_finished(body: Mapping[str, Any], gen: int) -> bool:
    """This generation's result is recorded already (by another worker, or before a restart)."""
    st = body.get("status") or {}
    if generation(body) != gen:
        return True  # a newer spec: this Job's result no longer describes it
    return bool(
        st.get("observedGeneration") == gen and st.get("phase") in (status.PUBLISHING, status.READY, status.FAILED)
    )


def started(body: Mapping[str, Any] | None, ref: Ref, state: str) -> Plan | None:
    """A Job of the current generation started converting: Pending → Converting."""
    if not owns(body, ref) or body is None or not current(body, ref) or state != status.JOB_RUNNING:
        return None
    if (body.get("status") or {}).get("phase") not in (None, status.PENDING):
        return None

    def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
        fresh = b.get("status") or {}
        if fresh.get("phase") not in (None, status.PENDING) or fresh.get("jobName") not in (None, ref.job):
            return None
        return status.job_running(fresh, ref.generation, ref.job)

    return Plan(status=decide, events=(Event("Converting", f"Job {ref.job} started converting"),))


def finished_news(body: Mapping[str, Any] | None, ref: Ref, state: str) -> bool:
    """A Job of the current generation ended and the status does not say so yet: read its Pods."""
    if not owns(body, ref) or body is None or not current(body, ref):
        return False
    return state in (status.JOB_SUCCEEDED, status.JOB_FAILED) and not already_finished(body, ref.generation)


def job_summary(job: Mapping[str, Any], state: str, pods: list[dict[str, Any]]) -> Summary:
    """The converter's Summary from its termination message, or what kubelet and the Job say instead.

    An OOM kill or the deadline stops the converter before it can write its Summary (the termination
    message is then a log tail), so their reason comes from kubelet (the container's ``OOMKilled``)
    and the job controller (``DeadlineExceeded``).
    """
    succeeded = state == status.JOB_SUCCEEDED
    message, code = status.terminated_message(pods, resources.CONTAINER_NAME)
    if not succeeded:
        reason, text = status.job_failure(job)
        if reason == diagnosis.DEADLINE_EXCEEDED:
            return Summary(ok=False, reason=reason, message=text)
        ended = diagnosis.ended_reason(pods, resources.CONTAINER_NAME)
        if ended is not None:
            return Summary(ok=False, reason=ended.reason, message=ended.message)
        if message is None:
            return Summary(ok=False, reason=reason, message=text)
    return status.parse_summary(message, code, succeeded=succeeded)


def finished(
    body: Mapping[str, Any],
    ref: Ref,
    job: Mapping[str, Any],
    state: str,
    pods: list[dict[str, Any]],
    settings: OperatorSettings,
) -> Plan:
    """Published (Publishing or Ready), or Failed with the converter's own reason."""
    summary = job_summary(job, state, pods)
    seconds = status.job_seconds(job)
    gen = ref.generation
    if state == status.JOB_SUCCEEDED and summary.ok:
        keep, serving = 3, False
        try:
            model = model_from_body(body)
            serving, keep = bool(serving_url(settings, model)), model.spec.target.versions_to_keep
        except SpecError:
            pass

        def succeeded(b: Mapping[str, Any]) -> dict[str, Any] | None:
            if already_finished(b, gen):
                return None
            return status.job_succeeded(b.get("status"), gen, summary, serving=serving, job=ref.job, keep=keep)

        took = f" in {seconds:.0f}s" if seconds is not None else ""
        events = [Event("Published", f"converted and published version {summary.version}{took}")]
        if not serving:
            events.append(Event("Ready", f"version {summary.version} is published"))
        metric = ("succeeded", summary.reason or "Published", seconds)
        return Plan(status=succeeded, events=tuple(events), metric=metric)

    def failed(b: Mapping[str, Any]) -> dict[str, Any] | None:
        return None if already_finished(b, gen) else status.job_failed(b.get("status"), gen, summary)

    reason = summary.reason or "ConversionFailed"
    return Plan(
        status=failed,
        events=(Event(reason, summary.message, warning=True),),
        metric=("failed", summary.reason or "Failed", seconds),
    )


def lost(body: Mapping[str, Any] | None, ref: Ref, job: Mapping[str, Any]) -> Plan | None:
    """A Job of the current generation vanished before finishing (``kubectl delete job``, say).

    Without this the resource would wait in Pending/Converting forever. Jobs that finished (TTL
    clean-up) or were superseded by a newer generation are not news.
    """
    if status.job_state(job) not in status.JOB_UNFINISHED or not owns(body, ref) or body is None:
        return None
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    message = (
        f"Job {ref.job} was deleted before it finished; change the spec (or re-create the resource) to convert again"
    )
    summary = Summary(False, "JobDeleted", message)

    def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
        st = b.get("status") or {}
        if ref.generation != generation(b) or st.get("jobName") != ref.job or st.get("phase") in status.TERMINAL:
            return None
        return status.job_failed(st, ref.generation, summary)

    if decide(body) is None:
        return None
    return Plan(status=decide, events=(Event("JobDeleted", message, warning=True),))


def pod_seen(found: diagnosis.Diagnosis | None) -> str:
    """What the seen cache keeps for a Pod: its diagnosis, so an unchanged one costs no read."""
    return str((found.reason, found.message)) if found else ""


def awaits_job_name(body: Mapping[str, Any] | None, ref: Ref) -> bool:
    """The status does not name this Job yet, but will: the Job is created before the status says so.

    A Pod can be diagnosed (Unschedulable at once, say) in between. Its diagnosis must then be looked
    at again once the status names the Job (``conversion.recheck_pods``), not taken as seen.
    """
    if not owns(body, ref) or body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return False
    st = body.get("status") or {}
    if ref.generation != generation(body) or st.get("phase") in status.TERMINAL:
        return False
    return st.get("observedGeneration") != ref.generation or st.get("jobName") != ref.job


def pod_diagnosed(
    body: Mapping[str, Any] | None, ref: Ref, found: diagnosis.Diagnosis | None, *, warning: bool = True
) -> Plan | None:
    """A converter Pod's own reason (Unschedulable, ImagePullBackOff, OOMKilled...) on the model.

    One Event per distinct reason (``status.decide_pod``), however often the Pod is seen.
    """
    if found is None or not owns(body, ref) or body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if ref.generation != generation(body):
        return None
    first = status.decide_pod(body.get("status"), ref.generation, ref.job, found)
    if first is None:
        return None

    def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
        decision = status.decide_pod(b.get("status"), ref.generation, ref.job, found)
        return decision.patch if decision else None

    events = (Event(found.reason, found.message, warning=warning),) if first.event else ()
    return Plan(status=decide, events=events)


def queued(body: Mapping[str, Any] | None, ref: Ref, found: diagnosis.Diagnosis | None) -> Plan | None:
    """Kueue's word on a suspended queue-managed Job (``kueue.kueue_diagnosis``), the way a Pod's is shown.

    Converted=Unknown, Ready=False with Kueue's reason and message, for the
    current generation's Job while it is Pending; one Event per change of
    reason (Normal while it queues, Warning when evicted or when Kueue is
    missing). None when there is nothing new to say.
    """
    warning = found is not None and found.reason in (kueue.EVICTED_BY_KUEUE, kueue.WAITING_FOR_KUEUE)
    return pod_diagnosed(body, ref, found, warning=warning)


def cleanup_needed(body: Mapping[str, Any], settings: OperatorSettings) -> bool:
    """Whether deleting this resource has anything to do: files to remove, or a Triton that may serve it."""
    try:
        model = model_from_body(body)
    except SpecError:
        return False
    if model.spec.target.deletion_policy == "Delete":
        return True
    return bool(serving_url(settings, model) and (body.get("status") or {}).get("modelVersion"))


def cleanup(body: Mapping[str, Any], settings: OperatorSettings) -> Plan:
    """``deletionPolicy: Delete``: the Job that removes the published model; Retain keeps it."""
    try:
        model = model_from_body(body)
    except SpecError:
        return Plan()
    if model.spec.target.deletion_policy != "Delete":
        return Plan()
    job = resources.cleanup_job(model, settings, uid=body["metadata"]["uid"])
    if job is None:
        message = (
            f"deletionPolicy Delete applies to pvc:// repositories; {model.spec.target.repository} is left as it is"
        )
        return Plan(events=(Event("FilesKept", message, warning=True),))
    message = f"Job {job['metadata']['name']} removes {model.model_name} from the repository"
    return Plan(create=(job,), on_created=(Event("DeletingFiles", message),))
