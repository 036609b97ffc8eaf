"""The chart's side of serving that heals itself: the readiness gate, the Triton Role, the settings.

The RBAC for Triton's replicas is a Role in Triton's namespace with exactly
permissions.TRITON_RULES (+ GATE_RULES with the gate), never a ClusterRole rule.
"""

from __future__ import annotations

from typing import Any

import pytest

from edgeopt.operator.permissions import GATE_RULES, RULES, TRITON_RULES, Rule
from edgeopt.operator.serving_plan import READINESS_GATE
from edgeopt.operator.settings import OperatorSettings
from tests.ship import chart
from tests.ship.test_chart import by_kind, container_env, one, triples

TRITON = ("--set", "triton.enabled=true")


def expected(*rules: tuple[Rule, ...]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for group in rules
        for rule in group
        for g in rule.api_groups
        for r in rule.resources
        for v in rule.verbs
    }


def triton_role(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-triton")]
    assert len(roles) <= 1
    return roles[0] if roles else None


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return container_env(one(docs, "Deployment", "edgeopt"))


def test_the_charts_triton_carries_the_gate_and_the_operator_sets_it() -> None:
    docs = chart.render(*TRITON)
    pod = one(docs, "Deployment", "-triton")["spec"]["template"]["spec"]
    assert pod["readinessGates"] == [{"conditionType": READINESS_GATE}]
    svc = one(docs, "Service", "-triton")
    env = operator_env(docs)
    assert env["EDGEOPT_TRITON_SERVICE"] == f"edgeopt/{svc['metadata']['name']}"
    assert env["EDGEOPT_TRITON_READINESS_GATE"] == "true"
    OperatorSettings.from_env(env)  # what the chart sets, the operator accepts
    role = triton_role(docs)
    assert role is not None and role["metadata"]["namespace"] == "edgeopt"
    assert triples(role["rules"]) == expected(TRITON_RULES, GATE_RULES)
    binding = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == role["metadata"]["name"]]
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    assert binding and binding[0]["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "edgeopt"}]
    cluster = triples(one(docs, "ClusterRole")["rules"])
    assert cluster == expected(RULES), "Triton's Pods and EndpointSlices are never granted cluster-wide"


def test_without_the_gate_no_pod_permission() -> None:
    docs = chart.render(*TRITON, "--set", "triton.readinessGate=false")
    assert "readinessGates" not in one(docs, "Deployment", "-triton")["spec"]["template"]["spec"]
    assert operator_env(docs)["EDGEOPT_TRITON_READINESS_GATE"] == "false"
    role = triton_role(docs)
    assert role is not None and triples(role["rules"]) == expected(TRITON_RULES)


@pytest.mark.parametrize(("gate", "rules"), [("false", (TRITON_RULES,)), ("true", (TRITON_RULES, GATE_RULES))])
def test_a_triton_the_chart_does_not_deploy(gate: str, rules: tuple[tuple[Rule, ...], ...]) -> None:
    docs = chart.render(
        "--set",
        "operator.tritonService=inference/triton",
        "--set",
        "operator.tritonURL=http://triton.inference:8000",
        "--set",
        f"operator.tritonReadinessGate={gate}",
    )
    env = operator_env(docs)
    assert (env["EDGEOPT_TRITON_SERVICE"], env["EDGEOPT_TRITON_READINESS_GATE"]) == ("inference/triton", gate)
    OperatorSettings.from_env(env)
    role = triton_role(docs)
    assert role is not None and role["metadata"]["namespace"] == "inference"
    assert triples(role["rules"]) == expected(*rules)


def test_no_triton_no_role_and_one_url() -> None:
    docs = chart.render("--set", "operator.tritonURL=http://triton.inference:8000")
    assert triton_role(docs) is None
    env = operator_env(docs)
    assert env["EDGEOPT_TRITON_SERVICE"] == ""
    assert OperatorSettings.from_env(env).triton_service is None


def test_serving_settings_reach_the_operator() -> None:
    docs = chart.render("--set", "operator.servingAuditSeconds=12", "--set", "operator.servingLoadParallelism=2")
    settings = OperatorSettings.from_env(operator_env(docs))
    assert (settings.serving_audit_seconds, settings.serving_load_parallelism) == (12.0, 2)


@pytest.mark.parametrize(
    "sets",
    [["operator.tritonService=triton"], ["operator.servingAuditSeconds=0"], ["operator.servingLoadParallelism=0"]],
)
def test_schema_rejects_bad_serving_values(sets: list[str]) -> None:
    with pytest.raises(AssertionError, match="values don.t meet the specifications|schema"):
        chart.render(*(a for s in sets for a in ("--set", s)))


def test_a_terminating_triton_serves_until_kube_proxies_stop_routing_to_it() -> None:
    (c,) = one(chart.render(*TRITON), "Deployment", "-triton")["spec"]["template"]["spec"]["containers"]
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    (c,) = one(chart.render(*TRITON, "--set", "triton.preStopSleepSeconds=0"), "Deployment", "-triton")["spec"][
        "template"
    ]["spec"]["containers"]
    assert "lifecycle" not in c
