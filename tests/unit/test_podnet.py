"""The dev node's Pod network (podnet.py) and the kubelet's Pod conditions (kubelet.py): pure parts, real files."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from edgeopt_dev.kubelet import gates_state, kubelet_conditions
from edgeopt_dev.podnet import NO_ENDPOINT_IP, POD_CIDR, PodIPs, hosts_text, ready_addresses, write_in_place
from edgeopt_dev.podspec import field_value


def endpoint_slice(ns: str, service: str, *endpoints: tuple[str, bool | None], kind: str = "IPv4") -> dict[str, Any]:
    def endpoint(ip: str, ready: bool | None) -> dict[str, Any]:
        return {"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}}

    return {
        "metadata": {"namespace": ns, "name": f"{service}-x", "labels": {"kubernetes.io/service-name": service}},
        "addressType": kind,
        "endpoints": [endpoint(ip, ready) for ip, ready in endpoints],
    }


def test_a_service_resolves_to_its_ready_endpoints_across_slices_in_address_order() -> None:
    slices = [
        endpoint_slice("ml", "triton", ("198.18.0.10", True), ("198.18.0.9", False)),
        endpoint_slice("ml", "triton", ("198.18.0.2", None)),  # unset ready means ready
        endpoint_slice("ml", "triton", ("fd00::1", True), kind="IPv6"),
        endpoint_slice("web", "front", ("198.18.0.7", False)),
        {"metadata": {"namespace": "ml", "name": "manual"}, "addressType": "IPv4", "endpoints": []},  # no service
    ]
    assert ready_addresses(slices) == {("ml", "triton"): ["198.18.0.2", "198.18.0.10"], ("web", "front"): []}


def test_hosts_file_names_each_service_at_every_ready_endpoint_and_the_node_when_none() -> None:
    text = hosts_text(
        "ml",
        "pod-a",
        "198.18.0.4",
        [("web", "front"), ("ml", "triton")],
        {("ml", "triton"): ["198.18.0.2", "198.18.0.10"], ("web", "front"): []},
    )
    lines = text.splitlines()
    assert lines[1:4] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "198.18.0.4\tpod-a"]
    triton = "triton triton.ml triton.ml.svc triton.ml.svc.cluster.local"  # the short name: same namespace only
    assert lines[4:] == [
        f"198.18.0.2\t{triton}",
        f"198.18.0.10\t{triton}",
        f"{NO_ENDPOINT_IP}\tfront.web front.web.svc front.web.svc.cluster.local",
    ]


def test_pod_ips_are_unique_across_allocators_on_one_machine_and_stable_per_pod(tmp_path: Path) -> None:
    a, b = PodIPs(lock_dir=tmp_path), PodIPs(lock_dir=tmp_path)  # two dev clusters side by side
    first = a.allocate("uid-1")
    assert a.allocate("uid-1") == first, "the same Pod keeps its address"
    ips = {first, a.allocate("uid-2"), *(b.allocate(f"other-{i}") for i in range(20))}
    assert len(ips) == 22
    net = ipaddress.ip_network(POD_CIDR)
    assert all(
        ipaddress.ip_address(ip) in net and int(ipaddress.ip_address(ip)) >= int(net.network_address) + 2 for ip in ips
    ), "the network address and the node's first address are never handed out"
    a.release("uid-1")
    b._next = a._next = 0  # both cursors at the start: the released address is free again, the others are not
    assert b.allocate("later") != a.allocate("uid-2") == a._held["uid-2"][0]


def test_pod_ips_are_local_to_this_machine_once_the_route_exists() -> None:
    from edgeopt_dev.podnet import PodNetworkError, ensure_local_route

    try:
        ensure_local_route()
    except PodNetworkError as exc:
        pytest.skip(f"no CAP_NET_ADMIN here to add the route: {exc}")
    ip = PodIPs().allocate("probe")
    with socket.socket() as server:
        server.bind((ip, 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2) as conn:
            assert conn.getpeername()[0] == ip


def test_hosts_file_is_rewritten_through_its_inode(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    assert write_in_place(path, "a long first version\n")
    inode = path.stat().st_ino
    assert not write_in_place(path, "a long first version\n"), "unchanged: not written"
    assert write_in_place(path, "short\n")
    assert path.read_text() == "short\n" and path.stat().st_ino == inode


def test_downward_api_gives_the_pod_and_host_ips() -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {},
        "status": {"podIP": "198.18.0.5", "podIPs": [{"ip": "198.18.0.5"}], "hostIP": "127.0.0.1"},
    }
    assert field_value(pod, "status.podIP") == "198.18.0.5" and field_value(pod, "status.podIPs") == "198.18.0.5"
    assert field_value(pod, "status.hostIP") == "127.0.0.1"


SPEC = {"containers": [{"name": "main"}], "readinessGates": [{"conditionType": "edgeopt.io/models-loaded"}]}


def by_type(conditions: list[dict[str, Any]]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c.get("reason", ""), c.get("message", "")) for c in conditions}


@pytest.mark.parametrize(
    ("gate", "want"),
    [
        (
            None,
            (
                False,
                "ReadinessGatesNotReady",
                'corresponding condition of pod readiness gate "edgeopt.io/models-loaded" does not exist.',
            ),
        ),
        (
            "False",
            (
                False,
                "ReadinessGatesNotReady",
                'the status of pod readiness gate "edgeopt.io/models-loaded" is not "True", but False',
            ),
        ),
        ("True", (True, "", "")),
    ],
)
def test_ready_needs_every_readiness_gate_true_in_the_kubelet_words(gate: str | None, want: tuple) -> None:
    conditions = [] if gate is None else [{"type": "edgeopt.io/models-loaded", "status": gate}]
    assert gates_state(SPEC, conditions) == want
    out = by_type(kubelet_conditions(conditions, SPEC, phase="Running", containers_ready=True))
    assert out["Ready"] == ("True" if want[0] else "False", *want[1:])
    assert out["ContainersReady"] == ("True", "", "")


def test_kubelet_keeps_others_conditions_and_unchanged_transition_times() -> None:
    gate = {
        "type": "edgeopt.io/models-loaded",
        "status": "True",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "reason": "Loaded",
    }
    first = kubelet_conditions([gate], SPEC, phase="Running", containers_ready=False)
    assert first[0] == gate, "a condition someone else set is kept as it was, in its place"
    assert by_type(first)["Ready"] == ("False", "ContainersNotReady", "containers with unready status: [main]")
    ready_since = {c["type"]: c["lastTransitionTime"] for c in first}
    for c in first:
        c["lastTransitionTime"] = "2026-01-02T00:00:00Z"
    second = kubelet_conditions(first, SPEC, phase="Running", containers_ready=True)
    times = {c["type"]: c["lastTransitionTime"] for c in second}
    assert times["Initialized"] == "2026-01-02T00:00:00Z", "no change, no new transition time"
    assert times["Ready"] != "2026-01-02T00:00:00Z" and ready_since["Ready"]
    ended = by_type(kubelet_conditions(second, SPEC, phase="Failed", containers_ready=True))
    assert ended["Ready"][:2] == ("False", "PodFailed") and ended["PodReadyToStartContainers"][0] == "False"
