"""The conversion Job and ConfigMap, as data: what the cluster will run."""

from __future__ import annotations

from typing import Any

import yaml

from edgeopt.operator import resources
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import parse_manifest

UID = "5f0c8a2e-3c1d-4b8e-9a57-0d1f2e3c4b5a"


def manifest(**spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {
            "uri": "pvc://models/add",
            "format": "Checkpoint",
            "graph": "add.meta",
            "checkpoint": "add",
            "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1]}],
            "outputs": ["y"],
        },
        "tensorrt": {"enabled": False},
        "target": {"repository": "pvc://triton-models", "modelName": "add"},
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": "add", "namespace": "ml"},
        "spec": spec,
    }


def build(doc: dict[str, Any], settings: OperatorSettings | None = None) -> dict[str, Any]:
    model = parse_manifest(doc)
    name = resources.job_name("add", 3, UID)
    return resources.conversion_job(
        model, settings or OperatorSettings(), name=name, generation=3, uid=UID, configmap=name
    )


def test_job_name_is_deterministic_and_bounded() -> None:
    a = resources.job_name("add", 3, UID)
    assert a == resources.job_name("add", 3, UID)
    assert a.startswith("add-g3-") and len(a) == len("add-g3-") + 6
    assert resources.job_name("add", 4, UID) != a
    assert resources.job_name("add", 3, UID.replace("5", "6")) != a
    long = resources.job_name("m" * 80 + ".v2", 12345, UID)
    assert len(long) <= 63 and long.endswith(f"-g12345-{a[-6:]}")
    assert "." not in resources.job_name("a.b", 1, UID)


def test_job_runs_the_converter_on_the_mounted_manifest() -> None:
    job = build(manifest())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["namespace"] == "ml"
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "edgeopt"
    assert labels["edgeopt.io/model"] == "add" and labels["edgeopt.io/generation"] == "3"
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"]["edgeopt.io/job"] == job["metadata"]["name"]
    (c,) = pod["containers"]
    assert c["command"] == ["edgeopt", "convert", "-f", "/etc/edgeopt/model.yaml"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "EDGEOPT_PVC_ROOT", "value": "/mnt/edgeopt/pvc"} in c["env"]
    assert pod["restartPolicy"] == "Never"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/edgeopt"]["readOnly"] is True
    assert mounts["/mnt/edgeopt/pvc/models"]["readOnly"] is True
    # Only the model's own directory of the repository claim, read-write; never the whole claim.
    assert "/mnt/edgeopt/pvc/triton-models" not in mounts
    own = mounts["/mnt/edgeopt/pvc/triton-models/add"]
    assert own["subPath"] == "add" and own["readOnly"] is False
    assert {"name": "EDGEOPT_OWNER_UID", "value": UID} in c["env"]
    vols = {v["name"]: v for v in pod["volumes"]}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in vols.values() if "persistentVolumeClaim" in v}
    assert claims == {"models", "triton-models"}
    assert vols["manifest"]["configMap"]["name"] == job["metadata"]["name"]
    assert "emptyDir" in vols["tmp"] and mounts["/tmp"]


