"""Allow-lists: a tenant may choose only the images, tolerations, runtime classes and Tritons an admin allowed."""

from __future__ import annotations

from typing import Any

import pytest

from edgeopt.operator import tenancy
from edgeopt.operator.settings import OperatorSettings, SettingsError
from edgeopt.spec import OptimizedModel, parse_manifest

DEFAULT = OperatorSettings(triton_url="http://triton.edgeopt.svc:8000")


def model(converter: dict[str, Any] | None = None, serving: dict[str, Any] | None = None) -> OptimizedModel:
    spec: dict[str, Any] = {
        "source": {"uri": "pvc://models/add", "format": "SavedModel"},
        "tensorrt": {"enabled": False},
        "target": {"repository": "pvc://triton-models"},
    }
    if converter:
        spec["converter"] = converter
    if serving:
        spec["serving"] = serving
    return parse_manifest(
        {
            "apiVersion": "edgeopt.io/v1alpha1",
            "kind": "OptimizedModel",
            "metadata": {"name": "add", "namespace": "ml"},
            "spec": spec,
        }
    )


def test_the_operators_own_defaults_are_always_allowed() -> None:
    assert tenancy.violations(model(), DEFAULT) == []
    own = model({"image": DEFAULT.converter_image}, {"tritonURL": "http://triton.edgeopt.svc:8000/"})
    assert tenancy.violations(own, DEFAULT) == []


@pytest.mark.parametrize(
    ("converter", "serving", "setting"),
    [
        ({"image": "evil.example/miner:latest"}, None, "EDGEOPT_ALLOWED_CONVERTER_IMAGES"),
        (
            {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
            None,
            "EDGEOPT_ALLOWED_TOLERATIONS",
        ),
        ({"runtimeClassName": "privileged"}, None, "EDGEOPT_ALLOWED_RUNTIME_CLASSES"),
        (None, {"tritonURL": "http://169.254.169.254/latest/meta-data"}, "EDGEOPT_ALLOWED_TRITON_URLS"),
    ],
    ids=["image", "toleration", "runtimeClass", "tritonURL"],
)
def test_outside_the_list_is_refused_naming_the_setting(
    converter: dict[str, Any] | None, serving: dict[str, Any] | None, setting: str
) -> None:
    (problem,) = tenancy.violations(model(converter, serving), DEFAULT)
    assert setting in problem and "cluster admin" in problem
    with pytest.raises(tenancy.NotAllowedError) as err:
        tenancy.check(model(converter, serving), DEFAULT)
    assert err.value.reason == "NotAllowed"


def test_every_violation_is_named_at_once() -> None:
    bad = model({"image": "x/y:1", "runtimeClassName": "kata"}, {"tritonURL": "http://10.0.0.1:8000"})
    fields = [problem.split(" ", 1)[0] for problem in tenancy.violations(bad, DEFAULT)]
    assert fields == ["spec.converter.image", "spec.converter.runtimeClassName", "spec.serving.tritonURL"]


def test_admin_lists_widen_what_is_allowed() -> None:
    settings = OperatorSettings.from_env(
        {
            "EDGEOPT_ALLOWED_CONVERTER_IMAGES": "registry.corp/edgeopt/*, other.io/conv:2",
            "EDGEOPT_ALLOWED_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]',
            "EDGEOPT_ALLOWED_RUNTIME_CLASSES": "nvidia",
            "EDGEOPT_ALLOWED_TRITON_URLS": "http://triton.a.svc:8000,https://triton.b.svc",
        }
    )
    ok = model(
        {
            "image": "registry.corp/edgeopt/converter:0.2",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "runtimeClassName": "nvidia",
        },
        {"tritonURL": "https://triton.b.svc/"},
    )
    assert tenancy.violations(ok, settings) == []
    assert tenancy.violations(model({"image": "other.io/conv:2"}), settings) == []
    # A prefix is a prefix, not a substring; an exact entry is exact.
    for image in ("evil.io/registry.corp/edgeopt/x", "other.io/conv:20"):
        (problem,) = tenancy.violations(model({"image": image}), settings)
        assert problem.startswith(f"spec.converter.image {image!r} is not an allowed converter image"), problem
    # A toleration with another effect is another toleration.
    tol = {"key": "nvidia.com/gpu", "operator": "Exists"}
    (problem,) = tenancy.violations(model({"tolerations": [tol]}), settings)
    assert problem.startswith(f"spec.converter.tolerations[0] {tol} is not an allowed toleration"), problem


def test_toleration_defaults_compare_by_meaning() -> None:
    assert tenancy.toleration_allowed({"key": "a", "value": "b"}, [{"key": "a", "operator": "Equal", "value": "b"}])
    assert not tenancy.toleration_allowed({"key": "a", "operator": "Exists"}, [{"key": "a", "value": "b"}])


def test_defaults_of_each_list() -> None:
    s = OperatorSettings()
    assert s.converter_images() == (s.converter_image,)
    assert s.triton_urls() == () and s.runtime_classes() == () and s.tolerations_allowed() == ()
    assert s.smoke_input_max_bytes == 64 * 1024 * 1024
    assert OperatorSettings(converter_runtime_class="nvidia").runtime_classes() == ("nvidia",)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("EDGEOPT_ALLOWED_CONVERTER_IMAGES", "*", "bare '*'"),
        ("EDGEOPT_ALLOWED_TRITON_URLS", "triton:8000", "http://"),
        ("EDGEOPT_ALLOWED_RUNTIME_CLASSES", "Not_A_Name", "RuntimeClass"),
        ("EDGEOPT_ALLOWED_TOLERATIONS", '{"key": "a"}', "JSON list"),
        ("EDGEOPT_SMOKE_INPUT_MAX_BYTES", "0", ">= 1"),
    ],
)
def test_bad_allow_lists_fail_at_start_naming_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        OperatorSettings.from_env({name: value})
    assert name in str(err.value) and fragment in str(err.value)


