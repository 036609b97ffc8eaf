"""What a conversion calls for, decided from what was observed: pure functions that return a Plan.

``conversion.py`` observes (reads the resource, lists this uid's Jobs and a finished Job's Pods,
looks at the slot indexes) and acts (``plan.act``); every choice in between is here, and
table-tested without an API server (tests/unit/test_operator_decide.py). A ``Plan``'s status part
is re-decided on the fresh body when another writer got there first, so each one checks that what
it is about (this generation, this Job) is still what the resource says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from edgeopt.artifact import Summary
from edgeopt.errors import SpecError
from edgeopt.operator import queueing, resources, status, tenancy
from edgeopt.operator.plan import Event, Plan, Retry, StatusDecision, when_changed
from edgeopt.operator.runtime import effective_precision, model_from_body
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import OptimizedModel

ADMIT, ADOPT, DONE = "admit", "adopt", "done"


def generation(body: Mapping[str, Any]) -> int:
    return int((body.get("metadata") or {}).get("generation") or 0)


def job_name(body: Mapping[str, Any]) -> str:
    """This generation's Job: a function of (name, generation, uid), so a restart finds it again."""
    meta = body["metadata"]
    return resources.job_name(meta["name"], generation(body), meta["uid"])


def tracked(st: Mapping[str, Any], gen: int, job: str) -> bool:
    """This generation's Job was made and recorded; it may be finished and TTL-deleted since."""
    return st.get("observedGeneration") == gen and st.get("jobName") == job


def rolled_back(st: Mapping[str, Any], gen: int) -> bool:
    return (status.condition(st, status.PUBLISHED) or {}).get("reason") == status.ROLLED_BACK and st.get(
        "observedGeneration"
    ) == gen


def never_had_a_job(st: Mapping[str, Any], gen: int) -> bool:
    """Generation 1 with no Job ever recorded: no Job of an older spec can be running.

    The per-uid LIST is then skipped (one call per new resource and per capacity re-check). A Job of
    this very generation may still exist, made by an operator that died before writing the status:
    its create answers 409 and the Job is adopted.
    """
    return gen == 1 and not st.get("jobName")


def needs_jobs(body: Mapping[str, Any], model: OptimizedModel) -> bool:
    """Whether deciding needs this uid's Jobs listed: to stop older ones, or to adopt one."""
    st, gen = body.get("status") or {}, generation(body)
    if status.rollback_target(st, gen, model.spec.target.version) is not None:
        return True
    if rolled_back(st, gen) or tracked(st, gen, job_name(body)):
        return False
    return not never_had_a_job(st, gen)


def _job_gen(job: Mapping[str, Any]) -> int:
    return int(((job.get("metadata") or {}).get("labels") or {}).get(resources.GENERATION_LABEL, "0"))


