"""Every API permission the operator uses, as data.

The chart's ClusterRole is tested against ``RULES`` so that RBAC grants what
the code needs and nothing more. When the operator starts calling a new API,
add it here first; the chart test then says what the chart lacks. The other
direction is tested too (tests/unit/test_permissions_used.py): every verb here
must be used by a ``Kube`` method that the operator calls, or by kopf itself
for what the operator registers with it; a verb nobody uses fails that test.
"""

from __future__ import annotations

from typing import NamedTuple


class Rule(NamedTuple):
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str


RULES: tuple[Rule, ...] = (
    Rule(
        ("edgeopt.io",),
        ("optimizedmodels",),
        ("get", "list", "watch", "patch"),
        "reconcile OptimizedModels; patch adds/removes the finalizer and kopf's progress annotations",
    ),
    Rule(("edgeopt.io",), ("optimizedmodels/status",), ("patch",), "phase, conditions, report"),
    Rule(
        ("batch",),
        ("jobs",),
        ("get", "list", "watch", "create", "delete"),
        "one conversion Job per generation; watch drives the phase; delete stops an outdated generation",
    ),
    Rule(
        ("",),
        ("configmaps",),
        ("get", "create"),
        "the manifest the converter reads; get adopts one a previous run made (garbage collection deletes it)",
    ),
    Rule(
        ("",),
        ("pods",),
        ("list", "watch"),
        "the converter's termination message (its Summary); watch (label-selected) explains a waiting Pod",
    ),
    Rule(("",), ("events",), ("create",), "an Event for every transition (kopf posts core/v1 Events)"),
    # What kopf itself needs.
    Rule(
        ("apiextensions.k8s.io",),
        ("customresourcedefinitions",),
        ("list", "watch"),
        "kopf discovers the resources it serves",
    ),
    Rule(("",), ("namespaces",), ("list", "watch"), "kopf follows namespaces when watching several or all"),
    Rule(
        ("kopf.dev",),
        ("clusterkopfpeerings", "kopfpeerings"),
        ("list", "watch", "patch"),
        "kopf peering: active/standby replicas (kopf watches the peering object and patches its own entry)",
    ),
    Rule(
        ("zalando.org",),
        ("clusterkopfpeerings", "kopfpeerings"),
        ("list", "watch", "patch"),
        "kopf peering (the legacy API group, still used when its CRD is installed)",
    ),
)

#: In the namespace where Triton runs only (a Role, never cluster-wide): find its replicas.
TRITON_RULES: tuple[Rule, ...] = (
    Rule(
        ("discovery.k8s.io",),
        ("endpointslices",),
        ("list", "watch"),
        "every Triton replica behind the Service: a load through the Service reaches one Pod",
    ),
)
#: Also in Triton's namespace, with the readiness gate: a replica joins the Service once it serves.
GATE_RULES: tuple[Rule, ...] = (
    Rule(("",), ("pods",), ("get",), "read a Triton Pod's readiness-gate condition before setting it"),
    Rule(("",), ("pods/status",), ("patch",), "set the edgeopt.io/models-loaded readiness gate of a Triton Pod"),
)
#: Granted only with the chart value ``kueue.enabled`` (or ``converter.queueName``): Kueue's word in the status.
KUEUE_RULES: tuple[Rule, ...] = (
    Rule(
        ("kueue.x-k8s.io",),
        ("workloads",),
        ("list",),
        "a queue-managed Job's Workload: QuotaReserved/Admitted and the pending reason (edgeopt/operator/kueue.py)",
    ),
)


def as_policy_rules() -> list[dict[str, list[str]]]:
    """RULES in the shape of a ClusterRole's ``rules`` (TRITON_RULES and GATE_RULES go in a Role)."""
    return policy_rules(RULES)


def policy_rules(rules: tuple[Rule, ...]) -> list[dict[str, list[str]]]:
    return [{"apiGroups": list(r.api_groups), "resources": list(r.resources), "verbs": list(r.verbs)} for r in rules]


def allows(api_group: str, resource: str, verb: str) -> bool:
    """Granted somewhere: cluster-wide/watched namespaces (RULES), or Triton's namespace (TRITON_RULES, GATE_RULES).

    KUEUE_RULES, granted only with ``kueue.enabled``, are not counted.
    """
    every = (*RULES, *TRITON_RULES, *GATE_RULES)
    return any(api_group in r.api_groups and resource in r.resources and verb in r.verbs for r in every)
