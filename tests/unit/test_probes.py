"""The node agent's probes and Pod checks, against real sockets on loopback (no container needed)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edgeopt_dev.kubelet import Probes, probe_once
from edgeopt_dev.netutil import free_port
from edgeopt_dev.podrun import check_pod
from edgeopt_dev.podspec import CannotEmulate


class Handler(http.server.BaseHTTPRequestHandler):
    status = {"/ready": 200, "/broken": 503, "/moved": 302}

    def do_GET(self) -> None:
        self.send_response(self.status.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()


def closed_port() -> int:
    return free_port()  # nothing listens there


def container(**probes: Any) -> dict[str, Any]:
    return {"name": "main", "image": "x", "ports": [{"name": "http", "containerPort": probes.pop("port", 1)}], **probes}


def test_http_probe_succeeds_on_2xx_and_3xx_and_fails_otherwise_with_the_kubelet_words(http_port: int) -> None:
    c = container(port=http_port)
    assert probe_once({"httpGet": {"path": "/ready", "port": "http"}}, c, "n")[0] is True
    assert probe_once({"httpGet": {"path": "/moved", "port": http_port}}, c, "n")[0] is True
    ok, detail = probe_once({"httpGet": {"path": "/broken", "port": "http"}}, c, "n")
    assert not ok and detail == "HTTP probe failed with statuscode: 503"
    ok, detail = probe_once({"httpGet": {"path": "/", "port": closed_port()}}, c, "n")
    assert not ok and "refused" in detail.lower()


def test_tcp_probe_follows_whether_the_port_listens(http_port: int) -> None:
    c = container()
    assert probe_once({"tcpSocket": {"port": http_port}}, c, "n")[0] is True
    assert probe_once({"tcpSocket": {"port": closed_port()}}, c, "n")[0] is False


def test_a_probe_port_name_the_container_does_not_declare_is_refused() -> None:
    with pytest.raises(CannotEmulate, match="names no port"):
        probe_once({"tcpSocket": {"port": "grpc"}}, container(), "n")


def test_readiness_turns_the_pod_ready_then_not_ready_after_the_failure_threshold(http_port: int) -> None:
    spec = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 0, "failureThreshold": 2}
    c = container(port=http_port, readinessProbe=spec)
    probes = Probes(c, "n")
    assert probes.ready is False, "a readiness probe starts not ready, as on a kubelet"
    assert probes.tick() == (True, "") and probes.ready
    spec["httpGet"]["path"] = "/broken"
    assert probes.tick() == (False, "") and probes.ready, "one failure is under the threshold"
    assert probes.tick() == (True, "") and not probes.ready


def test_liveness_failure_is_reported_once_the_threshold_is_reached_and_waits_for_startup(http_port: int) -> None:
    c = container(
        port=http_port,
        startupProbe={"tcpSocket": {"port": closed_port()}, "periodSeconds": 0, "failureThreshold": 5},
        livenessProbe={"httpGet": {"path": "/broken", "port": "http"}, "periodSeconds": 0, "failureThreshold": 2},
    )
    probes = Probes(c, "n")
    for _ in range(3):  # liveness does not run before startup succeeds
        assert probes.tick() == (False, "") and not probes.started
    c["startupProbe"]["tcpSocket"]["port"] = http_port
    changed, unhealthy = probes.tick()  # startup passes; liveness runs from here: its first failure
    assert changed and probes.started and probes.ready and unhealthy == ""  # no readiness probe: ready once started
    assert probes.tick()[1] == "HTTP probe failed with statuscode: 503"


def test_initial_delay_holds_a_probe_back(http_port: int) -> None:
    c = container(
        port=http_port,
        readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "initialDelaySeconds": 0.3, "periodSeconds": 0},
    )
    probes = Probes(c, "n")
    assert probes.tick() == (False, "") and not probes.ready
    time.sleep(0.35)
    assert probes.tick() == (True, "") and probes.ready


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"initContainers": [{"name": "i"}]}, "init and ephemeral"),
        ({"runtimeClassName": "nvidia"}, "runtimeClassName nvidia"),
        ({"restartPolicy": "Sometimes"}, "not a restart policy"),
        ({"securityContext": {"sysctls": [{"name": "a", "value": "1"}]}}, "sysctls"),
    ],
)
def test_what_the_dev_node_cannot_give_is_refused_with_its_name(spec: dict[str, Any], words: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [container()], **spec}}
    with pytest.raises(CannotEmulate, match=words):
        check_pod(pod)


def test_two_containers_and_grpc_probes_are_refused_and_the_chart_pods_pass() -> None:
    two = {"metadata": {"name": "p"}, "spec": {"containers": [container(), container()]}}
    with pytest.raises(CannotEmulate, match="2 containers"):
        check_pod(two)
    grpc = {"metadata": {"name": "p"}, "spec": {"containers": [container(livenessProbe={"grpc": {"port": 1}})]}}
    with pytest.raises(CannotEmulate, match="livenessProbe"):
        check_pod(grpc)
    http = container(readinessProbe={"httpGet": {"port": "http"}}, livenessProbe={"tcpSocket": {"port": 1}})
    check_pod({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Always", "containers": [http]}})