def test_locked_down_security_context() -> None:
    pod = build(manifest())["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True


def test_defaults_come_from_settings() -> None:
    job = build(manifest())
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert pod["containers"][0]["image"] == OperatorSettings().converter_image
    assert "nodeSelector" not in pod and "tolerations" not in pod and "runtimeClassName" not in pod
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    disruption, rule = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and 3 in rule["onExitCodes"]["values"]
    # An evicted Pod (drain, node pressure) is retried without counting towards backoffLimit; first, as
    # the job controller applies the first matching rule and an evicted converter exits 137, not 2-7.
    assert disruption == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    # The full resource name travels as an annotation: the label is cut at 63 characters.
    assert job["metadata"]["annotations"]["edgeopt.io/resource-name"] == job["metadata"]["labels"]["edgeopt.io/model"]
    assert job["spec"]["template"]["metadata"]["annotations"]["edgeopt.io/resource-name"] == "add"

    s = OperatorSettings(
        converter_resources={},
        converter_node_selector={"gpu": "orin"},
        converter_tolerations=({"key": "gpu", "operator": "Exists"},),
        converter_runtime_class="nvidia",
        job_backoff_limit=0,
        job_active_deadline_seconds=60,
        job_ttl_seconds=5,
        converter_image="local/conv:dev",
    )
    job = build(manifest(), s)
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {}
    assert pod["containers"][0]["image"] == "local/conv:dev"
    assert pod["nodeSelector"] == {"gpu": "orin"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["runtimeClassName"] == "nvidia"
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 60)
    assert job["spec"]["ttlSecondsAfterFinished"] == 5


def test_spec_converter_wins_over_settings() -> None:
    conv = {
        "image": "mine:1",
        "resources": {"limits": {"cpu": "2"}},
        "nodeSelector": {"a": "b"},
        "tolerations": [{"key": "t", "operator": "Exists"}],
        "runtimeClassName": "kata",
        "activeDeadlineSeconds": 99,
        "backoffLimit": 1,
        "ttlSecondsAfterFinished": 0,
    }
    job = build(manifest(converter=conv), OperatorSettings(converter_node_selector={"x": "y"}))
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert (c["image"], c["resources"]) == ("mine:1", {"limits": {"cpu": "2"}})
    assert pod["nodeSelector"] == {"a": "b"} and pod["runtimeClassName"] == "kata"
    assert pod["tolerations"] == [{"key": "t", "operator": "Exists"}]
    assert (job["spec"]["activeDeadlineSeconds"], job["spec"]["backoffLimit"]) == (99, 1)
    assert job["spec"]["ttlSecondsAfterFinished"] == 0


def test_one_mount_per_claim_writable_if_any_use_writes() -> None:
    doc = manifest()
    doc["spec"]["source"]["uri"] = "pvc://shared/src"
    doc["spec"]["target"]["repository"] = "pvc://shared/repo"
    pod = build(doc)["spec"]["template"]["spec"]
    pvcs = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert len(pvcs) == 1 and pvcs[0]["persistentVolumeClaim"]["readOnly"] is False
    doc["spec"]["source"]["uri"] = "file:///models/add"
    pod = build(doc)["spec"]["template"]["spec"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v] == [
        "shared"
    ]


def test_configmap_carries_a_manifest_the_converter_accepts() -> None:
    doc = manifest()
    model = parse_manifest(doc)
    cm = resources.manifest_configmap(model, doc["spec"], name="add-g3-abcdef", generation=3, uid=UID)
    assert cm["metadata"]["name"] == "add-g3-abcdef"
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "edgeopt"
    again = parse_manifest(yaml.safe_load(cm["data"]["model.yaml"]))
    assert again == model


def test_cleanup_job_removes_only_this_models_folder() -> None:
    doc = manifest()
    doc["spec"]["target"]["repository"] = "pvc://triton-models/edge"
    job = resources.cleanup_job(parse_manifest(doc), OperatorSettings(), uid=UID)
    assert job is not None
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == [
        *resources.REMOVE_COMMAND,
        *("--namespace", "ml", "--name", "add", "--uid", UID),
        "/mnt/edgeopt/pvc/triton-models/edge/add",
    ]
    (mount,) = c["volumeMounts"]
    assert (mount["mountPath"], mount["subPath"]) == ("/mnt/edgeopt/pvc/triton-models/edge", "edge")
    assert c["image"] == OperatorSettings().converter_image, "the operator's image, never the spec's"
    assert c["resources"] == {}, "removing files needs no GPU"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["metadata"]["labels"]["edgeopt.io/purpose"] == "cleanup"
    assert "ownerReferences" not in job["metadata"], "it must outlive the resource being deleted"
    doc["spec"]["target"]["repository"] = "file:///srv/models"
    assert resources.cleanup_job(parse_manifest(doc), OperatorSettings(), uid=UID) is None


def test_served_version_travels_to_the_publisher_so_pruning_spares_it() -> None:
    model = parse_manifest(manifest())
    name = resources.job_name("add", 3, UID)

    def env_of(job: dict[str, Any]) -> dict[str, str]:
        (c,) = job["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value", "") for e in c["env"]}

    first = resources.conversion_job(model, OperatorSettings(), name=name, generation=1, uid=UID, configmap=name)
    assert "EDGEOPT_SERVING_VERSIONS" not in env_of(first)
    later = resources.conversion_job(
        model, OperatorSettings(), name=name, generation=3, uid=UID, configmap=name, serving_versions=[4, 2]
    )
    assert env_of(later)["EDGEOPT_SERVING_VERSIONS"] == "2,4"
    assert "EDGEOPT_KEPT_VERSIONS" not in env_of(later)
    kept = resources.conversion_job(
        model, OperatorSettings(), name=name, generation=3, uid=UID, configmap=name, kept_versions=[3, 1, 3]
    )
    assert env_of(kept)["EDGEOPT_KEPT_VERSIONS"] == "1,3"


