"""Who waits and in what order when conversions are limited (the capacity queue)."""

from __future__ import annotations

from typing import Any

from edgeopt.operator import conversion, permissions
from edgeopt.operator import status as S


def body(created: str, gen: int = 1, status: dict[str, Any] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"creationTimestamp": created, "generation": gen}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "status": status or {}}


def test_who_is_waiting() -> None:
    assert conversion.queue_entry(body("t1")) == ("t1", True)  # never seen by the operator
    created = S.job_created({}, 1, "j", "m", "FP32")
    assert conversion.queue_entry(body("t1", status=created)) == ("t1", False)  # has its Job
    assert conversion.queue_entry(body("t1", gen=2, status=created)) == ("t1", True)  # spec changed
    waiting = S.waiting_for_capacity({}, 1, 1, 1)
    assert conversion.queue_entry(body("t1", status=waiting)) == ("t1", True)
    assert conversion.queue_entry(body("t1", deleting=True)) == ("t1", False)
    assert conversion.queue_entry(body("t1", status=S.invalid_spec({}, 1, "bad"))) == ("t1", False)


def test_creation_order() -> None:
    queue = {
        ("ns", "a"): [("2026-01-01T00:00:01Z", True)],
        ("ns", "b"): [("2026-01-01T00:00:02Z", True)],
        ("ns", "c"): [("2026-01-01T00:00:00Z", False)],  # running: holds a slot, not a queue place
    }
    assert conversion.ahead_in_queue(queue, "ns", "a", "2026-01-01T00:00:01Z") == 0
    assert conversion.ahead_in_queue(queue, "ns", "b", "2026-01-01T00:00:02Z") == 1
    # Same second: the name breaks the tie, so every replica agrees on the order.
    queue[("ns", "a2")] = [("2026-01-01T00:00:01Z", True)]
    assert conversion.ahead_in_queue(queue, "ns", "a2", "2026-01-01T00:00:01Z") == 1


def test_permissions_cover_what_the_code_calls() -> None:
    for group, resource, verb in [
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
        assert permissions.allows(group, resource, verb), (group, resource, verb)
    assert not permissions.allows("", "secrets", "get")
    assert not permissions.allows("batch", "jobs", "update")
    rules = permissions.as_policy_rules()
    assert all(set(r) == {"apiGroups", "resources", "verbs"} for r in rules)


def test_slot_ledger_never_admits_past_a_lagging_index() -> None:
    ledger = conversion.SlotLedger()
    index: dict[tuple[str, str], list[bool]] = {}  # kopf's Job index: (namespace, job) -> [holds a slot]

    assert ledger.running(index) == set()
    ledger.reserve(("ns", "a-g1"), ("ns", "a"))
    # Created, but the index has not seen the Job yet: the reservation counts.
    assert ledger.running(index) == {("ns", "a-g1")}
    assert ledger.holders() == {("ns", "a")}
    # The index has it: its word replaces the reservation.
    index[("ns", "a-g1")] = [True]
    assert ledger.running(index) == {("ns", "a-g1")} and ledger.reserved == {}
    # The Job finishes: the slot is free.
    index[("ns", "a-g1")] = [False]
    assert ledger.running(index) == set()
    # A Job whose creation failed gives its slot back at once.
    ledger.reserve(("ns", "b-g1"), ("ns", "b"))
    ledger.release(("ns", "b-g1"))
    assert ledger.running(index) == set()


def test_holds_slot() -> None:
    def job(**status: Any) -> dict[str, Any]:
        return {"metadata": {"labels": {}}, "status": status}

    assert conversion.holds_slot(job())  # just created
    assert conversion.holds_slot(job(active=1))
    assert not conversion.holds_slot(job(succeeded=1, conditions=[{"type": "Complete", "status": "True"}]))
    deleting = job(active=1)
    deleting["metadata"]["deletionTimestamp"] = "t"
    assert not conversion.holds_slot(deleting)
    cleanup = job(active=1)
    cleanup["metadata"]["labels"] = {"edgeopt.io/purpose": "cleanup"}
    assert not conversion.holds_slot(cleanup)


def test_a_first_generation_with_no_job_recorded_skips_the_list() -> None:
    assert conversion.never_had_a_job({}, 1)
    assert conversion.never_had_a_job(S.waiting_for_capacity({}, 1, 1, 1), 1)
    assert not conversion.never_had_a_job(S.job_created({}, 1, "j", "m", "FP32"), 1)
    assert not conversion.never_had_a_job({}, 2)  # an older generation's Job may still run


def test_holders_are_not_counted_as_waiting_ahead() -> None:
    queue = {("ns", "a"): [("t1", True)], ("ns", "b"): [("t2", True)]}
    assert conversion.ahead_in_queue(queue, "ns", "b", "t2") == 1
    assert conversion.ahead_in_queue(queue, "ns", "b", "t2", {("ns", "a")}) == 0
