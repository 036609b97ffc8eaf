"""The Helm chart, rendered by the real helm binary and checked as data.

No cluster here (see test_chart_k8s.py for that): these pin down what a
reviewer would check by eye — RBAC equals the operator's own list of verbs,
the pods are locked down, every setting reaches the operator in a form its
settings parser accepts, and the CRD is the repository's CRD.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from edgeopt.limits import Limits
from edgeopt.operator.permissions import KUEUE_RULES, RULES
from edgeopt.operator.settings import OperatorSettings
from tests.ship import chart

ROOT = chart.ROOT
CRD_SOURCE = ROOT / "crds" / "optimizedmodels.edgeopt.io.yaml"
CRD_COPY = chart.CHART / "files" / "optimizedmodels.edgeopt.io.yaml"


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


EXPECTED = {(g, r, v) for rule in RULES for g in rule.api_groups for r in rule.resources for v in rule.verbs}
KUEUE = {(g, r, v) for rule in KUEUE_RULES for g in rule.api_groups for r in rule.resources for v in rule.verbs}


# --------------------------------------------------------------------------- lint and sources


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["triton.enabled=true", "persistence.modelRepository.create=true", "persistence.modelSource.create=true"],
        ["watchNamespaces={vision,speech}", "operator.replicaCount=3"],
        ["operator.enabled=false", "crds.keep=false"],
    ],
)
def test_helm_lint_passes(sets: list[str]) -> None:
    args = [arg for s in sets for arg in ("--set", s)]
    proc = subprocess.run(
        [chart.helm(), "lint", "--strict", str(chart.CHART), "--kube-version", chart.KUBE_VERSION, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_crd_in_chart_is_the_repository_crd() -> None:
    assert CRD_COPY.read_bytes() == CRD_SOURCE.read_bytes(), (
        "charts/edgeopt/files/optimizedmodels.edgeopt.io.yaml must be a copy of crds/; "
        "run: cp crds/optimizedmodels.edgeopt.io.yaml charts/edgeopt/files/"
    )


def test_deploy_manifests_are_current() -> None:
    for path, text in chart.deploy_manifests().items():
        assert (
            path.exists() and path.read_text() == text
        ), f"{path.relative_to(ROOT)} is stale; run: .venv/bin/python -m tests.ship.chart --write"


# --------------------------------------------------------------------------- CRDs


def test_crd_template_renders_the_source_schema_and_keeps_it() -> None:
    rendered = one(chart.render(), "CustomResourceDefinition")
    source = yaml.safe_load(CRD_SOURCE.read_text())
    assert rendered["spec"] == source["spec"]
    assert rendered["metadata"]["name"] == source["metadata"]["name"]
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert source["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()


def test_crd_can_be_left_out_or_not_kept() -> None:
    assert not by_kind(chart.render("--set", "crds.enabled=false"), "CustomResourceDefinition")
    crd = one(chart.render("--set", "crds.keep=false"), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


def test_kopf_peering_crds_and_object() -> None:
    crds = [d for d in yaml.safe_load_all((chart.CHART / "crds" / "kopf-peering.yaml").read_text()) if d]
    kinds = {c["spec"]["names"]["kind"]: c for c in crds}
    assert set(kinds) == {"ClusterKopfPeering", "KopfPeering"}
    assert {c["spec"]["group"] for c in crds} == {"kopf.dev"}  # what kopf 1.x looks for first
    docs = chart.render()
    peering = one(docs, "ClusterKopfPeering")
    env = container_env(one(docs, "Deployment"))
    assert env["EDGEOPT_PEERING_NAME"] == peering["metadata"]["name"]
    namespaced = chart.render("--set", "watchNamespaces={a,b}")
    assert {d["metadata"]["namespace"] for d in by_kind(namespaced, "KopfPeering")} == {"a", "b"}
    assert not by_kind(namespaced, "ClusterKopfPeering")


# --------------------------------------------------------------------------- RBAC


def test_cluster_role_grants_exactly_the_operators_verbs() -> None:
    docs = chart.render()
    role = one(docs, "ClusterRole")
    assert triples(role["rules"]) == EXPECTED
    binding = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "edgeopt"}]
    assert not by_kind(docs, "Role")


def test_watch_namespaces_moves_namespaced_rules_into_roles() -> None:
    docs = chart.render("--set", "watchNamespaces={vision,speech}")
    cluster = triples(one(docs, "ClusterRole")["rules"])
    roles = by_kind(docs, "Role")
    assert {r["metadata"]["namespace"] for r in roles} == {"vision", "speech"}
    assert {b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")} == {"vision", "speech"}
    for role in roles:
        assert cluster | triples(role["rules"]) == EXPECTED
    # only cluster-scoped resources stay cluster-wide
    assert {r for _, r, _ in cluster} == {"customresourcedefinitions", "namespaces", "clusterkopfpeerings"}
    env = container_env(one(docs, "Deployment"))
    assert env["EDGEOPT_NAMESPACES"] == "vision,speech"


def test_kueue_adds_read_only_workloads_and_nothing_else() -> None:
    """kueue.enabled grants exactly KUEUE_RULES on top (list Workloads), in the Roles when namespaced."""
    assert KUEUE and all(v in ("get", "list", "watch") for _, _, v in KUEUE)
    assert triples(one(chart.render("--set", "kueue.enabled=true"), "ClusterRole")["rules"]) == EXPECTED | KUEUE
    docs = chart.render("--set", "kueue.enabled=true", "--set", "watchNamespaces={a}")
    (role,) = by_kind(docs, "Role")
    assert triples(one(docs, "ClusterRole")["rules"]) | triples(role["rules"]) == EXPECTED | KUEUE
    assert triples(role["rules"]) >= KUEUE


@pytest.mark.parametrize("sets", [[], ["--set", "watchNamespaces={a}"], ["--set", "kueue.enabled=true"]])
def test_rbac_has_no_wildcards_and_no_secrets(sets: list[str]) -> None:
    for doc in chart.render(*sets):
        if doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], f"{doc['kind']} {rule}"
                assert "secrets" not in rule["resources"]
                assert not rule.get("nonResourceURLs")


# --------------------------------------------------------------------------- the operator Deployment


def container_env(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"] if "value" in e}


def test_operator_env_is_what_the_settings_parser_accepts() -> None:
    docs = chart.render(
        "--set",
        "converter.tolerations[0].key=nvidia.com/gpu",
        "--set",
        "converter.tolerations[0].operator=Exists",
        "--set",
        "converter.nodeSelector.nvidia\\.com/gpu\\.product=NVIDIA-L4",
        "--set",
        "converter.runtimeClassName=nvidia",
        "--set",
        "operator.tritonURL=http://triton.x.svc:8000",
    )
    env = container_env(one(docs, "Deployment"))
    fields = {f"EDGEOPT_{name.upper()}" for name in OperatorSettings.__dataclass_fields__} | set(Limits().as_env())
    unknown = {k for k in env if k.startswith("EDGEOPT_")} - fields
    assert not unknown, f"the chart sets variables the operator does not read: {unknown}"
    settings = OperatorSettings.from_env(env)  # raises SettingsError on anything malformed
    assert settings.converter_resources == {
        "requests": {"cpu": "1", "memory": "4Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": 1},
    }
    assert settings.converter_node_selector == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert settings.converter_tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists"},)
    assert settings.converter_runtime_class == "nvidia"
    assert settings.converter_image == "ghcr.io/edgeopt/edgeopt-converter:0.1.0"
    assert settings.triton_url == "http://triton.x.svc:8000"
    assert settings.peering_name == "edgeopt" and settings.priority == 100
    assert settings.max_concurrent_conversions == 1
    assert settings.converter_run_as_user == 10001


def test_admin_policy_settings_reach_every_conversion_job() -> None:
    """converter.allowedOps and converter.limits: chart → operator env → settings → the Job's env, and nothing else."""
    from edgeopt.operator import resources
    from edgeopt.spec import parse_manifest

    docs = chart.render(
        "--set",
        "converter.allowedOps={ReadFile,MatchingFiles}",
        "--set",
        "converter.limits.graphBytes=1000",
        "--set",
        "converter.limits.validationSamples=16",
    )
    env = container_env(one(docs, "Deployment"))
    assert env["EDGEOPT_CONVERTER_ALLOWED_OPS"] == "ReadFile,MatchingFiles"
    assert env["EDGEOPT_LIMIT_GRAPH_BYTES"] == "1000" and env["EDGEOPT_LIMIT_VALIDATION_SAMPLES"] == "16"
    settings = OperatorSettings.from_env(env)
    assert settings.converter_allowed_ops == ("ReadFile", "MatchingFiles")
    assert settings.limits.graph_bytes == 1000 and settings.limits.validation_samples == 16
    model = parse_manifest(yaml.safe_load((ROOT / "examples" / "add-checkpoint-cpu.yaml").read_text()))
    job = resources.conversion_job(model, settings, name="add-g1-abcdef", generation=1, uid="u", configmap="c")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    job_env = {e["name"]: e.get("value") for e in container["env"]}
    assert job_env["EDGEOPT_CONVERTER_ALLOWED_OPS"] == "ReadFile,MatchingFiles"
    assert job_env["EDGEOPT_LIMIT_GRAPH_BYTES"] == "1000" and job_env["EDGEOPT_LIMIT_FOLD_BYTES"] == str(64 << 20)
    default_env = {
        e["name"]
        for e in resources.conversion_job(
            model, OperatorSettings(), name="add-g1-abcdef", generation=1, uid="u", configmap="c"
        )["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "EDGEOPT_CONVERTER_ALLOWED_OPS" not in default_env, "nothing is allowed unless an admin says so"
    with pytest.raises(AssertionError, match="limits"):
        chart.render("--set", "converter.limits.everything=1")


def test_operator_pod_is_locked_down() -> None:
    dep = one(chart.render(), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "command" not in c, "one replica must run the image's own entrypoint"
    assert c["image"] == "ghcr.io/edgeopt/edgeopt-operator:0.1.0"
    # the liveness probe hits the port the operator is told to serve it on
    port = {p["name"]: p["containerPort"] for p in c["ports"]}[c["livenessProbe"]["httpGet"]["port"]]
    assert str(port) == container_env(dep)["EDGEOPT_LIVENESS_PORT"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_standby_replicas_get_distinct_priorities() -> None:
    dep = one(chart.render("--set", "operator.replicaCount=2", "--set", "operator.extraArgs={--x}"), "Deployment")
    assert dep["spec"]["replicas"] == 2
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "EDGEOPT_PRIORITY" not in container_env(dep)
    script, argv0, *rest = c["args"]
    assert rest == ["--x"]
    pod_id = next(e for e in c["env"] if e["name"] == "POD_ID")
    assert pod_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # run the very script for two pod names: priorities differ and the entrypoint is exec'd
    outputs = set()
    for pod in ("edgeopt-5d8f9c7b6-abcde", "edgeopt-5d8f9c7b6-fghij"):
        probe = script.replace("exec edgeopt operator", "echo $EDGEOPT_PRIORITY edgeopt operator")
        out = subprocess.run(
            [*c["command"], probe, argv0, *rest],
            env={"POD_ID": pod, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out[1:] == ["edgeopt", "operator", "--x"]
        assert int(out[0]) >= 100
        outputs.add(out[0])
    assert len(outputs) == 2


def test_escape_hatches_reach_the_pod() -> None:
    dep = one(
        chart.render(
            "--set",
            "operator.extraArgs={--standalone}",
            "--set",
            "operator.extraEnv[0].name=HTTPS_PROXY",
            "--set",
            "operator.extraEnv[0].value=http://p:3128",
            "--set",
            "operator.extraVolumes[0].name=ca",
            "--set",
            "operator.extraVolumes[0].configMap.name=corp-ca",
            "--set",
            "operator.extraVolumeMounts[0].name=ca",
            "--set",
            "operator.extraVolumeMounts[0].mountPath=/ca",
        ),
        "Deployment",
    )
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["--standalone"]
    assert container_env(dep)["HTTPS_PROXY"] == "http://p:3128"
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in pod["volumes"]
    assert {"name": "ca", "mountPath": "/ca"} in c["volumeMounts"]


def test_operator_can_be_left_out() -> None:
    docs = chart.render("--set", "operator.enabled=false")
    assert not by_kind(docs, "Deployment")
    for kind in ("ClusterRole", "ServiceAccount", "CustomResourceDefinition", "ClusterKopfPeering"):
        assert by_kind(docs, kind), kind


# --------------------------------------------------------------------------- Triton and claims


def test_triton_runs_in_explicit_mode_on_the_repository_claim() -> None:
    docs = chart.render(
        "--set",
        "triton.enabled=true",
        "--set",
        "persistence.modelRepository.create=true",
        "--set",
        "persistence.modelSource.create=true",
    )
    triton = one(docs, "Deployment", "-triton")
    pod = triton["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert "--model-control-mode=explicit" in c["args"]
    assert "--model-repository=/models" in c["args"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"triton-models"}
    # Triton only reads: the converter Jobs write, each into its own model's directory.
    (repo,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert repo["persistentVolumeClaim"]["readOnly"] is True
    assert all(m["readOnly"] for m in c["volumeMounts"] if m["name"] == repo["name"])
    assert {p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")} == {"triton-models", "models"}
    svc = one(docs, "Service", "-triton")
    env = container_env(one(docs, "Deployment", "edgeopt"))
    assert env["EDGEOPT_TRITON_URL"] == f"http://{svc['metadata']['name']}.edgeopt.svc:8000"
    # the example specs reference the claims by these names
    example = yaml.safe_load((ROOT / "examples" / "mobilenet-v2-fp16.yaml").read_text())
    assert example["spec"]["source"]["uri"].startswith("pvc://models/")
    assert example["spec"]["target"]["repository"] == "pvc://triton-models"


@pytest.mark.parametrize("bind", [False, True])
def test_triton_binds_its_pod_ip_from_the_downward_api_only_when_asked(bind: bool) -> None:
    docs = chart.render("--set", "triton.enabled=true", "--set", f"triton.bindPodIP={str(bind).lower()}")
    (c,) = one(docs, "Deployment", "-triton")["spec"]["template"]["spec"]["containers"]
    addresses = [a for a in c["args"] if "-address=" in a]
    env = {e["name"]: e for e in c.get("env") or []}
    if not bind:  # Triton's default: every address
        assert addresses == [] and "POD_IP" not in env
        return
    assert addresses == ["--http-address=$(POD_IP)", "--grpc-address=$(POD_IP)", "--metrics-address=$(POD_IP)"]
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_default_triton_is_the_dockerfiles_triton_image_at_the_app_version() -> None:
    """The default backend (python) publishes a model.py that imports TensorFlow or onnxruntime: stock NGC
    images have neither, so the default Triton is the image that adds them, released with the chart."""
    from edgeopt.spec import Target

    assert Target.__dataclass_fields__["backend"].default == "python"
    app_version = yaml.safe_load((chart.CHART / "Chart.yaml").read_text())["appVersion"]
    (c,) = one(chart.render("--set", "triton.enabled=true"), "Deployment", "-triton")["spec"]["template"]["spec"][
        "containers"
    ]
    assert c["image"] == f"ghcr.io/edgeopt/edgeopt-triton:{app_version}"
    assert c["command"] == ["tritonserver"]
    pinned = chart.render(
        "--set",
        "triton.enabled=true",
        "--set",
        "triton.image.tag=9.9.9",
        "--set",
        "triton.image.digest=sha256:" + "ab" * 32,
    )
    (c,) = one(pinned, "Deployment", "-triton")["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "ghcr.io/edgeopt/edgeopt-triton@sha256:" + "ab" * 32, "a digest wins, as for the operator"
    stock = chart.render(
        "--set",
        "triton.enabled=true",
        "--set",
        "triton.image.repository=nvcr.io/nvidia/tritonserver",
        "--set",
        "triton.image.tag=25.02-tf2-python-py3",
    )
    (c,) = one(stock, "Deployment", "-triton")["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "nvcr.io/nvidia/tritonserver:25.02-tf2-python-py3"


def test_default_images_are_the_dockerfiles_targets_and_bases() -> None:
    """values.yaml names each image as the Dockerfile's header tags it, and Chart.yaml's base annotations are the
    Dockerfile's pinned bases: one source each, so bumping a base or renaming an image cannot leave the chart behind."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    tags = dict(re.findall(r"^#\s+docker build --target (\S+)\s+-t (\S+) \.$", dockerfile, re.M))
    values = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    for section, target in (("operator", "operator"), ("converter", "converter"), ("triton", "triton")):
        repository = values[section]["image"]["repository"]
        assert repository == f"ghcr.io/edgeopt/{tags[target]}", f"{section}.image: {repository} vs target {target}"
        assert "tag" not in values[section]["image"], f"{section}.image.tag must default to the appVersion"
    args = dict(re.findall(r"^ARG (\w+_BASE)=(\S+)$", dockerfile, re.M))
    annotations = yaml.safe_load((chart.CHART / "Chart.yaml").read_text())["annotations"]
    assert annotations["edgeopt.io/converter-base"] == args["TENSORFLOW_BASE"]
    assert annotations["edgeopt.io/triton-base"] == args["TRITON_BASE"]


def test_helm_test_hook_checks_the_endpoints() -> None:
    docs = chart.render("--set", "triton.enabled=true")
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    urls = pod["spec"]["containers"][0]["args"][1:]
    assert any(u.endswith("/healthz") for u in urls) and any(u.endswith("/v2/health/ready") for u in urls)
    assert pod["spec"]["automountServiceAccountToken"] is False


# --------------------------------------------------------------------------- values


#: Values that are passed through as Kubernetes objects: their inner keys are Kubernetes' own.
PASSTHROUGH = ("resources", "podSecurityContext", "securityContext")


def test_every_value_is_commented() -> None:
    lines = (chart.CHART / "values.yaml").read_text().splitlines()
    inside: int | None = None  # indentation of the passthrough key we are in
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        if inside is not None and indent > inside:
            continue
        inside = indent if m.group(2) in PASSTHROUGH else None
        prev = lines[i - 1].strip() if i else ""
        commented = prev.startswith("#") or "#" in line.split(":", 1)[1]
        assert commented, f"values.yaml:{i + 1}: {line.strip()} has no comment"


def test_schema_rejects_bad_values() -> None:
    for bad in (
        "operator.replicaCount=-1",
        "operator.typo=1",
        "converter.job.backoffLimit=-2",
        "watchNamespaces={Not_A_Namespace}",
        "triton.service.httpPort=70000",
    ):
        with pytest.raises(AssertionError, match="values don't meet the specifications|schema"):
            chart.render("--set", bad)


def test_examples_are_valid_specs() -> None:
    from edgeopt.spec import load_manifest

    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert len(examples) >= 3
    for path in examples:
        load_manifest(path)


def test_chart_and_operator_agree_on_the_default_converter_image() -> None:
    """The admission policy allows the chart's image; an operator started without the chart must pick the same."""
    from edgeopt.operator.settings import DEFAULT_CONVERTER_IMAGE

    env = container_env(one(chart.render(), "Deployment"))
    assert env["EDGEOPT_CONVERTER_IMAGE"] == DEFAULT_CONVERTER_IMAGE


def test_tenancy_values_reach_the_operator_and_the_admission_policy() -> None:
    docs = chart.render(
        "--set",
        "tenancy.allowedConverterImages={registry.corp/edgeopt/*,other.io/conv:2}",
        "--set-json",
        'tenancy.allowedTolerations=[{"key":"gpu","operator":"Exists"}]',
        "--set",
        "tenancy.allowedRuntimeClasses={nvidia}",
        "--set",
        "tenancy.allowedTritonURLs={http://triton.a.svc:8000}",
        "--set",
        "operator.smokeInputMaxBytes=1048576",
    )
    settings = OperatorSettings.from_env(container_env(one(docs, "Deployment")))
    assert settings.converter_images() == (
        "ghcr.io/edgeopt/edgeopt-converter:0.1.0",
        "registry.corp/edgeopt/*",
        "other.io/conv:2",
    )
    assert settings.allowed_tolerations == ({"key": "gpu", "operator": "Exists"},)
    assert settings.runtime_classes() == ("nvidia",)
    assert settings.triton_urls() == ("http://triton.a.svc:8000",)
    assert settings.smoke_input_max_bytes == 1048576
    policy = one(docs, "ValidatingAdmissionPolicy")
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert yaml.safe_load(variables["exactImages"]) == ["ghcr.io/edgeopt/edgeopt-converter:0.1.0", "other.io/conv:2"]
    assert yaml.safe_load(variables["imagePrefixes"]) == ["registry.corp/edgeopt/"]
    assert yaml.safe_load(variables["runtimeClasses"]) == ["nvidia"]
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == "request.userInfo.username == 'system:serviceaccount:edgeopt:edgeopt'"
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}


def test_admission_policy_can_be_left_out() -> None:
    docs = chart.render("--set", "admissionPolicy.enabled=false")
    assert not by_kind(docs, "ValidatingAdmissionPolicy") and not by_kind(docs, "ValidatingAdmissionPolicyBinding")
    with pytest.raises(AssertionError, match="schema"):
        chart.render("--set", "tenancy.allowedConverterImages={*}")


def test_every_schema_property_has_a_description() -> None:
    """`helm show values` and editors can explain each key (cert-manager's schema does)."""
    schema = json.loads((chart.CHART / "values.schema.json").read_text())
    undocumented: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, sub in (node.get("properties") or {}).items():
            if not str(sub.get("description") or "").strip():
                undocumented.append(path + key)
            walk(sub, f"{path}{key}.")

    walk(schema, "")
    assert not undocumented, f"values.schema.json properties without a description: {undocumented}"
