"""The dev cluster's one Node, and the kubelet endpoint behind ``kubectl logs``.

kube-apiserver answers ``pods/log`` by calling the kubelet of the Pod's node
at the address and port the Node object advertises.  The node agent registers
a Node (``edgeopt-local``, InternalIP 127.0.0.1, podCIDR podnet.POD_CIDR,
this machine's CPUs and memory, no GPU) that kube-scheduler binds Pods to, and serves ``/containerLogs/<ns>/<pod>/<c>``
over TLS (client certificates from the cluster CA only) from the container log
files.  ``follow``, ``tailLines`` and ``limitBytes`` work; other kubelet APIs
(exec, attach, port-forward, stats) answer 501.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes.client import CoreV1Api
from kubernetes.client.rest import ApiException

from edgeopt_dev.binaries import KUBERNETES_VERSION
from edgeopt_dev.layout import Layout
from edgeopt_dev.podnet import POD_CIDR

log = logging.getLogger("edgeopt.nodeagent")
NODE_NAME = "edgeopt-local"
NODE_IP = "127.0.0.1"
NODE_LABELS = {
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
    "kubernetes.io/hostname": NODE_NAME,
}


def node_capacity(root: Path) -> dict[str, str]:
    """This machine, as the Node advertises it (no GPU: kube-scheduler leaves Pods that ask for one Pending).

    Its CPUs, its memory, the disk that holds the cluster folder (``root``) as
    ephemeral storage, and the kubelet's default of 110 Pods. kube-scheduler
    adds up the requests of the Pods bound here against these.
    """
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    disk = shutil.disk_usage(root).total
    times = overcommit()
    cpus, mem = (os.cpu_count() or 1) * times, mem_kib * times
    return {"cpu": str(cpus), "memory": f"{mem}Ki", "ephemeral-storage": str(disk), "pods": "110"}


#: ``EDGEOPT_DEV_NODE_OVERCOMMIT``: how many times its CPUs and memory the dev node advertises.
OVERCOMMIT_ENV = "EDGEOPT_DEV_NODE_OVERCOMMIT"
DEFAULT_OVERCOMMIT = 8


def overcommit() -> int:
    """The factor on the node's CPUs and memory (default 8; 1 = this machine exactly).

    A test session shares one dev cluster: its Pods' requests (two Triton
    replicas, the operator, converter Jobs with ``cpu: 1``, the Pods of earlier
    tests still terminating) add up past a 2-core machine's real count, and
    kube-scheduler would then leave Pods Pending as ``Insufficient cpu`` for a
    reason no user of a real node would meet. Set 1 to see real pressure.
    """
    raw = os.environ.get(OVERCOMMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_OVERCOMMIT
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{OVERCOMMIT_ENV}={raw!r}: expected a whole number >= 1 (1 = this machine's real size)")
    return int(raw)


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def node_status(port: int, root: Path) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "capacity": node_capacity(root),
        "allocatable": node_capacity(root),
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "edgeopt node agent is posting ready status",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        ],
        "nodeInfo": {
            "kubeletVersion": KUBERNETES_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "containerRuntimeVersion": "edgeopt-nodeagent://local",
            "kernelVersion": "",
            "osImage": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def register_node(core: CoreV1Api, port: int, root: Path) -> None:
    """Create (or take over) the Node object and publish where its kubelet listens."""
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": dict(NODE_LABELS)},
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
    }
    try:
        core.create_node(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    node = core.read_node(NODE_NAME)
    node.status = node_status(port, root)
    core.replace_node_status(NODE_NAME, node)


class _LogHandler(BaseHTTPRequestHandler):
    server: KubeletServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kubelet: " + format, *args)

    def _error(self, code: int, message: str) -> None:
        body = message.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._error(501, f"{url.path}: not emulated by the edgeopt node agent (only container logs)")
            return
        namespace, pod, _container = parts[1:]
        if not (_NAME.match(namespace) and _NAME.match(pod)):
            self._error(400, "invalid pod reference")
            return
        query = parse_qs(url.query)
        if query.get("previous") == ["true"]:
            self._error(400, f'previous terminated container in pod "{pod}" not found')
            return
        path = Layout(self.server.root).pod_log(namespace, pod)
        if not path.exists():
            self._error(404, f'no log for pod "{namespace}/{pod}"')
            return
        data = path.read_bytes()
        if "tailLines" in query:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[len(lines) - int(query["tailLines"][0]) :]) if int(query["tailLines"][0]) else b""
        limit = int(query["limitBytes"][0]) if "limitBytes" in query else None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        sent = self._send(data, limit, 0)
        if query.get("follow") != ["true"]:
            return
        offset = path.stat().st_size
        key = f"{namespace}_{pod}"
        while limit is None or sent < limit:
            running = self.server.is_running(key)
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            sent = self._send(chunk, limit, sent)
            if not running and not chunk:
                return
            time.sleep(0.2)

    def _send(self, data: bytes, limit: int | None, sent: int) -> int:
        if limit is not None:
            data = data[: max(limit - sent, 0)]
        if data:
            self.wfile.write(data)
            self.wfile.flush()
        return sent + len(data)

    def _not_emulated(self) -> None:
        self._error(501, f"{self.command} {self.path}: not emulated by the edgeopt node agent")

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_emulated


class KubeletServer(ThreadingHTTPServer):
    """HTTPS on 127.0.0.1:``port``; ``is_running(key)`` tells whether a Pod's process still runs."""

    daemon_threads = True

    def __init__(self, root: Path, port: int, pki: Path, is_running: Callable[[str], bool]) -> None:
        super().__init__((NODE_IP, port), _LogHandler)
        self.root = root
        self.is_running = is_running
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pki / "kubelet.crt"), str(pki / "kubelet.key"))
        context.verify_mode = ssl.CERT_REQUIRED  # only holders of a cluster client certificate
        context.load_verify_locations(str(pki / "ca.crt"))
        self.socket = context.wrap_socket(self.socket, server_side=True)

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="kubelet-server", daemon=True).start()
