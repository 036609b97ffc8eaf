"""Slots per resource class on the real control plane: no head-of-line blocking (issue 21).

The dev node has no GPU, so a conversion that asks for one stays Unschedulable, as it would on a
real cluster whose GPUs are taken. It holds the one GPU slot; a CPU-only conversion applied after
it has its own class and is Ready in about the time it takes alone. A second GPU conversion waits
in the GPU queue, with its place in the status, until the first has been stuck for the stall time;
then it gets the slot while the first keeps its Job and its Unschedulable reason.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.common import wait_for
from tests.operator.support import (
    Kubectl,
    OperatorProcess,
    apply,
    condition,
    events_of,
    example,
    jobs_of,
    om,
    wait_phase,
)

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]

GPU = {"resources": {"limits": {"nvidia.com/gpu": 1}}}
STALL_SECONDS = 20


def reason_is(kubectl: Kubectl, ns: str, name: str, reason: str) -> dict[str, Any] | None:
    obj = om(kubectl, ns, name)
    return obj if condition(obj, "Ready").get("reason") == reason else None


def stamp(value: str) -> float:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def queued_seconds(kubectl: Kubectl, ns: str, name: str) -> float:
    """The resource's creation to its Job's, both by the API server's clock."""
    obj = om(kubectl, ns, name)
    (job,) = jobs_of(kubectl, ns, obj["metadata"]["uid"])
    return stamp(job["metadata"]["creationTimestamp"]) - stamp(obj["metadata"]["creationTimestamp"])


def time_to_ready(kubectl: Kubectl, ns: str, name: str) -> float:
    started = time.monotonic()
    apply(kubectl, ns, example(name=name, model_name=name))
    wait_phase(kubectl, ns, name, "Ready", timeout=240)
    return time.monotonic() - started


def test_a_cpu_conversion_is_not_blocked_by_a_gpu_one_that_cannot_schedule(
    kubectl: Kubectl, model_namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    ns = model_namespace
    operator_factory(EDGEOPT_CAPACITY_STALL_SECONDS=str(STALL_SECONDS))
    alone = time_to_ready(kubectl, ns, "cpu-alone")

    apply(kubectl, ns, example(name="gpu-a", model_name="gpu-a", converter=GPU))
    wait_for(lambda: reason_is(kubectl, ns, "gpu-a", "Unschedulable"), timeout=60, what="gpu-a Unschedulable")
    apply(kubectl, ns, example(name="gpu-b", model_name="gpu-b", converter=GPU))
    waiting = wait_for(lambda: reason_is(kubectl, ns, "gpu-b", "WaitingForCapacity"), timeout=30, what="gpu-b waits")
    assert condition(waiting, "Ready")["message"].startswith("1st in queue for nvidia.com/gpu: 1 of 1 conversions")

    behind = time_to_ready(kubectl, ns, "cpu-behind")  # the one GPU slot is taken: CPU has its own
    queued = {name: queued_seconds(kubectl, ns, name) for name in ("cpu-alone", "cpu-behind")}
    print(
        f"\n[measure] CPU conversion apply → Ready alone {alone:.1f}s, behind an Unschedulable GPU one "
        f"{behind:.1f}s; apply → Job created {queued['cpu-alone']:.0f}s vs {queued['cpu-behind']:.0f}s"
    )
    # Not queued behind the GPU conversion: its Job is made at once, as when alone (the rest is the
    # conversion itself, on two cores shared with whatever else runs).
    assert queued["cpu-behind"] <= queued["cpu-alone"] + 5, queued
    assert "WaitingForCapacity" not in [e["reason"] for e in events_of(kubectl, ns, "cpu-behind")]
    assert behind < 3 * alone + 30, f"{behind:.1f}s behind a stuck GPU conversion vs {alone:.1f}s alone"

    # gpu-a stuck for STALL_SECONDS: its slot goes to gpu-b, which gets a Job (and is Unschedulable too).
    wait_for(lambda: reason_is(kubectl, ns, "gpu-b", "Unschedulable"), timeout=STALL_SECONDS + 60, what="gpu-b's turn")
    first = om(kubectl, ns, "gpu-a")
    assert condition(first, "Ready")["reason"] == "Unschedulable", "the stalled one keeps its reason"
    assert len(jobs_of(kubectl, ns, first["metadata"]["uid"])) == 1, "and its Job: its place in the scheduler's queue"
