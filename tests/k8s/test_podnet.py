"""Pods with addresses of their own on the one dev node: EndpointSlices, Service names, readiness gates, probes."""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from edgeopt_dev.netutil import free_port
from edgeopt_dev.podnet import POD_CIDR
from tests.fixtures.common import wait_for
from tests.k8s.jobs import TEST_IMAGE

pytestmark = pytest.mark.k8s

GATE = "edgeopt.io/models-loaded"
# Serves only at its Pod IP (from the downward API): the readiness probe passes only if it goes there.
SERVE = "exec python -m http.server {port} --bind $(POD_IP)"
# Writes, every half second, the addresses the Service name resolves to in this Pod (read from the host side).
RESOLVE = (
    "while true; do python -c \"import socket; print(' '.join(sorted({a[4][0] for a in "
    "socket.getaddrinfo('web', 80)})))\" > /out/now.tmp 2>&1; mv /out/now.tmp /out/now; sleep 0.5; done"
)


@pytest.fixture
def core(k8s_client):
    return client.CoreV1Api(k8s_client)


def pod_template(port: int, command: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            **spec,
            "containers": [
                {
                    "name": "web",
                    "image": TEST_IMAGE,
                    "command": ["sh", "-c", command.format(port=port)],
                    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                    "ports": [{"name": "http", "containerPort": port}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                }
            ],
        },
    }


def service(port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": port, "targetPort": "http"}]},
    }


def endpoints(k8s_client, namespace: str) -> dict[str, bool]:
    """address -> ready, over every EndpointSlice of Service ``web``."""
    slices = (
        client.DiscoveryV1Api(k8s_client)
        .list_namespaced_endpoint_slice(namespace, label_selector="kubernetes.io/service-name=web")
        .items
    )
    return {a: bool(e.conditions.ready) for s in slices for e in s.endpoints or [] for a in e.addresses}


def conditions(core, name: str, namespace: str) -> dict[str, Any]:
    return {c.type: c for c in core.read_namespaced_pod(name, namespace).status.conditions or []}


def test_two_replicas_get_their_own_ips_serve_the_same_port_and_are_both_endpoints(core, k8s_client, namespace):
    port = free_port("0.0.0.0")  # nothing holds it on any address, so each Pod can bind it at its own
    core.create_namespaced_service(namespace, service(port))
    client.AppsV1Api(k8s_client).create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template(port, SERVE)},
        },
    )

    def both_ready() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        return ready if len(ready) == 2 else None

    pods = wait_for(both_ready, timeout=90, what="both replicas Ready (their probes reach their Pod IPs)")
    ips = sorted(p.status.pod_ip for p in pods)
    assert len(set(ips)) == 2 and all(ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR) for ip in ips)
    assert all([ip.ip for ip in p.status.pod_i_ps] == [p.status.pod_ip] for p in pods)
    assert all(p.status.host_ip == "127.0.0.1" for p in pods)
    wait_for(
        lambda: endpoints(k8s_client, namespace) == dict.fromkeys(ips, True),
        timeout=30,
        what="the EndpointSlice controller to list both Pod IPs as ready",
    )
    for ip in ips:  # each replica answers at its own address, on the same port
        with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=5) as rsp:
            assert rsp.status == 200


def test_a_service_name_follows_its_ready_endpoints_inside_a_running_pod(control_plane, core, k8s_client, namespace):
    port = free_port("0.0.0.0")
    core.create_namespaced_service(namespace, service(port))
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "client"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "out", "emptyDir": {}}],
                "containers": [
                    {
                        "name": "c",
                        "image": TEST_IMAGE,
                        "command": ["sh", "-c", RESOLVE],
                        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                    }
                ],
            },
        },
    )
    seen = control_plane.dir / "run" / "pods" / f"{namespace}_client" / "volumes" / "out" / "now"

    def resolved() -> str:
        return seen.read_text().strip() if seen.exists() else ""

    assert (
        wait_for(resolved, timeout=60, what="the client Pod to resolve the name") == "127.0.0.1"
    ), "no ready endpoint yet: the name resolves to the node"
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "server", "labels": {"app": "web"}}, "spec": pod_template(port, SERVE)["spec"]}
    )
    ip = wait_for(lambda: core.read_namespaced_pod("server", namespace).status.pod_ip, timeout=30, what="a Pod IP")
    wait_for(lambda: resolved() == ip, timeout=60, what=f"the running client to see web at {ip}")
    core.delete_namespaced_pod("server", namespace)
    wait_for(lambda: resolved() == "127.0.0.1", timeout=60, what="the name to leave the deleted endpoint")


def test_a_readiness_gate_holds_ready_and_the_endpoint_until_its_condition_is_true(core, k8s_client, namespace):
    port = free_port("0.0.0.0")
    core.create_namespaced_service(namespace, service(port))
    body = pod_template(port, SERVE, readinessGates=[{"conditionType": GATE}])
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "gated", "labels": {"app": "web"}}, "spec": body["spec"]}
    )

    def held() -> Any:
        conds = conditions(core, "gated", namespace)
        ok = conds.get("ContainersReady") and conds["ContainersReady"].status == "True"
        return ok and conds["Ready"]

    ready = wait_for(held, timeout=60, what="the container to be ready")
    assert (ready.status, ready.reason) == ("False", "ReadinessGatesNotReady")
    assert ready.message == f'corresponding condition of pod readiness gate "{GATE}" does not exist.'
    ip = core.read_namespaced_pod("gated", namespace).status.pod_ip
    assert wait_for(lambda: endpoints(k8s_client, namespace), timeout=30) == {ip: False}

    def patch_gate(status: str) -> None:  # what the operator does, through pods/status
        core.patch_namespaced_pod_status(
            "gated",
            namespace,
            {
                "status": {
                    "conditions": [
                        {"type": GATE, "status": status, "reason": "Test", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                    ]
                }
            },
        )

    patch_gate("True")
    wait_for(
        lambda: conditions(core, "gated", namespace)["Ready"].status == "True",
        timeout=20,
        what="Ready once the gate is True",
    )
    wait_for(lambda: endpoints(k8s_client, namespace) == {ip: True}, timeout=30, what="the endpoint to turn ready")
    gate = conditions(core, "gated", namespace)[GATE]
    assert (gate.status, gate.reason) == ("True", "Test"), "the node agent keeps the condition it does not own"

    patch_gate("False")
    wait_for(
        lambda: conditions(core, "gated", namespace)["Ready"].status == "False",
        timeout=20,
        what="Ready False again once the gate is False",
    )
    ready = conditions(core, "gated", namespace)["Ready"]
    assert ready.message == f'the status of pod readiness gate "{GATE}" is not "True", but False'
    wait_for(lambda: endpoints(k8s_client, namespace) == {ip: False}, timeout=30, what="the endpoint not ready")
    raw = json.loads(core.read_namespaced_pod("gated", namespace, _preload_content=False).data)
    assert [c["type"] for c in raw["status"]["conditions"]].count(GATE) == 1