def om(ns: str, name: str, uid: str, model_name: str, published: str | None) -> dict[str, Any]:
    conds = [{"type": "Published", "status": published}] if published else []
    return {
        "metadata": {"namespace": ns, "name": name, "uid": uid},
        "status": {"modelName": model_name, "conditions": conds},
    }


def test_unload_is_refused_while_another_resource_has_the_name_published() -> None:
    owner = om("team-a", "mine", "u1", "mobilenet", "True")
    refused = om("team-b", "theirs", "u2", "mobilenet", "False")  # OwnedByAnotherModel: the name, not the model
    assert tenancy.other_publisher([owner, refused], refused, "mobilenet") == "team-a/mine"
    assert tenancy.other_publisher([owner, refused], owner, "mobilenet") is None, "the owner unloads its own"
    assert tenancy.other_publisher([owner, om("x", "y", "u3", "other", "True")], refused, "other") == "x/y"
    assert tenancy.other_publisher([owner], om("c", "d", "u4", "resnet", "True"), "resnet") is None


def published(
    ns: str, name: str, uid: str, model_name: str, repo: str = "pvc://triton-models", url: str | None = None
) -> dict[str, Any]:
    obj = om(ns, name, uid, model_name, "True")
    obj["spec"] = {"target": {"repository": repo}, **({"serving": {"tritonURL": url}} if url else {})}
    return obj


def test_a_name_published_in_the_same_repository_or_triton_is_taken_before_any_job() -> None:
    me = model()  # namespace ml, modelName add (the metadata name), repository pvc://triton-models
    body = {"metadata": {"namespace": "ml", "name": "add", "uid": "me"}}
    assert tenancy.name_taken([published("ml", "older", "u1", "add")], body, me, None) == "ml/older"
    # Another namespace's claim of the same name is another directory, unless both load into one Triton.
    assert tenancy.name_taken([published("other", "x", "u1", "add")], body, me, None) is None
    shared = "http://triton.edgeopt.svc:8000"
    assert tenancy.name_taken([published("other", "x", "u1", "add")], body, me, shared) == "other/x"
    assert (
        tenancy.name_taken(
            [published("other", "x", "u1", "add", url=shared + "/")], body, model(serving={"tritonURL": shared}), None
        )
        == "other/x"
    )
    # Not published (refused, failed), another name, another repository, or myself: free.
    unpublished = om("ml", "older", "u1", "add", "False")
    unpublished["spec"] = {"target": {"repository": "pvc://triton-models"}}
    assert tenancy.name_taken([unpublished], body, me, None) is None
    assert tenancy.name_taken([published("ml", "older", "u1", "resnet")], body, me, None) is None
    assert tenancy.name_taken([published("ml", "older", "u1", "add", repo="pvc://other")], body, me, None) is None
    assert tenancy.name_taken([published("ml", "add", "me", "add")], body, me, None) is None


def test_the_publishers_index_keeps_what_the_name_checks_read() -> None:
    """The index replaces a LIST of every OptimizedModel: its entries must decide exactly as the bodies do."""
    me = model()
    body = {"metadata": {"namespace": "ml", "name": "add", "uid": "me"}}
    shared = "http://triton.edgeopt.svc:8000"
    bodies = [
        published("ml", "older", "u1", "add"),
        published("other", "x", "u2", "add", url=shared),
        published("ml", "z", "u3", "add", repo="pvc://other"),
    ]
    entries = [tenancy.publisher_entry(b)["add"] for b in bodies]
    for url in (None, shared):
        for picked in ([0], [1], [2], [0, 1, 2]):
            assert tenancy.name_taken([entries[i] for i in picked], body, me, url) == tenancy.name_taken(
                [bodies[i] for i in picked], body, me, url
            )
    assert tenancy.other_publisher(entries, body, "add") == tenancy.other_publisher(bodies, body, "add")
    assert tenancy.publisher_entry(om("ml", "older", "u1", "add", "False")) == {}  # refused or failed: no entry
    assert tenancy.publisher_entry({"metadata": {}}) == {}


def test_file_uris_and_sample_counts_over_the_caps_are_not_allowed_in_a_cluster() -> None:
    """Issue 10: a Job mounts claims only; file:// would read the converter container. Caps are the admin's."""
    from edgeopt.limits import Limits
    from edgeopt.operator.settings import OperatorSettings
    from edgeopt.operator.tenancy import violations
    from edgeopt.spec import parse_manifest

    doc = {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": "m", "namespace": "t"},
        "spec": {
            "source": {"uri": "file:///var/run/secrets", "format": "SavedModel"},
            "target": {"repository": "pvc://triton-models"},
            "tensorrt": {"enabled": False},
            "validation": {"samples": 50},
        },
    }
    found = violations(parse_manifest(doc), OperatorSettings(limits=Limits(validation_samples=10)))
    assert any("spec.source.uri 'file:///var/run/secrets'" in f and "pvc://CLAIM/PATH" in f for f in found)
    assert any("EDGEOPT_LIMIT_VALIDATION_SAMPLES" in f for f in found)
    assert not any("target.repository" in f for f in found)
    doc["spec"]["source"]["uri"] = "pvc://models/m"
    doc["spec"]["validation"]["samples"] = 10
    assert violations(parse_manifest(doc), OperatorSettings(limits=Limits(validation_samples=10))) == []
