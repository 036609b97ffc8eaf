"""The chart against the real kube-apiserver (RBAC on): dry-run, install, permissions.

test_chart.py checks the rendering as data; this checks that the API server
agrees: every object and every example passes server-side validation, the
chart installs with helm, and its ServiceAccount can do exactly what
edgeopt/operator/permissions.py lists — in particular not read Secrets.
All of it is the API server's own answer (helm installs without ``--wait``),
so this is the ``apiserver`` tier: no podman, no images, no node agent.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from edgeopt.operator.permissions import RULES
from tests.fixtures.common import wait_for
from tests.fixtures.k8s import wait_established
from tests.ship import chart

pytestmark = pytest.mark.apiserver

ROOT = chart.ROOT


def helm(api_server: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return chart.run_helm(api_server.kubeconfig, *args, check=check)


def split_crds(text: str) -> tuple[str, str]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    return yaml.safe_dump_all(crds), yaml.safe_dump_all(rest)


@pytest.fixture(scope="module")
def crds_installed(kubectl: Any) -> None:
    """The chart's CRDs, applied for real: objects of their kinds can only be dry-run once they exist."""
    crds, _ = split_crds(chart.render_text("--include-crds"))
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=edgeopt-ship-tests", "-f", "-", input=crds)
    names = ("crd/optimizedmodels.edgeopt.io", "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev")
    wait_established(kubectl, *names)


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
def release(api_server: Any, kubectl: Any, crds_installed: None) -> Iterator[tuple[str, str]]:
    """The chart installed with helm into its own namespace (CRDs already present, so not re-owned)."""
    name = f"edgeopt-{uuid.uuid4().hex[:6]}"  # contains the chart name, so it is the full name too
    sets = [
        "crds.enabled=false",
        f"operator.peering.name={name}",
        "persistence.modelRepository.create=true",
        "persistence.modelSource.create=true",
    ]
    helm(
        api_server,
        "install",
        name,
        str(chart.CHART),
        "--namespace",
        name,
        "--create-namespace",
        *[a for s in sets for a in ("--set", s)],
    )
    try:
        yield name, name
    finally:
        helm(api_server, "uninstall", name, "--namespace", name, check=False)
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_helm_install_creates_the_release(api_server: Any, kubectl: Any, release: tuple[str, str]) -> None:
    name, ns = release
    status = helm(api_server, "status", name, "-n", ns, "-o", "json").stdout
    assert '"status":"deployed"' in status.replace(" ", "")
    kubectl(
        "get",
        "-n",
        ns,
        f"serviceaccount/{name}",
        f"deployment/{name}",
        f"service/{name}-metrics",
        "pvc/models",
        "pvc/triton-models",
    )
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


# --------------------------------------------------------------------------- admission policy and NetworkPolicies


def converter_job(namespace: str, image: str) -> dict[str, Any]:
    """A conversion Job exactly as the operator builds it (resources.conversion_job), with the chart's image."""
    from edgeopt.operator import resources
    from edgeopt.operator.settings import OperatorSettings
    from edgeopt.spec import parse_manifest

    doc = {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": "add", "namespace": namespace},
        "spec": {
            "source": {"uri": "pvc://models/add", "format": "SavedModel"},
            "tensorrt": {"enabled": False},
            "target": {"repository": "pvc://triton-models"},
        },
    }
    settings = OperatorSettings(converter_image=image, converter_resources={})
    name = resources.job_name("add", 1, "0f0e")
    return resources.conversion_job(parse_manifest(doc), settings, name=name, generation=1, uid="0f0e", configmap=name)


@pytest.fixture(scope="module")
def as_operator(api_server: Any, kubectl: Any, release: tuple[str, str]) -> Any:
    """The batch API as the operator's ServiceAccount (a TokenRequest token, no admin certificate)."""
    from kubernetes import client

    name, ns = release
    token = kubectl("create", "token", name, "-n", ns, "--duration=10m").stdout.strip()
    cfg = client.Configuration()
    cfg.host = api_server.server
    cfg.ssl_ca_cert = str(api_server.ca_file)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.BatchV1Api(client.ApiClient(cfg))


