"""The chart's NetworkPolicies, checked against the labels the chart and the operator really set.

There is no CNI here to enforce them, so what can be proved is proved: each
policy selects exactly the Pods it is meant for (the chart's own Deployments,
the converter Jobs as ``resources.conversion_job`` builds them, the helm test
Pod), allows exactly the peers it is meant to allow, and the API server
accepts them (test_chart_k8s.py applies the rendered chart server-side).
"""

from __future__ import annotations

from typing import Any

import pytest

from edgeopt.operator import resources
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import parse_manifest
from tests.ship import chart
from tests.ship.test_chart import by_kind, one

TRITON = ("--set", "triton.enabled=true")


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def converter_pod_labels() -> dict[str, str]:
    doc = {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": "add", "namespace": "ml"},
        "spec": {
            "source": {"uri": "pvc://models/add", "format": "SavedModel"},
            "tensorrt": {"enabled": False},
            "target": {"repository": "pvc://triton-models"},
        },
    }
    model = parse_manifest(doc)
    job = resources.conversion_job(model, OperatorSettings(), name="add-g1-abc", generation=1, uid="u", configmap="c")
    return pod_labels(job)


def policies(*args: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"].rsplit("-", 1)[1]: p for p in by_kind(chart.render(*args), "NetworkPolicy")}


def test_on_by_default_and_off_on_request() -> None:
    assert set(policies()) == {"converter", "operator"}
    assert set(policies(*TRITON)) == {"converter", "operator", "triton"}
    assert not policies("--set", "networkPolicy.enabled=false", *TRITON)


def test_each_policy_selects_exactly_its_own_pods() -> None:
    docs = chart.render(*TRITON)
    pods = {
        "operator": pod_labels(one(docs, "Deployment", "edgeopt")),
        "triton": pod_labels(one(docs, "Deployment", "-triton")),
        "converter": converter_pod_labels(),
        "test": dict(next(d for d in docs if d["kind"] == "Pod")["metadata"]["labels"]),
    }
    for name, policy in policies(*TRITON).items():
        selected = {pod for pod, labels in pods.items() if matches(policy["spec"]["podSelector"], labels)}
        assert selected == {name}, f"NetworkPolicy {name} selects {selected}"


def test_converter_pods_have_no_network_at_all() -> None:
    spec = policies()["converter"]["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert spec["egress"] == [] and spec["ingress"] == []
    cleanup_labels = resources.cleanup_job(
        parse_manifest(
            {
                "apiVersion": "edgeopt.io/v1alpha1",
                "kind": "OptimizedModel",
                "metadata": {"name": "a", "namespace": "ml"},
                "spec": {
                    "source": {"uri": "pvc://m/a", "format": "SavedModel"},
                    "target": {"repository": "pvc://r", "deletionPolicy": "Delete"},
                },
            }
        ),
        OperatorSettings(),
        uid="u",
    )
    assert cleanup_labels is not None
    assert matches(spec["podSelector"], pod_labels(cleanup_labels)), "the clean-up Job needs no network either"


def test_converter_policy_covers_every_watched_namespace() -> None:
    docs = by_kind(chart.render("--set", "watchNamespaces={vision,speech}"), "NetworkPolicy")
    converter = [d for d in docs if d["metadata"]["name"].endswith("-converter")]
    assert sorted(d["metadata"]["namespace"] for d in converter) == ["edgeopt", "speech", "vision"]


def test_triton_accepts_only_the_operator_and_labelled_clients() -> None:
    docs = chart.render(*TRITON)
    operator = pod_labels(one(docs, "Deployment", "edgeopt"))
    converter = converter_pod_labels()
    test_pod = dict(next(d for d in docs if d["kind"] == "Pod")["metadata"]["labels"])
    spec = policies(*TRITON)["triton"]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    ports = {p["port"] for p in rule["ports"]}
    assert ports == {"http", "grpc"}, "the metrics port is opened only through tritonExtraIngress"
    triton_ports = {
        p["name"] for p in one(docs, "Deployment", "-triton")["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports <= triton_ports

    def allowed(labels: dict[str, str]) -> bool:
        return any(matches(peer["podSelector"], labels) for peer in rule["from"])

    assert allowed(operator)
    assert allowed({"app": "my-client", "edgeopt.io/triton-client": "true"})
    assert allowed(test_pod), "helm test must still reach Triton"
    assert not allowed(converter), "a converter Pod must never reach Triton"
    assert not allowed({"app": "my-client"})
    client_peer = next(p for p in rule["from"] if "namespaceSelector" in p)
    assert client_peer["namespaceSelector"] == {}, "clients may live in any namespace"


def test_operator_egress_is_dns_the_api_server_and_triton() -> None:
    docs = chart.render(*TRITON)
    triton_labels = pod_labels(one(docs, "Deployment", "-triton"))
    spec = policies(*TRITON)["operator"]["spec"]
    assert spec["policyTypes"] == ["Egress"]
    dns, api, triton = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [p["ipBlock"]["cidr"] for p in api["to"]] == ["0.0.0.0/0"]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    (peer,) = triton["to"]
    assert matches(peer["podSelector"], triton_labels) and "namespaceSelector" not in peer
    assert [p["port"] for p in triton["ports"]] == [8000]
    # Without the chart's Triton, no Triton rule; operatorExtraEgress adds what an admin needs.
    extra = '{"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 8000}]}'
    spec = policies("--set-json", f"networkPolicy.operatorExtraEgress=[{extra}]")["operator"]["spec"]
    assert len(spec["egress"]) == 3 and spec["egress"][2]["to"][0]["ipBlock"]["cidr"] == "10.1.2.3/32"


@pytest.mark.parametrize(
    "sets",
    [["networkPolicy.apiServer.cidrs={nonsense}"], ["networkPolicy.tritonClientLabel.key="]],
)
def test_schema_rejects_bad_network_values(sets: list[str]) -> None:
    with pytest.raises(AssertionError, match="schema"):
        chart.render(*[a for s in sets for a in ("--set", s)])
