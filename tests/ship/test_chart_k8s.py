"""The chart against the real kube-apiserver (RBAC on): dry-run, install, permissions.

test_chart.py checks the rendering as data; this checks that the API server
agrees: every object and every example passes server-side validation, the
chart installs with helm, and its ServiceAccount can do exactly what
edgeopt/operator/permissions.py lists — in particular not read Secrets.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from edgeopt.operator.permissions import RULES
from tests.ship import chart

pytestmark = pytest.mark.k8s

ROOT = chart.ROOT


def helm(control_plane: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(control_plane.kubeconfig))
    proc = subprocess.run([chart.helm(), *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def split_crds(text: str) -> tuple[str, str]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    return yaml.safe_dump_all(crds), yaml.safe_dump_all(rest)


@pytest.fixture(scope="module")
def crds_installed(kubectl: Any) -> None:
    """The chart's CRDs, applied for real: objects of their kinds can only be dry-run once they exist."""
    crds, _ = split_crds(chart.render_text("--include-crds"))
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=edgeopt-ship-tests", "-f", "-",
            input=crds)  # fmt: skip
    names = ("crd/optimizedmodels.edgeopt.io", "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev")
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["triton.enabled=true", "persistence.modelRepository.create=true", "persistence.modelSource.create=true"],
        ["operator.replicaCount=2", "watchNamespaces={NS}"],
    ],
    ids=["defaults", "triton", "namespaced"],
)
def test_rendered_chart_passes_server_side_dry_run(
    kubectl: Any, crds_installed: None, namespace: str, sets: list[str]
) -> None:
    args = [a for s in sets for a in ("--set", s.replace("NS", namespace))]
    _, rest = split_crds(chart.render_text(*args, "--include-crds", namespace=namespace))
    out = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rest).stdout
    for kind in ("serviceaccount", "deployment.apps", "clusterrole.rbac"):
        assert kind in out, out


def test_deploy_manifests_pass_server_side_dry_run(kubectl: Any, crds_installed: None) -> None:
    kubectl("apply", "--dry-run=server", "-f", str(ROOT / "deploy" / "crds.yaml"))
    kubectl("create", "namespace", "edgeopt", check=False)
    kubectl("apply", "--dry-run=server", "-f", str(ROOT / "deploy" / "edgeopt.yaml"))


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")))
def test_examples_pass_server_side_validation(kubectl: Any, crds_installed: None, namespace: str, example: str) -> None:
    """kubectl's YAML is not PyYAML's (`y` is a boolean there): only the API server can say an example applies."""
    kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(ROOT / "examples" / example))


# --------------------------------------------------------------------------- helm install and RBAC


@pytest.fixture(scope="module")
def release(control_plane: Any, kubectl: Any, crds_installed: None) -> Iterator[tuple[str, str]]:
    """The chart installed with helm into its own namespace (CRDs already present, so not re-owned)."""
    name = f"edgeopt-{uuid.uuid4().hex[:6]}"  # contains the chart name, so it is the full name too
    sets = ["crds.enabled=false", f"operator.peering.name={name}",
            "persistence.modelRepository.create=true", "persistence.modelSource.create=true"]  # fmt: skip
    helm(control_plane, "install", name, str(chart.CHART), "--namespace", name, "--create-namespace",
         *[a for s in sets for a in ("--set", s)])  # fmt: skip
    try:
        yield name, name
    finally:
        helm(control_plane, "uninstall", name, "--namespace", name, check=False)
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_helm_install_creates_the_release(control_plane: Any, kubectl: Any, release: tuple[str, str]) -> None:
    name, ns = release
    status = helm(control_plane, "status", name, "-n", ns, "-o", "json").stdout
    assert '"status":"deployed"' in status.replace(" ", "")
    kubectl("get", "-n", ns, f"serviceaccount/{name}", f"deployment/{name}", f"service/{name}-metrics",
            "pvc/models", "pvc/triton-models")  # fmt: skip
    kubectl("get", f"clusterrole/{name}", f"clusterrolebinding/{name}", f"clusterkopfpeering/{name}")


def can_i(kubectl: Any, sa: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, sub = resource.partition("/")
    subresource = [f"--subresource={sub}"] if sub else []
    proc = kubectl("auth", "can-i", verb, resource, *subresource, f"--as={sa}", *where, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


def resource_ref(group: str, resource: str) -> str:
    """As `kubectl auth can-i --list` prints it: optimizedmodels.edgeopt.io/status."""
    name, _, sub = resource.partition("/")
    ref = f"{name}.{group}" if group else name
    return f"{ref}/{sub}" if sub else ref


def test_service_account_can_do_everything_the_operator_uses(kubectl: Any, release: tuple[str, str]) -> None:
    name, ns = release
    sa = f"system:serviceaccount:{ns}:{name}"
    for rule in RULES:
        # zalando.org is kopf's legacy peering group: no CRD here, so kubectl cannot resolve it
        # (the --list test below still sees the grant).
        for group in (g for g in rule.api_groups if g != "zalando.org"):
            for res in rule.resources:
                for verb in rule.verbs:
                    assert can_i(kubectl, sa, verb, resource_ref(group, res)), f"{sa} cannot {verb} {res}.{group}"


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "pods"),
        ("delete", "pods"),
        ("update", "optimizedmodels.edgeopt.io"),
        ("delete", "optimizedmodels.edgeopt.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "jobs.batch"),
        ("update", "configmaps"),
        ("delete", "namespaces"),
        ("create", "clusterkopfpeerings.kopf.dev"),
        ("get", "nodes"),
        ("create", "serviceaccounts/token"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "users"),
    ],
)
def test_service_account_cannot_step_outside_its_list(
    kubectl: Any, release: tuple[str, str], verb: str, resource: str
) -> None:
    name, ns = release
    sa = f"system:serviceaccount:{ns}:{name}"
    assert not can_i(kubectl, sa, verb, resource), f"{sa} may {verb} {resource}"
    assert not can_i(kubectl, sa, verb, resource, namespace=ns)


def test_service_account_list_is_exactly_the_rules(kubectl: Any, release: tuple[str, str]) -> None:
    """`kubectl auth can-i --list`: every grant beyond Kubernetes' own defaults comes from RULES."""
    name, ns = release
    sa = f"system:serviceaccount:{ns}:{name}"
    out = kubectl("auth", "can-i", "--list", f"--as={sa}", "-n", ns).stdout.splitlines()
    header = out[0]
    url_col, verbs_col = header.index("Non-Resource URLs"), header.index("Verbs")
    granted: set[tuple[str, str]] = set()
    for line in out[1:]:
        ref = line[:url_col].strip()
        if not ref:
            continue  # non-resource URLs (discovery, healthz) every authenticated user may get
        for verb in line[verbs_col:].strip("[] ").split():
            granted.add((ref, verb))
    expected = {
        (resource_ref(g, r), v) for rule in RULES for g in rule.api_groups for r in rule.resources for v in rule.verbs
    }
    # Granted to every authenticated user by Kubernetes' default ClusterRoles.
    defaults = {ref for ref, _ in granted if ref.startswith(("selfsubject", "tokenreviews"))}
    extra = {(ref, v) for ref, v in granted if ref not in defaults} - expected
    assert not extra, f"{sa} has grants beyond permissions.RULES: {sorted(extra)}"
    assert ("secrets", "get") not in granted
    assert not any(ref == "*" or v == "*" for ref, v in granted)
    missing = {(ref, v) for ref, v in expected if "zalando" not in ref} - granted
    assert not missing, f"auth can-i --list lacks {sorted(missing)}"