def test_repository_mount_is_the_models_subpath_nested_under_a_read_only_source_on_the_same_claim() -> None:
    doc = manifest()
    doc["spec"]["source"]["uri"] = "pvc://shared/sources/add"
    doc["spec"]["target"]["repository"] = "pvc://shared/repo/"
    doc["spec"]["target"]["modelName"] = "add-v2"
    job = build(doc)
    (c,) = job["spec"]["template"]["spec"]["containers"]
    claim_mounts = [m for m in c["volumeMounts"] if m["mountPath"].startswith("/mnt/edgeopt/pvc/")]
    assert claim_mounts == [
        {"name": claim_mounts[0]["name"], "mountPath": "/mnt/edgeopt/pvc/shared", "readOnly": True},
        {
            "name": claim_mounts[0]["name"],
            "mountPath": "/mnt/edgeopt/pvc/shared/repo/add-v2",
            "subPath": "repo/add-v2",
            "readOnly": False,
        },
    ]
    (vol,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert vol["persistentVolumeClaim"] == {"claimName": "shared", "readOnly": False}


def test_a_file_repository_needs_no_claim_mount() -> None:
    doc = manifest()
    doc["spec"]["target"]["repository"] = "file:///srv/models"
    (c,) = build(doc)["spec"]["template"]["spec"]["containers"]
    assert not [m for m in c["volumeMounts"] if "triton" in m["mountPath"] or m.get("subPath")]
    assert resources.model_subpath(parse_manifest(doc)) is None


def test_a_cpu_only_conversion_asks_for_no_gpu_by_default() -> None:
    """device CPU with TensorRT off (the CPU edge path) must not sit Unschedulable waiting for a GPU."""
    settings = OperatorSettings()
    assert "nvidia.com/gpu" in settings.converter_resources["limits"]

    def gpu_limit(doc: dict[str, Any]) -> Any:
        (c,) = build(doc, settings)["spec"]["template"]["spec"]["containers"]
        return c["resources"].get("limits", {}).get("nvidia.com/gpu")

    doc = manifest()
    doc["spec"]["target"].update(backend="onnxruntime", device="CPU")
    doc["spec"]["tensorrt"] = {"enabled": False}
    assert gpu_limit(doc) is None
    assert settings.converter_resources["limits"]["nvidia.com/gpu"] == 1, "the settings are not changed"
    doc["spec"]["target"]["device"] = "GPU"
    assert gpu_limit(doc) == 1
    doc["spec"]["target"]["device"] = "CPU"
    doc["spec"]["converter"] = {"resources": {"limits": {"nvidia.com/gpu": 1}}}
    assert gpu_limit(doc) == 1, "what the spec asks for explicitly stays"