def chart_converter_image() -> str:
    deployment = next(d for d in yaml.safe_load_all(chart.render_text()) if d and d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    return str(env["EDGEOPT_CONVERTER_IMAGE"])


def dry_run_create(batch: Any, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    """(HTTP status, message) of a server-side dry-run create: admission runs, nothing is stored."""
    from kubernetes.client.exceptions import ApiException

    try:
        batch.create_namespaced_job(namespace, body, dry_run="All")
    except ApiException as exc:
        return int(exc.status), str(exc.body)
    return 201, ""


def _set(path: str, value: Any) -> Any:
    def change(job: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = job
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value

    return change


POD = "spec.template.spec"
CONTAINER = f"{POD}.containers.0"
BREAKING = {
    "another image": (_set(f"{CONTAINER}.image", "docker.io/library/busybox:latest"), "allow-list"),
    "no converter labels": (_set("metadata.labels", {"app": "miner"}), "converter Jobs"),
    "pod template unlabelled": (_set("spec.template.metadata.labels", {"app": "x"}), "converter Jobs"),
    "a serviceAccountName": (_set(f"{POD}.serviceAccountName", "default"), "ServiceAccount token"),
    "token mounted": (_set(f"{POD}.automountServiceAccountToken", True), "ServiceAccount token"),
    # (privileged: this API server runs with --allow-privileged=false and refuses it before admission)
    "privilege escalation": (_set(f"{CONTAINER}.securityContext.allowPrivilegeEscalation", True), "allowPrivilege"),
    "capabilities kept": (_set(f"{CONTAINER}.securityContext.capabilities", {"add": ["SYS_ADMIN"]}), "capabilities"),
    "root": (_set(f"{POD}.securityContext.runAsUser", 0), "runAsNonRoot"),
    "no seccomp": (_set(f"{POD}.securityContext.seccompProfile", None), "seccompProfile"),
    "host network": (_set(f"{POD}.hostNetwork", True), "host's network"),
    "hostPath": (
        lambda job: job["spec"]["template"]["spec"]["volumes"].append({"name": "root", "hostPath": {"path": "/"}}),
        "hostPath",
    ),
    "runtimeClass": (_set(f"{POD}.runtimeClassName", "kata"), "runtimeClassName"),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_admission_policy_refuses_a_job_that_breaks_it_created_with_the_operators_token(
    kubectl: Any, release: tuple[str, str], as_operator: Any, case: str
) -> None:
    _, ns = release
    image = chart_converter_image()
    good = converter_job(ns, image)
    # The policy is live once the API server's informer has it; the operator's own Job always passes.
    assert dry_run_create(as_operator, ns, good) == (201, "")
    change, fragment = BREAKING[case]
    bad = converter_job(ns, image)
    change(bad)

    def refused() -> tuple[int, str] | None:
        status, message = dry_run_create(as_operator, ns, bad)
        return (status, message) if status != 201 else None

    status, message = wait_for(refused, timeout=30, what=f"the admission policy to refuse a Job with {case}")
    assert status == 403, message
    assert "ValidatingAdmissionPolicy" in message and f"{ns}-converter-jobs" in message, message
    assert fragment in message, message


def test_admission_policy_binds_only_the_operator(kubectl: Any, release: tuple[str, str], as_operator: Any) -> None:
    """An admin (or any other controller) is not this policy's business: RBAC governs them."""
    _, ns = release
    bad = converter_job(ns, "docker.io/library/busybox:latest")
    wait_for(lambda: dry_run_create(as_operator, ns, bad)[0] == 403, timeout=30, what="the policy to be live")
    kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(bad))


def test_network_policies_apply_server_side_and_keep_their_selectors(kubectl: Any, namespace: str) -> None:
    rendered = [
        d
        for d in yaml.safe_load_all(chart.render_text("--set", "triton.enabled=true", namespace=namespace))
        if d and d["kind"] == "NetworkPolicy"
    ]
    assert {d["metadata"]["name"] for d in rendered} == {"edgeopt-converter", "edgeopt-operator", "edgeopt-triton"}
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=edgeopt-ship-tests",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump_all(rendered),
    )
    stored = json.loads(kubectl("get", "networkpolicy", "-n", namespace, "-o", "json").stdout)["items"]
    by_name = {p["metadata"]["name"]: p["spec"] for p in stored}
    for doc in rendered:
        spec = by_name[doc["metadata"]["name"]]
        assert spec["podSelector"] == doc["spec"]["podSelector"]
        assert sorted(spec["policyTypes"]) == sorted(doc["spec"]["policyTypes"])
    assert by_name["edgeopt-converter"].get("egress") in (None, []), "no egress rule at all"
