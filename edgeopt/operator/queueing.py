"""Conversion slots per resource class: who may start a Job now, who waits, and in which order.

GPUs are scarce, so GPU conversions are limited per GPU kind: the extended resource the converter
asks for and, where its nodeSelector names one, the GPU product. A conversion that asks for no GPU
is in the CPU class with its own limit, so it never waits behind a GPU conversion that cannot
schedule. Within a class: first in, first out (creationTimestamp, then namespace/name, so every
replica agrees on the order).

A Job whose Pod stays Unschedulable or in image-pull back-off for longer than
``capacity_stall_seconds`` gives its slot to the next in its class. It keeps its Job (its place in
the scheduler's queue) and its status reason (Unschedulable, ImagePullBackOff). When its Pod
schedules at last, the class runs over its limit until a Job ends: the limit is the operator's
courtesy to a scarce resource, and the scheduler still enforces how many GPUs a node has. The other
choice, deleting the stalled Job and queueing it again, would lose that place and churn Pods.

A conversion with a Kueue queue name (``spec.converter.queueName`` or ``converter_queue_name``) is
admitted by Kueue: it neither waits for nor holds one of these slots.

Pure functions over kopf's indexes (see handlers.py), except ``SlotLedger``, the in-memory
reservations that bridge the moment between creating a Job and the index seeing it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from edgeopt.operator import diagnosis, kueue, resources, status

#: (namespace, Job name): how a conversion Job is keyed in the slot count.
JobKey = tuple[str, str]
#: The label Kueue reads on a Job; a Job that carries it is Kueue's to admit, not ours.
QUEUE_NAME_LABEL = kueue.QUEUE_LABEL
#: nodeSelector keys that name a GPU product (NVIDIA GPU feature discovery's, and the like).
PRODUCT_LABEL_SUFFIX = "gpu.product"
#: Pod reasons that mean the Job cannot start by itself; after capacity_stall_seconds its slot goes.
STALL_REASONS = (diagnosis.UNSCHEDULABLE, "ImagePullBackOff", "ErrImagePull")
_TIME = "%Y-%m-%dT%H:%M:%SZ"


class SlotClass(NamedTuple):
    """What a conversion waits for: ("", "") = no GPU; else the GPU resource and product ("" = any)."""

    resource: str = ""
    product: str = ""

    def label(self) -> str:
        if not self.resource:
            return "conversions without a GPU"
        return f"{self.resource}, product {self.product}" if self.product else self.resource


#: The class of a conversion that asks for no GPU.
NO_GPU = SlotClass()


class QueueEntry(NamedTuple):
    """One OptimizedModel in the capacity queue index."""

    created: str
    waiting: bool
    slot: SlotClass = NO_GPU


def is_gpu(resource: str) -> bool:
    return resource in resources.GPU_RESOURCES or resource.endswith("/gpu")


def _asks_for(quantity: Any) -> bool:
    try:
        return float(str(quantity)) > 0
    except ValueError:
        return True  # a quantity the API accepted (e.g. "1k"): more than none


def slot_class(container_resources: Mapping[str, Any] | None, node_selector: Mapping[str, Any] | None) -> SlotClass:
    """The class of a converter container with these resources, on nodes with this selector."""
    asked: dict[str, Any] = {}
    for section in ("requests", "limits"):
        asked.update((container_resources or {}).get(section) or {})
    gpus = sorted(k for k, v in asked.items() if is_gpu(k) and _asks_for(v))
    if not gpus:
        return SlotClass()
    selector = node_selector or {}
    product = next((str(selector[k]) for k in sorted(selector) if k.endswith(PRODUCT_LABEL_SUFFIX)), "")
    return SlotClass(gpus[0], product)


def job_slot_class(job: Mapping[str, Any]) -> SlotClass:
    """The class of a Job, from its own Pod template: the same function as for the resource."""
    pod = (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}
    container = next((c for c in pod.get("containers") or [] if c.get("name") == resources.CONTAINER_NAME), None) or {}
    return slot_class(container.get("resources"), pod.get("nodeSelector"))


def is_cleanup(job: Mapping[str, Any]) -> bool:
    return ((job.get("metadata") or {}).get("labels") or {}).get(resources.PURPOSE_LABEL) == "cleanup"


def job_slot(job: Mapping[str, Any]) -> SlotClass | None:
    """The slot a managed Job holds (the value of the Job index); None: it holds none.

    Finished, deleting and clean-up Jobs hold none, nor does a Job Kueue admits.
    """
    meta = job.get("metadata") or {}
    if meta.get("deletionTimestamp") or is_cleanup(job) or QUEUE_NAME_LABEL in (meta.get("labels") or {}):
        return None
    if status.job_state(job) not in status.JOB_UNFINISHED:
        return None
    return job_slot_class(job)


def pod_stalled_since(pod: Mapping[str, Any]) -> str | None:
    """When this converter Pod got stuck (Unschedulable, image-pull back-off); None: it is not stuck.

    The PodScheduled condition's lastTransitionTime: when it became False (Unschedulable), or when it
    was scheduled (the image pull began) for a back-off; the Pod's creation when neither says.
    """
    found = diagnosis.diagnose_pod(pod, resources.CONTAINER_NAME)
    if found is None or found.reason not in STALL_REASONS:
        return None
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("lastTransitionTime"):
            return str(c["lastTransitionTime"])
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "") or None


def may_wait(body: Mapping[str, Any]) -> bool:
    """Its current generation has no Job yet: never seen by the operator, or held back with WaitingForCapacity."""
    meta = body.get("metadata") or {}
    st = body.get("status") or {}
    if meta.get("deletionTimestamp"):
        return False
    current = st.get("observedGeneration") == meta.get("generation")
    if st.get("phase") == status.FAILED and current:
        return False
    ready = status.condition(st, status.READY_CONDITION) or {}
    return not current or ready.get("reason") == status.WAITING_FOR_CAPACITY


def queue_entry(body: Mapping[str, Any], slot: SlotClass | None) -> QueueEntry:
    """This resource's place in the capacity queue index.

    ``slot`` None: it never waits for one of ours (an invalid spec, or Kueue admits it).
    """
    created = (body.get("metadata") or {}).get("creationTimestamp") or ""
    return QueueEntry(created, slot is not None and may_wait(body), slot or NO_GPU)


def ahead_in_queue(
    queue: Mapping[Any, Iterable[Any]],
    me: tuple[str, str, str],
    slot: SlotClass,
    holding: set[tuple[str, str]] | None = None,
) -> int:
    """Resources of ``slot``'s class waiting since before ``me`` = (created, namespace, name).

    ``holding``: resources that already hold a slot although their status does not say so yet.
    """
    count = 0
    for key, entries in queue.items():
        if holding and tuple(key) in holding:
            continue
        for entry in entries:
            e = QueueEntry(*entry)
            if e.waiting and SlotClass(*e.slot) == slot and (e.created, *key) < me:
                count += 1
    return count


def _stalled(since: Iterable[str | None] | None, now: dt.datetime, stall_seconds: float) -> bool:
    """Every Pod of the Job is stuck, the newest for at least ``stall_seconds``."""
    values = list(since or [])
    if not values or any(not v for v in values):
        return False
    try:
        newest = max(dt.datetime.strptime(str(v), _TIME).replace(tzinfo=dt.timezone.utc) for v in values)
    except ValueError:
        return False
    return (now - newest).total_seconds() >= stall_seconds


@dataclass(frozen=True)
class Admission:
    """Whether a conversion may create its Job now, and where it stands when not."""

    admitted: bool
    slot: SlotClass
    position: int  # 1 = next to start in its class
    running: int  # slots of its class held (stalled Jobs not counted)
    limit: int
    stalled: int  # Jobs of its class that gave their slot up


@dataclass(frozen=True)
class SlotState:
    """What admission looks at, observed under the capacity lock."""

    queue: Mapping[Any, Iterable[Any]]
    running: Mapping[JobKey, SlotClass]
    holders: set[tuple[str, str]]
    stalls: Mapping[Any, Iterable[str | None]]
    now: dt.datetime


def decide_admission(
    me: tuple[str, str, str], slot: SlotClass, limit: int, state: SlotState, stall_seconds: float
) -> Admission:
    """``me`` = (creationTimestamp, namespace, name): admitted when its class has a slot for it and everyone ahead."""
    same = [k for k, c in state.running.items() if SlotClass(*c) == slot]
    stalled = sum(1 for k in same if _stalled(state.stalls.get(k), state.now, stall_seconds))
    held = len(same) - stalled
    ahead = ahead_in_queue(state.queue, me, slot, state.holders)
    return Admission(held + ahead < limit, slot, ahead + 1, held, limit, stalled)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass
class SlotLedger:
    """Who holds a slot: the managed Jobs kopf has indexed, plus this process's reservations.

    The count comes from the index of the operator's own Jobs (``handlers.conversion_jobs``), which
    kopf fills from its watch and, after a restart, from its initial listing before any handler
    runs: no LIST per admission. The index learns of a new Job one watch event after its creation,
    so a Job this process starts is reserved before ``Runtime.capacity_lock`` is released and stays
    reserved until the index has it (or its creation failed): the limit is never exceeded. Call
    everything with the lock held.
    """

    #: (namespace, job) -> (its owner (namespace, name), its class), from admission until the index has the Job
    reserved: dict[JobKey, tuple[tuple[str, str], SlotClass]] = field(default_factory=dict)

    def running(self, jobs: Mapping[Any, Iterable[Any]]) -> dict[JobKey, SlotClass]:
        """``jobs``: the index, (namespace, job) -> [the slot it holds, or None]."""
        for key in [k for k in self.reserved if k in jobs]:
            del self.reserved[key]  # the index has it now, running or not: its word replaces ours
        held: dict[JobKey, SlotClass] = {}
        for k, values in jobs.items():
            slot = next((v for v in values if v is not None), None)
            if slot is not None:
                held[(str(k[0]), str(k[1]))] = SlotClass(*slot)
        held.update({k: slot for k, (_, slot) in self.reserved.items()})
        return held

    def holders(self) -> set[tuple[str, str]]:
        """Owners with a reserved slot: not waiting in the queue any more, even before their status says so."""
        return {owner for owner, _ in self.reserved.values()}

    def reserve(self, job: JobKey, owner: tuple[str, str], slot: SlotClass = NO_GPU) -> None:
        self.reserved[job] = (owner, slot)

    def release(self, job: JobKey) -> None:
        self.reserved.pop(job, None)
