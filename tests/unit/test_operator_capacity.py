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


def test_slot_ledger_never_admits_past_a_stale_list() -> None:
    ledger = conversion.SlotLedger(ttl=1.0)
    cluster: list[dict[str, Any]] = []
    lists = 0

    def list_running() -> list[dict[str, Any]]:
        nonlocal lists
        lists += 1
        return list(cluster)

    assert ledger.running(list_running, now=0.0) == set()
    ledger.reserve(("ns", "a-g1"), ("ns", "a"))
    # Within the TTL the list is reused, and the reservation still counts.
    assert ledger.running(list_running, now=0.5) == {("ns", "a-g1")} and lists == 1
    assert ledger.holders() == {("ns", "a")}
    ledger.created(("ns", "a-g1"), now=0.6)
    cluster.append({"metadata": {"namespace": "ns", "name": "a-g1"}})
    # A list that began before the Job was created may not show it: the reservation stays.
    ledger.listed_at = float("-inf")
    assert ledger.running(list_running, now=0.55) == {("ns", "a-g1")}
    assert ("ns", "a-g1") in ledger.reserved
    # A list taken after creation has seen it: the cluster's word replaces the reservation.
    assert ledger.running(list_running, now=2.0) == {("ns", "a-g1")} and ledger.reserved == {}
    # The Job finishes: the next list frees the slot.
    cluster.clear()
    assert ledger.running(list_running, now=3.5) == set()
    # A Job whose creation failed gives its slot back at once.
    ledger.reserve(("ns", "b-g1"), ("ns", "b"))
    ledger.release(("ns", "b-g1"))
    assert ledger.running(list_running, now=3.6) == set()


def test_holders_are_not_counted_as_waiting_ahead() -> None:
    queue = {("ns", "a"): [("t1", True)], ("ns", "b"): [("t2", True)]}
    assert conversion.ahead_in_queue(queue, "ns", "b", "t2") == 1
    assert conversion.ahead_in_queue(queue, "ns", "b", "t2", {("ns", "a")}) == 0
