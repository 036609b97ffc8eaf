"""Slots per resource class: who waits, for what, and in which order (edgeopt/operator/queueing.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from edgeopt.operator import decide, permissions, queueing
from edgeopt.operator import status as S
from edgeopt.operator.queueing import NO_GPU, QueueEntry, SlotClass, SlotState
from edgeopt.operator.settings import OperatorSettings, SettingsError
from tests.unit.test_operator_decide import resource

GPU = SlotClass("nvidia.com/gpu")
L4 = SlotClass("nvidia.com/gpu", "NVIDIA-L4")
NOW = dt.datetime(2026, 1, 1, 1, 0, 0, tzinfo=dt.timezone.utc)


def body(created: str, gen: int = 1, status: dict[str, Any] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"creationTimestamp": created, "generation": gen}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "status": status or {}}


@pytest.mark.parametrize(
    "resources,selector,expected",
    [
        ({}, {}, NO_GPU),
        ({"limits": {"cpu": "2", "memory": "4Gi"}}, {"nvidia.com/gpu.product": "NVIDIA-L4"}, NO_GPU),
        ({"limits": {"nvidia.com/gpu": 1}}, {}, GPU),
        ({"requests": {"nvidia.com/gpu": "1"}}, {"kubernetes.io/arch": "arm64"}, GPU),
        ({"limits": {"nvidia.com/gpu": 0}}, {}, NO_GPU),  # zero asks for none
        ({"limits": {"nvidia.com/gpu": 1}}, {"nvidia.com/gpu.product": "NVIDIA-L4"}, L4),
        ({"limits": {"amd.com/gpu": 1}}, {}, SlotClass("amd.com/gpu")),
    ],
)
def test_slot_class(resources: dict[str, Any], selector: dict[str, str], expected: SlotClass) -> None:
    assert queueing.slot_class(resources, selector) == expected


def test_labels_say_where_a_resource_stands() -> None:
    assert L4.label() == "nvidia.com/gpu, product NVIDIA-L4"
    assert GPU.label() == "nvidia.com/gpu"
    assert NO_GPU.label() == "conversions without a GPU"
    assert [queueing.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
    ]


def test_who_is_waiting() -> None:
    assert queueing.queue_entry(body("t1"), GPU) == ("t1", True, GPU)  # never seen by the operator
    created = S.job_created({}, 1, "j", "m", "FP32")
    assert queueing.queue_entry(body("t1", status=created), GPU) == ("t1", False, GPU)  # has its Job
    assert queueing.queue_entry(body("t1", gen=2, status=created), GPU) == ("t1", True, GPU)  # spec changed
    waiting = S.waiting_for_capacity({}, 1, 1, 1)
    assert queueing.queue_entry(body("t1", status=waiting), NO_GPU) == ("t1", True, NO_GPU)
    assert queueing.queue_entry(body("t1", deleting=True), GPU).waiting is False
    assert queueing.queue_entry(body("t1", status=S.invalid_spec({}, 1, "bad")), GPU).waiting is False
    assert queueing.queue_entry(body("t1"), None).waiting is False  # Kueue's, or an invalid spec


def test_queue_entry_of_a_body_reads_its_class_and_kueue() -> None:
    settings = OperatorSettings()  # its default asks for one GPU, except for a CPU target without TensorRT
    doc = resource(target={"device": "GPU"})
    assert decide.queue_entry(doc, settings) == ("t0", True, GPU)
    assert decide.queue_entry(resource(), settings) == ("t0", True, NO_GPU)  # the example: device CPU
    assert decide.queue_entry(doc, OperatorSettings(converter_resources={})) == ("t0", True, NO_GPU)
    assert decide.queue_entry(doc, OperatorSettings(converter_queue_name="gpus")).waiting is False
    assert decide.queue_entry(resource(converter={"queueName": "team-a"}), settings).waiting is False
    broken = {**doc, "spec": {"source": {}}}
    assert decide.queue_entry(broken, settings).waiting is False  # fails InvalidSpec, never waits


def test_fifo_within_a_class_only() -> None:
    queue = {
        ("ns", "a"): [QueueEntry("2026-01-01T00:00:01Z", True, GPU)],
        ("ns", "b"): [QueueEntry("2026-01-01T00:00:02Z", True, GPU)],
        ("ns", "c"): [QueueEntry("2026-01-01T00:00:00Z", False, GPU)],  # has its Job: no queue place
        ("ns", "cpu"): [QueueEntry("2026-01-01T00:00:03Z", True, NO_GPU)],
        ("ns", "l4"): [QueueEntry("2026-01-01T00:00:00Z", True, L4)],
    }
    assert queueing.ahead_in_queue(queue, ("2026-01-01T00:00:01Z", "ns", "a"), GPU) == 0
    assert queueing.ahead_in_queue(queue, ("2026-01-01T00:00:02Z", "ns", "b"), GPU) == 1
    assert queueing.ahead_in_queue(queue, ("2026-01-01T00:00:03Z", "ns", "cpu"), NO_GPU) == 0  # GPU ones: not ahead
    # Same second: the name breaks the tie, so every replica agrees on the order.
    queue[("ns", "a2")] = [QueueEntry("2026-01-01T00:00:01Z", True, GPU)]
    assert queueing.ahead_in_queue(queue, ("2026-01-01T00:00:01Z", "ns", "a2"), GPU) == 1
    # Holders (slot reserved, status not written yet) are not waiting ahead.
    assert queueing.ahead_in_queue(queue, ("2026-01-01T00:00:02Z", "ns", "b"), GPU, {("ns", "a")}) == 1


def state(running: dict[Any, SlotClass], queue: dict[Any, Any] | None = None, stalls: Any = None) -> SlotState:
    return SlotState(queue or {}, running, set(), stalls or {}, NOW)


STUCK_LONG = "2026-01-01T00:50:00Z"  # 10 minutes before NOW
STUCK_SHORT = "2026-01-01T00:59:00Z"  # 1 minute before NOW


@pytest.mark.parametrize(
    "slot,limit,st,admitted,position,running,stalled",
    [
        (GPU, 1, state({}), True, 1, 0, 0),
        (GPU, 1, state({("ns", "j1"): GPU}), False, 1, 1, 0),
        # A CPU conversion never waits for a GPU slot, however many GPU Jobs cannot start.
        (NO_GPU, 1, state({("ns", "j1"): GPU, ("ns", "j2"): L4}), True, 1, 0, 0),
        (NO_GPU, 2, state({("ns", "j1"): NO_GPU, ("ns", "j2"): NO_GPU}), False, 1, 2, 0),
        # GPU kinds are separate: an L4 Job does not hold the plain nvidia.com/gpu slot.
        (GPU, 1, state({("ns", "j1"): L4}), True, 1, 0, 0),
        # Someone of the class waits ahead: FIFO, even with a free slot.
        (GPU, 2, state({("ns", "j1"): GPU}, {("ns", "a"): [QueueEntry("t0", True, GPU)]}), False, 2, 1, 0),
        # Unschedulable longer than the stall time: its slot goes to the next.
        (GPU, 1, state({("ns", "j1"): GPU}, stalls={("ns", "j1"): [STUCK_LONG]}), True, 1, 0, 1),
        (GPU, 1, state({("ns", "j1"): GPU}, stalls={("ns", "j1"): [STUCK_SHORT]}), False, 1, 1, 0),
        # One of its Pods is fine (a retry that scheduled): not stalled.
        (GPU, 1, state({("ns", "j1"): GPU}, stalls={("ns", "j1"): [STUCK_LONG, None]}), False, 1, 1, 0),
        (GPU, 1, state({("ns", "j1"): GPU}, stalls={("ns", "j1"): ["not a time"]}), False, 1, 1, 0),
    ],
)
def test_decide_admission(
    slot: SlotClass, limit: int, st: SlotState, admitted: bool, position: int, running: int, stalled: int
) -> None:
    got = queueing.decide_admission(("t1", "ns", "me"), slot, limit, st, stall_seconds=300)
    assert (got.admitted, got.position, got.running, got.stalled) == (admitted, position, running, stalled)
    assert got.limit == limit and got.slot == slot


def test_limits_per_class() -> None:
    s = OperatorSettings(
        max_concurrent_conversions=1,
        max_concurrent_cpu_conversions=6,
        gpu_conversion_limits=(
            {"resource": "nvidia.com/gpu", "max": 3},
            {"resource": "nvidia.com/gpu", "product": "NVIDIA-L4", "max": 2},
        ),
    )
    assert s.conversion_limit("", "") == 6
    assert s.conversion_limit("nvidia.com/gpu", "NVIDIA-L4") == 2
    assert s.conversion_limit("nvidia.com/gpu", "NVIDIA-A100") == 3  # the resource-wide entry
    assert s.conversion_limit("amd.com/gpu", "") == 1  # not listed: max_concurrent_conversions
    for bad, words in [
        ({"max": 1}, "needs a resource"),
        ({"resource": "nvidia.com/gpu", "max": 0}, "max must be"),
        ({"resource": "nvidia.com/gpu", "max": True}, "max must be"),
        ({"resource": "nvidia.com/gpu", "product": 3, "max": 1}, "product must be"),
    ]:
        with pytest.raises(SettingsError, match=words):
            OperatorSettings(gpu_conversion_limits=(bad,))
    with pytest.raises(SettingsError, match="CONVERTER_QUEUE_NAME"):
        OperatorSettings(converter_queue_name="Not_A_Queue")


def job(labels: dict[str, str] | None = None, resources: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    container = {"name": "convert", "resources": resources or {}}
    spec = {"template": {"spec": {"containers": [container], "nodeSelector": {}}}}
    return {"metadata": {"labels": labels or {}}, "spec": spec, "status": status}


def test_job_slot() -> None:
    assert queueing.job_slot(job()) == NO_GPU  # just created
    assert queueing.job_slot(job(resources={"limits": {"nvidia.com/gpu": 1}}, active=1)) == GPU
    assert queueing.job_slot(job(succeeded=1, conditions=[{"type": "Complete", "status": "True"}])) is None
    deleting = job(active=1)
    deleting["metadata"]["deletionTimestamp"] = "t"
    assert queueing.job_slot(deleting) is None
    assert queueing.job_slot(job({"edgeopt.io/purpose": "cleanup"}, active=1)) is None
    assert queueing.job_slot(job({queueing.QUEUE_NAME_LABEL: "gpus"}, active=1)) is None  # Kueue admits it


def pod(*conditions: dict[str, Any], waiting: str | None = None) -> dict[str, Any]:
    statuses = [{"name": "convert", "state": {"waiting": {"reason": waiting}}}] if waiting else []
    status = {"conditions": list(conditions), "containerStatuses": statuses}
    return {"metadata": {"creationTimestamp": "t0"}, "status": status}


def test_pod_stalled_since() -> None:
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available",
        "lastTransitionTime": "t1",
    }
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t2"}
    assert queueing.pod_stalled_since(pod(unschedulable)) == "t1"
    assert queueing.pod_stalled_since(pod(scheduled, waiting="ImagePullBackOff")) == "t2"
    assert queueing.pod_stalled_since(pod(waiting="ErrImagePull")) == "t0"  # no condition: its creation
    assert queueing.pod_stalled_since(pod(scheduled)) is None
    assert queueing.pod_stalled_since(pod(scheduled, waiting="CrashLoopBackOff")) is None  # it ran: not a stall


def test_slot_ledger_never_admits_past_a_lagging_index() -> None:
    ledger = queueing.SlotLedger()
    index: dict[tuple[str, str], list[SlotClass | None]] = {}  # kopf's Job index: (namespace, job) -> [slot]

    assert ledger.running(index) == {}
    ledger.reserve(("ns", "a-g1"), ("ns", "a"), GPU)
    # Created, but the index has not seen the Job yet: the reservation counts.
    assert ledger.running(index) == {("ns", "a-g1"): GPU}
    assert ledger.holders() == {("ns", "a")}
    # The index has it: its word replaces the reservation.
    index[("ns", "a-g1")] = [GPU]
    assert ledger.running(index) == {("ns", "a-g1"): GPU} and ledger.reserved == {}
    # The Job finishes: the slot is free.
    index[("ns", "a-g1")] = [None]
    assert ledger.running(index) == {}
    # A Job whose creation failed gives its slot back at once.
    ledger.reserve(("ns", "b-g1"), ("ns", "b"))
    ledger.release(("ns", "b-g1"))
    assert ledger.running(index) == {}


def test_permissions_cover_what_the_code_calls() -> None:
    for group, kind, verb in [
        ("edgeopt.io", "optimizedmodels", "watch"),
        ("edgeopt.io", "optimizedmodels/status", "patch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("", "configmaps", "create"),
        ("", "pods", "list"),
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("", "namespaces", "watch"),
        ("kopf.dev", "clusterkopfpeerings", "patch"),
        ("zalando.org", "kopfpeerings", "patch"),
    ]:
        assert permissions.allows(group, kind, verb), (group, kind, verb)
    assert not permissions.allows("", "secrets", "get")
    assert not permissions.allows("batch", "jobs", "update")
    rules = permissions.as_policy_rules()
    assert all(set(r) == {"apiGroups", "resources", "verbs"} for r in rules)


def test_waiting_message_says_where_it_stands() -> None:
    patch = S.waiting_for_capacity({}, 1, 1, 1, place="2nd in queue for nvidia.com/gpu, product NVIDIA-L4", stalled=1)
    ready = S.condition(patch, S.READY_CONDITION) or {}
    assert ready["reason"] == S.WAITING_FOR_CAPACITY
    assert ready["message"].startswith("2nd in queue for nvidia.com/gpu, product NVIDIA-L4: 1 of 1 conversions")
    assert "1 more cannot start and gave their slot up" in ready["message"]


def test_the_index_parses_a_spec_once_per_generation_and_only_when_it_may_wait() -> None:
    from edgeopt.operator import conversion
    from edgeopt.operator.runtime import Runtime

    rt = Runtime(settings=OperatorSettings(), kube=None)  # type: ignore[arg-type]  # no API call here
    doc = resource(target={"device": "GPU"})
    doc["metadata"]["creationTimestamp"] = "t0"
    assert conversion.queue_entry(rt, doc) == ("t0", True, GPU)
    assert rt.slot_classes == {(doc["metadata"]["uid"], 1): GPU}
    tracked = resource(status=S.job_created({}, 1, "j", "m", "FP32"))
    tracked["metadata"]["uid"] = "another"
    assert conversion.queue_entry(rt, tracked).waiting is False and len(rt.slot_classes) == 1  # not parsed
