"""Where Triton runs: every replica behind a Service, or one bare URL.

An explicit load through a Service reaches one Pod, so the operator talks to
each replica itself. The replicas are the endpoints of the Service's
EndpointSlices (label ``kubernetes.io/service-name``), ready or not: a Pod
whose readiness gate is still False is listed with ``ready: false``, and it is
exactly the replica that needs its models. Terminating endpoints are left out.

A ``tritonURL`` with no Service behind it (a spec URL, or the operator's
default when no Service is configured) is one endpoint. Pure functions only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeopt.errors import SpecError

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: The Service port the operator talks to (the chart names Triton's HTTP port ``http``).
HTTP_PORT_NAME = "http"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, order=True)
class Endpoint:
    """One Triton replica: ``pod`` is None for a bare URL (no Pod to gate)."""

    name: str  # the Pod name, or the URL for a bare endpoint: what status messages say
    url: str
    pod: str | None = None
    namespace: str | None = None
    ready: bool = True  # what the EndpointSlice says (Pod Ready, gates included)


def parse_service(text: str) -> tuple[str, str]:
    """``namespace/name`` -> (namespace, name), with a message that names the fix."""
    parts = text.strip().split("/")
    if len(parts) != 2 or not all(_NAME.match(p) and len(p) <= 63 for p in parts):
        raise SpecError(f"Triton Service {text!r} is not NAMESPACE/NAME (e.g. inference/edgeopt-triton)")
    return parts[0], parts[1]


def bare(url: str) -> list[Endpoint]:
    return [Endpoint(name=url.rstrip("/"), url=url.rstrip("/"))]


def _port(ports: Iterable[Mapping[str, Any]] | None) -> int | None:
    ports = list(ports or [])
    for p in ports:
        if p.get("name") == HTTP_PORT_NAME and p.get("port"):
            return int(p["port"])
    return int(ports[0]["port"]) if len(ports) == 1 and ports[0].get("port") else None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def from_slices(slices: Iterable[Mapping[str, Any]], scheme: str = "http") -> list[Endpoint]:
    """Every non-terminating endpoint of a Service's EndpointSlices, one per address, sorted by name."""
    found: dict[str, Endpoint] = {}
    for s in slices:
        port = _port(s.get("ports"))
        if port is None or (s.get("addressType") or "IPv4") == "FQDN":
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("terminating") or not ep.get("addresses"):
                continue
            ref = ep.get("targetRef") or {}
            pod = ref.get("name") if ref.get("kind") == "Pod" else None
            url = f"{scheme}://{_host(ep['addresses'][0])}:{port}"
            ready = cond.get("ready") is not False  # unset means ready (the API's own convention)
            found[url] = Endpoint(pod or url, url, pod, ref.get("namespace") if pod else None, ready)
    return sorted(found.values())
