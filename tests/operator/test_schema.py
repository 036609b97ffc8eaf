"""``kubectl apply`` rejects what the CRD schema can see, at once, with the schema's message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.support import EXAMPLE, Kubectl, apply, example

pytestmark = pytest.mark.apiserver


@pytest.fixture
def ns(namespace: str, om_crd: None) -> str:
    return namespace


def rejected(kubectl: Kubectl, namespace: str, doc: dict[str, Any]) -> str:
    proc = apply(kubectl, namespace, doc, check=False)
    assert proc.returncode != 0, f"accepted: {doc['spec']}"
    return str(proc.stderr)


def test_the_example_applies_as_written(kubectl: Kubectl, ns: str) -> None:
    """kubectl reads YAML 1.1 (``y`` is a boolean there): the example must survive that parser."""
    proc = kubectl("apply", "--dry-run=server", "-n", ns, "-f", str(EXAMPLE), check=False)
    assert proc.returncode == 0, proc.stderr


def test_defaults_come_from_the_schema(kubectl: Kubectl, ns: str) -> None:
    proc = apply(kubectl, ns, example(), check=True)
    assert "created" in proc.stdout
    import json

    obj = json.loads(kubectl("get", "om", "add", "-n", ns, "-o", "json").stdout)
    spec = obj["spec"]
    # No schema default for the precision: the converter picks it from the target (FP32 on CPU, else FP16).
    assert "precision" not in spec["tensorrt"] and spec["tensorrt"]["maxBatchSize"] == 8
    assert spec["target"]["deletionPolicy"] == "Retain" and spec["validation"]["seed"] == 0
    assert spec["source"]["signature"] == "serving_default"


@pytest.mark.parametrize(
    "spec,message",
    [
        (
            {"tensorrt": {"enabled": True, "precision": "FP8"}},
            'spec.tensorrt.precision: Unsupported value: "FP8": supported values: "FP32", "FP16", "INT8"',
        ),
        (
            {"tensorrt": {"enabled": True, "maxBatchSize": 0}},
            "spec.tensorrt.maxBatchSize in body should be greater than or equal to 1",
        ),
        ({"target": {"modelName": "../x"}}, "spec.target.modelName in body should match '^[a-z0-9][a-z0-9_-]{0,62}$'"),
        (
            {"tensorrt": {"enabled": True, "precision": "INT8"}},
            'spec.tensorrt: Invalid value: "object": INT8 needs calibration data: set calibration.uri',
        ),
        (
            {"tensorrt": {"enabled": True, "maxWorkspaceSizeBytes": 1024}},
            "spec.tensorrt.maxWorkspaceSizeBytes in body should be greater than or equal to 1048576",
        ),
        ({"source": {"checkpoint": None}}, "format Checkpoint needs graph, checkpoint, inputs and outputs"),
        ({"source": {"uri": "s3://bucket/add"}}, "spec.source.uri in body should match"),
        (
            {"source": {"uri": "pvc://models/../etc"}},
            "spec.source.uri: Invalid value: \"string\": must not contain '.' or '..' segments",
        ),
        ({"target": {"backend": "onnx"}}, 'spec.target.backend: Unsupported value: "onnx"'),
    ],
    ids=[
        "fp8",
        "max-batch-0",
        "model-name-dotdot",
        "int8-no-calibration",
        "workspace",
        "checkpoint-missing",
        "uri-scheme",
        "uri-dotdot",
        "backend",
    ],
)
def test_apply_rejects(kubectl: Kubectl, ns: str, spec: dict[str, Any], message: str) -> None:
    doc = example(name="bad")
    for key, value in spec.items():
        section = doc["spec"].setdefault(key, {})
        for k, v in value.items():
            if v is None:
                section.pop(k, None)
            else:
                section[k] = v
    err = rejected(kubectl, ns, doc)
    assert message in err, err


def test_int8_with_synthetic_calibration_is_accepted(kubectl: Kubectl, ns: str) -> None:
    doc = example(name="int8", tensorrt={"enabled": True, "precision": "INT8", "calibration": {"synthetic": True}})
    assert apply(kubectl, ns, doc, check=False).returncode == 0


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("source", "uri", "pvc://models//etc", "spec.source.uri in body should match"),
        ("source", "uri", "pvc://models/add/./x", "spec.source.uri: Invalid value: \"string\": must not contain '.'"),
        ("source", "uri", "file:///", "spec.source.uri in body should match"),
        ("source", "graph", "/etc/passwd", "spec.source.graph in body should match"),
        ("source", "graph", "../other/my_graph.pb", 'spec.source.graph: Invalid value: "string": must not contain'),
        ("source", "checkpoint", "ckpt//test_model", "spec.source.checkpoint in body should match"),
        ("target", "repository", "pvc://triton-models//x", "spec.target.repository in body should match"),
    ],
    ids=["uri-empty-segment", "uri-dot", "uri-root", "graph-absolute", "graph-dotdot", "checkpoint-empty", "repo"],
)
def test_apply_rejects_paths_that_leave_the_model(
    kubectl: Kubectl, ns: str, section: str, key: str, value: str, message: str
) -> None:
    """Issue 10: every path rule spec.py enforces, the API server enforces at apply time too."""
    from edgeopt.errors import SpecError
    from edgeopt.spec import parse_manifest

    doc = example(name="bad")
    doc["spec"][section][key] = value
    with pytest.raises(SpecError):
        parse_manifest(doc)
    err = rejected(kubectl, ns, doc)
    assert message in err, err


def test_apply_rejects_calibration_uri_with_an_empty_segment(kubectl: Kubectl, ns: str) -> None:
    doc = example(name="bad", tensorrt={"enabled": False, "calibration": {"uri": "pvc://models//etc/cal.npz"}})
    err = rejected(kubectl, ns, doc)
    assert "spec.tensorrt.calibration.uri in body should match" in err, err
