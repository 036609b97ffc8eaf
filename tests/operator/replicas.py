"""Triton replicas for the serving-reconcile tests: real tritonserver processes behind a real API server.

Each replica is a real ``tritonserver`` on this machine's own address (not a
loopback one: the API server refuses those in an EndpointSlice) and its own
port, a Pod object that declares the readiness
gate (its nodeSelector matches no node, so nothing runs it: the process stands
in for its container), and an EndpointSlice of the ``triton`` Service naming
that Pod, the way the endpointslice controller would. The operator under test
discovers, loads, gates and records through the API server exactly as in a cluster.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from edgeopt.operator.endpoints import SERVICE_NAME_LABEL
from edgeopt.operator.serving_plan import READINESS_GATE
from edgeopt_dev.netutil import free_port
from edgeopt_dev.toy_models import write_model
from edgeopt_dev.triton_server import TritonServer
from tests.operator.support import Kubectl

SERVICE = "triton"
__all__ = ["SERVICE", "Replica", "service", "write_model"]


def node_ip() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing); None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))
        except OSError:
            return None
        ip = str(s.getsockname()[0])
    return None if ip.startswith("127.") else ip


class Replica:
    """One Triton 'Pod': a process on 127.0.0.N, a Pod object with the gate, its EndpointSlice."""

    def __init__(self, kubectl: Kubectl, namespace: str, name: str, host: str, repo: Path, logs: Path) -> None:
        self.kubectl, self.namespace, self.name, self.host = kubectl, namespace, name, host
        self.repo, self.logs = repo, logs
        self.port = free_port(host)
        self.server: TritonServer | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def create(self) -> Replica:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "labels": {"app": SERVICE}},
            "spec": {
                "readinessGates": [{"conditionType": READINESS_GATE}],
                "nodeSelector": {"edgeopt.io/test-no-such-node": "true"},  # never runs: the process stands in
                "containers": [{"name": "tritonserver", "image": "stand-in"}],
            },
        }
        self.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(pod))
        self.publish(ready=False)
        return self

    def publish(self, *, ready: bool, terminating: bool = False) -> None:
        """The EndpointSlice, as the endpointslice controller writes it for this Pod."""
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-{self.name}",
                "labels": {SERVICE_NAME_LABEL: SERVICE, "endpointslice.kubernetes.io/managed-by": "edgeopt-tests"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": self.port, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": [self.host],
                    "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
                    "targetRef": {"kind": "Pod", "name": self.name, "namespace": self.namespace},
                }
            ],
        }
        self.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(slice_))

    def start(self) -> float:
        """Start the process (a new container); returns its start time (monotonic)."""
        import time

        self.starts += 1
        started = time.monotonic()
        self.server = TritonServer(
            self.repo, host=self.host, http_port=self.port, log_path=self.logs / f"{self.name}-{self.starts}.log"
        ).start()
        return started

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def gate(self) -> str | None:
        pod = json.loads(self.kubectl("get", "pod", self.name, "-n", self.namespace, "-o", "json").stdout)
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c["type"] == READINESS_GATE:
                return str(c["status"])
        return None


def service(kubectl: Kubectl, namespace: str) -> None:
    """A Service with no selector: its EndpointSlices are the tests' own (Replica.publish)."""
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE},
        "spec": {"ports": [{"name": "http", "port": 8000}]},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(svc))