def _unfinished(jobs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [j for j in jobs if status.job_state(j) in status.JOB_UNFINISHED]


# --------------------------------------------------------------------------- create / update / resume


def spec_error(body: Mapping[str, Any], exc: SpecError) -> Plan:
    gen = generation(body)
    return Plan(
        status=when_changed(lambda st: status.invalid_spec(st, gen, str(exc))),
        events=(Event("InvalidSpec", str(exc), warning=True),),
    )


@dataclass(frozen=True)
class Step:
    """A Plan, and what comes after it: nothing, admission, or adopting ``job`` (made before a restart)."""

    plan: Plan
    next: str = DONE
    job: Mapping[str, Any] | None = None


def generation_step(
    body: Mapping[str, Any], model: OptimizedModel, jobs: list[Mapping[str, Any]], *, serving: bool
) -> Step:
    """Rollback, nothing to do, or stop the older generations' Jobs and then adopt or admit this one's."""
    st, gen = body.get("status") or {}, generation(body)
    target = status.rollback_target(st, gen, model.spec.target.version)
    if target is not None:
        return Step(rollback(body, model, jobs, target, serving=serving))
    job = job_name(body)
    if rolled_back(st, gen) or tracked(st, gen, job):
        return Step(Plan())
    older = [j for j in _unfinished(jobs) if _job_gen(j) < gen]
    plan = Plan(
        delete_jobs=tuple(j["metadata"]["name"] for j in older),
        events=tuple(
            Event("Superseded", f"stopped Job {j['metadata']['name']} of generation {_job_gen(j)}: the spec changed")
            for j in older
        ),
    )
    existing = next((j for j in jobs if j["metadata"]["name"] == job), None)
    return Step(plan, ADOPT, existing) if existing is not None else Step(plan, ADMIT)


def rollback(
    body: Mapping[str, Any], model: OptimizedModel, jobs: list[Mapping[str, Any]], version: int, *, serving: bool
) -> Plan:
    """``spec.target.version`` names a version in status.history: serve it again, no Job.

    The load itself is the serving timer's (Publishing → Ready), as after a conversion. Unfinished
    Jobs of this resource convert an older spec: not wanted now.
    """
    gen, wanted = generation(body), model.spec.target.version

    def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
        st = b.get("status") or {}
        if generation(b) != gen or status.rollback_target(st, gen, wanted) is None:
            return None
        return status.rolling_back(st, gen, version, serving=serving)

    message = f"spec.target.version {version} is a kept version: serving it again without a conversion"
    return Plan(
        delete_jobs=tuple(j["metadata"]["name"] for j in _unfinished(jobs)),
        status=decide,
        events=(Event(status.ROLLED_BACK, message),),
    )


def job_created(body: Mapping[str, Any], model: OptimizedModel, job: str) -> StatusDecision:
    gen = generation(body)

    def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
        st = b.get("status") or {}
        if generation(b) != gen or tracked(st, gen, job):
            return None
        return status.job_created(st, gen, job, model.model_name, effective_precision(model))

    return decide


def adopt(body: Mapping[str, Any], model: OptimizedModel, job: str) -> Plan:
    """A previous run of the operator created the Job but died before recording it."""
    return Plan(status=job_created(body, model, job))


def refuse(body: Mapping[str, Any], summary: Summary) -> Plan:
    """Failed at once, with an Event; no Job is made (tenancy: NotAllowed, OwnedByAnotherModel; JobRejected)."""
    gen = generation(body)
    return Plan(
        status=when_changed(lambda st: status.job_failed(st, gen, summary)),
        events=(Event(summary.reason or "ConversionFailed", summary.message, warning=True),),
    )


def refusal(body: Mapping[str, Any], model: OptimizedModel, settings: OperatorSettings) -> Plan | None:
    """A spec the allow-lists refuse, before the capacity queue: it must never hold or wait for a slot."""
    refused = tenancy.violations(model, settings)
    return refuse(body, Summary(False, tenancy.NOT_ALLOWED, "; ".join(refused))) if refused else None


def name_taken(
    body: Mapping[str, Any], model: OptimizedModel, publishers: Mapping[str, Iterable[Any]], settings: OperatorSettings
) -> Plan | None:
    """A model name another resource published here is refused before a Job could mount its directory."""
    try:
        tenancy.check_name(publishers.get(model.model_name, ()), body, model, settings.triton_url)
    except tenancy.NameTakenError as exc:
        return refuse(body, Summary(False, exc.reason, str(exc)))
    return None


def rejected(body: Mapping[str, Any], error: str) -> Plan:
    """The API refuses the Job (an invalid toleration, a quota, RBAC): recorded, so it leaves the queue."""
    return refuse(body, Summary(False, "JobRejected", f"the conversion Job was refused: {error}"))


def queue_name(model: OptimizedModel, settings: OperatorSettings) -> str | None:
    """The Kueue LocalQueue that admits this conversion; None: the operator's own slots do."""
    return model.spec.converter.queue_name or settings.converter_queue_name


def slot_of(model: OptimizedModel, settings: OperatorSettings) -> queueing.SlotClass | None:
    """The slot class this conversion waits for; None when Kueue admits it (no slot of ours)."""
    if queue_name(model, settings):
        return None
    return queueing.slot_class(resources.job_resources(model, settings), resources.job_node_selector(model, settings))


def slot_of_body(body: Mapping[str, Any], settings: OperatorSettings) -> queueing.SlotClass | None:
    """``slot_of`` for a resource as kopf sees it; None for an invalid spec too (it fails, never waits)."""
    try:
        return slot_of(model_from_body(body), settings)
    except SpecError:
        return None


def queue_entry(body: Mapping[str, Any], settings: OperatorSettings) -> queueing.QueueEntry:
    """The capacity queue index's value for one resource (handlers.capacity_queue)."""
    return queueing.queue_entry(body, slot_of_body(body, settings))


def waiting(body: Mapping[str, Any], admission: queueing.Admission, poll_seconds: float) -> Plan:
    """Not admitted: say where it stands in its class (one Event when it starts waiting), and re-check."""
    gen = generation(body)
    place = f"{queueing.ordinal(admission.position)} in queue for {admission.slot.label()}"

    def transition(st: Mapping[str, Any]) -> dict[str, Any]:
        return status.waiting_for_capacity(
            st, gen, admission.running, admission.limit, place=place, stalled=admission.stalled
        )

    st = body.get("status") or {}
    new = (status.condition(st, status.READY_CONDITION) or {}).get("reason") != status.WAITING_FOR_CAPACITY
    message = f"{place}: {admission.running} of {admission.limit} conversions are running"
    return Plan(
        status=when_changed(transition),
        events=(Event(status.WAITING_FOR_CAPACITY, message),) if new else (),
        retry=Retry(f"waiting for a conversion slot: {place}", poll_seconds),
    )


def serving_versions(st: Mapping[str, Any]) -> list[int]:
    """What Triton serves, as the status last saw it: never pruned by the next publish."""
    served = st.get("servingVersions")
    if served:
        return [int(v) for v in served]
    return [int(st["modelVersion"])] if st.get("modelVersion") else []


def create_job(body: Mapping[str, Any], model: OptimizedModel, job: str, settings: OperatorSettings) -> Plan:
    """The ConfigMap and the Job (a 409 adopts what exists), then Pending with JobCreated."""
    meta = body["metadata"]
    gen, uid = generation(body), meta["uid"]
    st = body.get("status") or {}
    cm = resources.manifest_configmap(model, dict(body.get("spec") or {}), name=job, generation=gen, uid=uid)
    job_body = resources.conversion_job(
        model,
        settings,
        name=job,
        generation=gen,
        uid=uid,
        configmap=job,
        serving_versions=serving_versions(st) or None,
        kept_versions=status.history_versions(st) or None,
        queue_name=queue_name(model, settings),  # Kueue's: created suspended, with its LocalQueue label
    )
    kopf.adopt([cm, job_body], owner=dict(body))  # type: ignore[arg-type]
    return Plan(
        create=(cm, job_body),
        status=job_created(body, model, job),
        on_created=(Event("JobCreated", f"created Job {job} for generation {gen}"),),
    )
