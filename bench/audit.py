"""Reading the API server's audit log: requests per client and resource, and a timeline per OptimizedModel.

The dev control plane writes it when started with ``audit=True`` (Metadata
level: who asked, verb, object, when; never bodies).  Every request carries
its user agent, which tells the clients apart although the benchmark and
the operator use the same admin identity here:

* ``kopf/...``                 — kopf inside the operator (finalizer, annotations, Events, watches);
* ``OpenAPI-Generator/...``    — the operator's own code (``edgeopt.operator.kube``, the python client);
* ``kube-controller-manager``  — the garbage collector and the other controllers;
* ``edgeopt-bench``            — this benchmark (it sets that user agent on its client).

The timeline of one resource is what it takes from ``kubectl apply`` to its
Job: create → the ConfigMap → the Job → the status patch, and kopf's first
patch of the resource (its finalizer before the handler where a delete has
work, otherwise its last-handled-configuration annotation after it).
Standard library only (unit-tested on audit lines this API server wrote).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_USER_AGENT = "edgeopt-bench"
CLIENTS = (
    ("kopf/", "kopf"),
    ("OpenAPI-Generator/", "operator"),
    ("kube-controller-manager", "controller-manager"),
    (BENCH_USER_AGENT, "bench"),
)


@dataclass(frozen=True)
class Request:
    client: str
    verb: str
    resource: str  # resource[/subresource]
    namespace: str
    name: str
    received: float  # epoch seconds
    done: float
    code: int


def client_of(user_agent: str) -> str:
    for prefix, name in CLIENTS:
        if user_agent.startswith(prefix):
            return name
    return "other"


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def parse_line(line: str) -> Request | None:
    """One audit event (ResponseComplete stage) -> Request; other stages, watches' start and junk -> None."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if event.get("stage") != "ResponseComplete" or not isinstance(event.get("objectRef"), dict):
        return None
    ref = event["objectRef"]
    resource = ref.get("resource") or ""
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return Request(
        client=client_of(event.get("userAgent") or ""),
        verb=event.get("verb") or "",
        resource=resource,
        namespace=ref.get("namespace") or "",
        name=ref.get("name") or "",
        received=_epoch(event["requestReceivedTimestamp"]),
        done=_epoch(event["stageTimestamp"]),
        code=int((event.get("responseStatus") or {}).get("code") or 0),
    )


def read(path: Path, *, since: float = 0.0, until: float = float("inf")) -> Iterator[Request]:
    with open(path, errors="replace") as fh:
        for line in fh:
            req = parse_line(line)
            if req is not None and since <= req.received <= until:
                yield req


def counts(requests: Iterable[Request], namespace: str) -> dict[str, Counter[str]]:
    """client -> ``verb resource`` -> count: the namespace's requests, plus the operator's cluster-wide ones.

    The operator's cluster-wide calls in the window (kopf's watch reconnects;
    the capacity count is an index now, not a LIST of all Jobs) are part of the
    cost of the round; the controllers' cluster-wide background is not.
    """
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in requests:
        if r.namespace == namespace or (not r.namespace and r.client in ("kopf", "operator")):
            out[r.client][f"{r.verb} {r.resource}"] += 1
    return dict(out)


PHASES = ("kopf", "configmap", "job", "status")


def timelines(requests: Iterable[Request], namespace: str, names: Iterable[str]) -> dict[str, dict[str, float]]:
    """name -> phase -> ms after the create request was received; a phase the log lacks is left out.

    kopf: kopf's first PATCH of the resource; configmap / job: the POST
    of the ``<name>-g<gen>-<hash>`` object (the operator's or, for the
    direct baseline, the benchmark's); status: the first status PATCH.
    """
    wanted = set(names)
    first: dict[str, dict[str, float]] = defaultdict(dict)
    for r in sorted(requests, key=lambda r: r.received):
        if r.namespace != namespace or r.code >= 400:
            continue
        owner = r.name if r.name in wanted else r.name.rsplit("-g", 1)[0] if "-g" in r.name else ""
        if owner not in wanted:
            continue
        key = {
            ("create", "optimizedmodels"): "create",
            ("patch", "optimizedmodels"): "kopf",
            ("create", "configmaps"): "configmap",
            ("create", "jobs"): "job",
            ("patch", "optimizedmodels/status"): "status",
        }.get((r.verb, r.resource))
        if key == "kopf" and r.client != "kopf":
            continue
        if key and key not in first[owner]:
            first[owner][key] = r.done if key == "create" else r.received
    out = {}
    for name, marks in first.items():
        if "create" in marks:
            out[name] = {k: round((v - marks["create"]) * 1000, 2) for k, v in marks.items() if k != "create"}
    return out


def phase_summary(lines: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Median and p99 of each phase's time since the one before it in time (where the time goes, in ms).

    Each resource's marks are taken in the order they happened, so no step is negative; the steps are
    listed in the order of their median time after the create.
    """
    from bench.stats import percentile

    steps: dict[str, list[float]] = defaultdict(list)
    at: dict[str, list[float]] = defaultdict(list)
    for marks in lines.values():
        prev = 0.0
        for phase, t in sorted(((p, marks[p]) for p in PHASES if p in marks), key=lambda pt: pt[1]):
            steps[f"→{phase}"].append(t - prev)
            at[f"→{phase}"].append(t)
            prev = t
    order = sorted(steps, key=lambda k: percentile(at[k], 50))
    return {
        k: {"n": len(steps[k]), "p50": round(percentile(steps[k], 50), 1), "p99": round(percentile(steps[k], 99), 1)}
        for k in order
    }
