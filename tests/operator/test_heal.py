"""Serving that heals itself, on real parts: the operator process, the real API server, two real tritonservers.

Two replicas behind one Service (its EndpointSlices name both Pods). The
operator must load into both, set both Pods' readiness gates, say
``serving: {endpoints: 2, ready: 2}``, load a restarted replica again (also
when the operator itself was restarted meanwhile), say NotServed while one
lacks the model beyond the audit period, switch versions replica by replica
with no failed request on either, and unload from both on delete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.operator import resources
from edgeopt.triton.client import TritonClient
from tests.fixtures.common import wait_for
from tests.operator.replicas import SERVICE, Replica, node_ip, service, write_model
from tests.operator.support import Kubectl, OperatorProcess, apply, condition, events_of, example, om
from tests.triton.request_loop import RequestLoop

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.triton]

NAME = "heal"
AUDIT = 4  # EDGEOPT_SERVING_AUDIT_SECONDS: short, so NotServed shows within the test


def answer(url: str, version: int | None = None) -> float:
    out = TritonClient(url, timeout=10).infer(NAME, {"x": np.array([[1.0]], dtype=np.float32)}, version=version)
    return float(out["y"].reshape(-1)[0])


def status_patch(kubectl: Kubectl, ns: str, patch: dict[str, Any]) -> None:
    kubectl("patch", "om", NAME, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps({"status": patch}))


def published(kubectl: Kubectl, ns: str, version: int, served: list[int]) -> None:
    """What a finished conversion Job leaves (status.job_succeeded): Publishing, version N, what served before."""
    obj = om(kubectl, ns, NAME)
    uid = obj["metadata"]["uid"]
    status_patch(
        kubectl,
        ns,
        {
            "phase": "Publishing",
            "observedGeneration": 1,
            "jobName": resources.job_name(NAME, 1, uid),
            "modelName": NAME,
            "modelVersion": version,
            "servingVersions": served or None,
            "conditions": [
                {
                    "type": "Published",
                    "status": "True",
                    "reason": "Published",
                    "message": "test",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    )


@pytest.fixture(scope="module")
def replicas_env(
    control_plane: Any, kubectl: Kubectl, om_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[Replica], Path]]:
    host = node_ip()
    if host is None:
        pytest.skip("no non-loopback address to run the Triton replicas on (an EndpointSlice refuses 127.0.0.0/8)")
    ns = f"heal-{int(time.time()) % 100000}"
    kubectl("create", "namespace", ns)
    repo = tmp_path_factory.mktemp("heal-repo")
    logs = tmp_path_factory.mktemp("heal-logs")
    write_model(repo, NAME, 1, 5.0, [1])
    service(kubectl, ns)
    reps = [Replica(kubectl, ns, f"triton-{c}", host, repo, logs).create() for c in "ab"]
    try:
        for r in reps:
            r.start()
        yield ns, reps, repo
    finally:
        for r in reps:
            r.stop()
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def operator_env(ns: str) -> dict[str, str]:
    return {
        "EDGEOPT_TRITON_URL": f"http://{SERVICE}.{ns}.svc:8000",
        "EDGEOPT_TRITON_SERVICE": f"{ns}/{SERVICE}",
        "EDGEOPT_TRITON_READINESS_GATE": "true",
        "EDGEOPT_SERVING_AUDIT_SECONDS": str(AUDIT),
        "EDGEOPT_NAMESPACES": ns,
    }


def test_two_replicas_served_gated_healed_and_recorded(
    kubectl: Kubectl,
    replicas_env: tuple[str, list[Replica], Path],
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    ns, (a, b), _ = replicas_env
    apply(kubectl, ns, example(name=NAME, model_name=NAME))
    published(kubectl, ns, 1, [])
    op = operator_factory(**operator_env(ns))

    # Publishing -> Ready: loaded into both replicas (not one through the Service), both gates True.
    def served_by_both() -> dict[str, Any] | None:
        obj = om(kubectl, ns, NAME)
        return obj if (obj.get("status") or {}).get("serving", {}).get("ready") == 2 else None

    obj = wait_for(served_by_both, timeout=90, what="serving.ready == 2")
    assert obj["status"]["phase"] == "Ready" and condition(obj, "Ready")["status"] == "True"
    assert obj["status"]["serving"] == {"endpoints": 2, "ready": 2, "version": 1}
    assert answer(a.url) == 6.0 and answer(b.url) == 6.0
    wait_for(lambda: a.gate() == "True" and b.gate() == "True", timeout=30, what="both readiness gates True")
    row = kubectl("get", "om", NAME, "-n", ns, "--no-headers").stdout.split()
    assert row[5] == "2", row  # the Served column

    # Replica b's container dies and stays down beyond the audit period: its gate goes False, and
    # the resource is Ready False NotServed, naming the endpoint and what is wrong there.
    b.stop()
    b.publish(ready=False)

    def not_served() -> dict[str, Any] | None:
        o = om(kubectl, ns, NAME)
        return o if condition(o, "Ready").get("reason") == "NotServed" else None

    down = wait_for(not_served, timeout=AUDIT + 30, what="Ready False NotServed")
    message = condition(down, "Ready")["message"]
    assert condition(down, "Ready")["status"] == "False" and "triton-b" in message and b.url in message, message
    assert down["status"]["serving"]["ready"] == 1 and down["status"]["serving"]["notServedSince"]
    wait_for(lambda: b.gate() == "False", timeout=30, what="b's gate False while its Triton is down")
    assert answer(a.url) == 6.0, "the other replica served throughout"

    # A new container on the same Pod: loaded again without anyone asking, gate True, Ready True.
    started = b.start()
    wait_for(lambda: answer(b.url) == 6.0, timeout=30, interval=0.1, what="b answers again")
    healed = time.monotonic() - started
    wait_for(lambda: b.gate() == "True", timeout=30, what="b's gate True again")
    obj = wait_for(
        lambda: (o := om(kubectl, ns, NAME)) and condition(o, "Ready")["status"] == "True" and o,
        timeout=30,
        what="Ready True again",
    )
    assert condition(obj, "Ready")["reason"] == "Serving" and "notServedSince" not in obj["status"]["serving"]
    reasons = [e["reason"] for e in events_of(kubectl, ns, NAME)]
    assert reasons.count("NotServed") == 1 and reasons.count("Served") == 1, reasons
    assert "Reloaded" in reasons
    print(f"\n[measure] replica restart: model served {healed:.2f}s after the new tritonserver started")

    # The operator restarted while replica a lacks the model (unloaded behind its back): healed.
    op.stop()
    TritonClient(a.url, timeout=30).unload(NAME)
    wait_for(lambda: not TritonClient(a.url).is_model_ready(NAME), timeout=30, what="a lost the model")
    op.start()
    wait_for(lambda: answer(a.url) == 6.0, timeout=30, interval=0.2, what="a healed after the operator restart")


def test_switch_and_delete_act_on_every_replica(
    kubectl: Kubectl,
    replicas_env: tuple[str, list[Replica], Path],
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    ns, (a, b), repo = replicas_env
    obj = om(kubectl, ns, NAME)
    assert obj["status"]["serving"]["ready"] == 2, "runs after the test above, on its served resource"
    # Version 2 published beside 1 (same interface): the config lists both, as the publisher writes it.
    write_model(repo, NAME, 2, 7.0, [1, 2])
    with RequestLoop(a.url, NAME, timeout=60) as la, RequestLoop(b.url, NAME, timeout=60) as lb:
        la.wait_for(30)
        lb.wait_for(30)
        published(kubectl, ns, 2, [1])
        obj = wait_for(
            lambda: (o := om(kubectl, ns, NAME)) and o["status"].get("servingVersions") == [2] and o,
            timeout=90,
            what="switched to version 2",
        )
        la.wait_for(la.count + 30)
        lb.wait_for(lb.count + 30)
    for loop, r in ((la, a), (lb, b)):
        assert not loop.failures, f"{r.name}: {len(loop.failures)} of {loop.count} failed: {loop.failures[:3]}"
        assert loop.answers[0] == 6.0 and loop.answers[-1] == 8.0, (r.name, loop.answers[:1], loop.answers[-1:])
        assert TritonClient(r.url).ready_versions(NAME) == [2]
    assert obj["status"]["serving"] == {"endpoints": 2, "ready": 2, "version": 2}
    assert "triton-a" in condition(obj, "Ready")["message"] and "triton-b" in condition(obj, "Ready")["message"]
    print(f"\n[measure] switch 1 -> 2 on 2 replicas: {la.count + lb.count} requests, 0 failed")

    kubectl("delete", "om", NAME, "-n", ns, "--timeout=60s", timeout=70)
    for r in (a, b):
        assert not TritonClient(r.url).is_model_ready(NAME), f"{r.name} still serves it after the delete"
