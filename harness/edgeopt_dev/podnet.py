"""The dev node's Pod network: one local address per Pod, and Service names that follow the EndpointSlices.

Pods share this machine's network namespace (podman ``--network host``), yet
each gets an address of its own, so two replicas can listen on the same port
when each binds its Pod IP (the chart's ``triton.bindPodIP``):

* **Pod IPs** come from :data:`POD_CIDR` (198.18.0.0/16, a range reserved for
  benchmarking and routed nowhere), made local to this machine by one route,
  ``ip route add local 198.18.0.0/16 dev lo`` (the whole range answers on
  loopback, as 127.0.0.0/8 does).  Not 127.0.0.N: kube-apiserver refuses a
  loopback address in an EndpointSlice ("may not be in the loopback range"),
  so the real endpointslice controller could not publish them.  An address is
  held by an ``flock`` on a file named after it under the temp folder, so dev
  clusters running side by side on one machine never hand out the same one,
  and a node agent that dies releases its Pods' addresses with its process.
* **Service names** (``svc``, ``svc.ns``, ``svc.ns.svc``,
  ``svc.ns.svc.cluster.local``) are written into each Pod's ``/etc/hosts``, a
  file the node agent rewrites in place whenever an EndpointSlice changes:
  a name resolves to the Service's *ready* endpoints (ready as the
  endpointslice controller marks them, the set kube-proxy routes to), and to
  127.0.0.1 (the node) while it has none.  The port is the one dialled: a
  Service's ``port`` reaches its Pods only where it equals the ``targetPort``.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import random
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgeopt.errors import EdgeoptError

#: The Pods' addresses (the Node's spec.podCIDR): RFC 2544's benchmarking range, never routed on a network.
POD_CIDR = "198.18.0.0/16"
#: What a Service name resolves to while the Service has no ready endpoint: the node, as before Pod IPs.
NO_ENDPOINT_IP = "127.0.0.1"
#: Where the address locks of every dev cluster on this machine live.
LOCK_DIR = Path(tempfile.gettempdir()) / "edgeopt-pod-ips"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Key = tuple[str, str]  # (namespace, Service name)


class PodNetworkError(EdgeoptError):
    """The Pod range is not local to this machine and cannot be made so; the message says what to run."""


def _is_local(ip: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True


def ensure_local_route(cidr: str = POD_CIDR) -> None:
    """Make every address of ``cidr`` local (once per boot; needs CAP_NET_ADMIN the first time)."""
    net = ipaddress.ip_network(cidr)
    probe = str(net.network_address + 1)
    if _is_local(probe):
        return
    command = ["ip", "route", "add", "local", cidr, "dev", "lo"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        detail = proc.stderr.strip()
    except FileNotFoundError:
        detail = "the `ip` command (iproute2) is not installed"
    if not _is_local(probe):
        raise PodNetworkError(
            f"the dev cluster's Pod addresses ({cidr}) are not local to this machine and `{' '.join(command)}` "
            f"failed ({detail}); run it once as root (`sudo {' '.join(command)}`), then start the cluster again"
        )


class PodIPs:
    """Hands out the addresses of :data:`POD_CIDR`, each held by an flock until released (or the process ends)."""

    def __init__(self, cidr: str = POD_CIDR, lock_dir: Path = LOCK_DIR) -> None:
        net = ipaddress.ip_network(cidr)
        # Skip the network address, the first host (kept for the node) and the broadcast address.
        self._first, self._count = int(net.network_address) + 2, net.num_addresses - 3
        self._next = random.randrange(self._count)  # clusters side by side start apart
        self._dir = lock_dir
        self._held: dict[str, tuple[str, int]] = {}  # pod uid -> (ip, lock fd)
        self._lock = threading.Lock()

    def allocate(self, uid: str) -> str:
        """The Pod's address (the same one again for the same uid until released)."""
        with self._lock:
            if uid in self._held:
                return self._held[uid][0]
            self._dir.mkdir(mode=0o1777, parents=True, exist_ok=True)
            for _ in range(self._count):
                ip = str(ipaddress.ip_address(self._first + self._next))
                self._next = (self._next + 1) % self._count  # next fit: a released address is reused last
                fd = os.open(self._dir / ip, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                self._held[uid] = (ip, fd)
                return ip
        raise PodNetworkError(f"every address of {POD_CIDR} is taken by a Pod on this machine")

    def release(self, uid: str) -> None:
        with self._lock:
            held = self._held.pop(uid, None)
        if held:
            os.close(held[1])


def ready_addresses(slices: Iterable[dict[str, Any]]) -> dict[Key, list[str]]:
    """Each Service's ready endpoint addresses, from its EndpointSlices (an unset ``ready`` means ready)."""
    table: dict[Key, set[str]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service or s.get("addressType") != "IPv4":
            continue
        ips = table.setdefault((meta.get("namespace", ""), service), set())
        for endpoint in s.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is not False:
                ips.update(endpoint.get("addresses") or [])
    return {key: sorted(ips, key=ipaddress.ip_address) for key, ips in table.items()}


def hosts_text(namespace: str, hostname: str, pod_ip: str, services: Iterable[Key], ready: dict[Key, list[str]]) -> str:
    """A Pod's /etc/hosts: loopback, its own name at its IP, every Service's names at its ready endpoints."""
    lines = [
        "# Kubernetes-managed hosts file (edgeopt dev node: Service names -> ready endpoints).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    if pod_ip:
        lines.append(f"{pod_ip}\t{hostname}")
    for ns, name in sorted(services):
        names = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
        if ns == namespace:
            names.insert(0, name)
        lines += [f"{ip}\t{' '.join(names)}" for ip in ready.get((ns, name)) or [NO_ENDPOINT_IP]]
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, text: str) -> bool:
    """Rewrite a bind-mounted file through its inode (a rename would not reach the container); False if unchanged."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # write, then cut: a reader never sees an empty file
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return True


class ServiceDirectory:
    """The Services and EndpointSlices the node agent watches; ``on_change()`` runs after every change."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self._services: dict[Key, bool] = {}
        self._slices: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._on_change = on_change

    @staticmethod
    def _key(obj: dict[str, Any]) -> Key:
        return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]

    def services_listed(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._services = {self._key(s): True for s in items}
        self._on_change()

    def service_event(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._services.pop(self._key(obj), None)
            else:
                self._services[self._key(obj)] = True
        self._on_change()

    def slices_listed(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._slices = {self._key(s): s for s in items}
        self._on_change()

    def slice_event(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._slices.pop(self._key(obj), None)
            else:
                self._slices[self._key(obj)] = obj
        self._on_change()

    def hosts(self, namespace: str, hostname: str, pod_ip: str) -> str:
        with self._lock:
            services, slices = list(self._services), list(self._slices.values())
        return hosts_text(namespace, hostname, pod_ip, services, ready_addresses(slices))


def directory_from_api(core: Any, discovery: Any) -> ServiceDirectory:
    """A one-off ServiceDirectory read from the API (for a Pod resolved without a node agent)."""
    directory = ServiceDirectory()
    directory.services_listed(
        [
            {"metadata": {"namespace": s.metadata.namespace, "name": s.metadata.name}}
            for s in core.list_service_for_all_namespaces().items
        ]
    )
    slices = discovery.list_endpoint_slice_for_all_namespaces(_preload_content=False)
    directory.slices_listed(json.loads(slices.data)["items"])
    return directory
