"""The CRD's OpenAPI schema and ``edgeopt/spec.py`` must describe the same resource.

``kubectl apply`` validates against the CRD, ``edgeopt convert -f`` against
spec.py; if they drift, a spec is accepted by one and rejected by the other.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeopt import spec as S

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "optimizedmodels.edgeopt.io.yaml"
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (v,) = crd["spec"]["versions"]
    return v


@pytest.fixture(scope="module")
def spec_schema(version: dict[str, Any]) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def node_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """Follow ``spec.a.b[].c`` through ``properties``/``items``."""
    node = schema
    for part in path.split(".")[1:]:
        many = part.endswith("[]")
        node = node["properties"][part.removesuffix("[]")]
        if many:
            node = node["items"]
    return node


def crd_paths(node: dict[str, Any], prefix: str = "spec") -> set[str]:
    out: set[str] = set()
    for key, child in node.get("properties", {}).items():
        path = f"{prefix}.{key}"
        out.add(path)
        out |= crd_paths(child, path)
        items = child.get("items")
        if isinstance(items, dict) and "properties" in items:
            out |= crd_paths(items, path + "[]")
    return out


def expected_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return {}  # an empty object, so the nested defaults apply
        return value or None
    return None


def test_names_and_scope(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "optimizedmodels.edgeopt.io"
    spec = crd["spec"]
    assert spec["group"] == "edgeopt.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"]) == ("OptimizedModel", "optimizedmodels")
    assert names["shortNames"] == ["om"]
    assert names["categories"] == ["edgeopt"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert f"{spec['group']}/{version['name']}" == S.API_VERSION


def test_printer_columns(version: dict[str, Any]) -> None:
    cols = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(cols) == ["Phase", "Precision", "Version", "Ready", "Reason", "Served", "Age", "Endpoints", "Message"]
    assert cols["Phase"] == ".status.phase"
    assert cols["Version"] == ".status.modelVersion"
    assert cols["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    # Why it waits or fails, at a glance (`kubectl get om`); the full sentence with -o wide.
    assert cols["Reason"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert cols["Message"] == '.status.conditions[?(@.type=="Ready")].message'
    priority = {c["name"]: c.get("priority", 0) for c in version["additionalPrinterColumns"]}
    assert priority["Message"] == 1 and priority["Reason"] == 0
    assert cols["Age"] == ".metadata.creationTimestamp"
    # Ready means served: how many Triton endpoints serve it now, of how many (-o wide).
    assert (cols["Served"], cols["Endpoints"]) == (".status.serving.ready", ".status.serving.endpoints")
    assert priority["Served"] == 0 and priority["Endpoints"] == 1


@pytest.mark.parametrize("path,field,tp", list(S.walk_fields(S.ModelSpec)), ids=lambda v: str(v)[:60])
def test_every_spec_field_is_in_the_crd(spec_schema: dict[str, Any], path: str, field: Any, tp: Any) -> None:
    node = node_at(spec_schema, path)
    meta = field.metadata
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) or origin is dict:
        assert node["type"] == "object", path
    elif origin is list:
        assert node["type"] == "array", path
        (item,) = typing.get_args(tp)
        if item in JSON_TYPES:
            assert node["items"]["type"] == JSON_TYPES[item], path
    else:
        assert node["type"] == JSON_TYPES[tp], path
    assert node.get("enum") == (list(meta["enum"]) if meta.get("enum") else None), path
    assert node.get("minimum") == meta.get("minimum"), path
    assert node.get("maximum") == meta.get("maximum"), path
    assert node.get("pattern") == meta.get("pattern"), path
    assert node.get("default") == expected_default(field), path


def test_every_crd_field_is_in_spec(spec_schema: dict[str, Any]) -> None:
    known = {path for path, _, _ in S.walk_fields(S.ModelSpec)}
    assert crd_paths(spec_schema) - known == set()


def test_required_fields_agree(spec_schema: dict[str, Any]) -> None:
    def required(cls: Any) -> list[str]:
        return [
            S.yaml_key(f)
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]

    assert spec_schema.get("required", []) == required(S.ModelSpec)
    for path, _, tp in S.walk_fields(S.ModelSpec):
        if dataclasses.is_dataclass(tp):
            assert node_at(spec_schema, path).get("required", []) == required(tp), path
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            item = node_at(spec_schema, path)["items"]
            assert item.get("required", []) == required(typing.get_args(tp)[0]), path


def test_transforms_are_an_enum(spec_schema: dict[str, Any]) -> None:
    items = node_at(spec_schema, "spec.optimize.transforms")["items"]
    assert items["enum"] == list(S.TRANSFORMS)


def rules(node: dict[str, Any]) -> dict[str, str]:
    return {v["rule"]: v["message"] for v in node.get("x-kubernetes-validations", [])}


def test_cross_field_rules_are_cel(spec_schema: dict[str, Any]) -> None:
    src = rules(node_at(spec_schema, "spec.source"))
    assert any("'Checkpoint'" in r and "self.checkpoint" in r and "self.outputs" in r for r in src)
    assert any("'FrozenGraph'" in r and "self.graph" in r and "self.inputs" in r for r in src)
    trt = rules(node_at(spec_schema, "spec.tensorrt"))
    assert any("'INT8'" in r and "calibration.uri" in r and "calibration.synthetic" in r for r in trt)
    assert any("INT8 needs calibration data" in m for m in trt.values())
    for path in ("spec.source.uri", "spec.target.repository", "spec.tensorrt.calibration.uri"):
        node = node_at(spec_schema, path)
        assert rules(node), path
        assert node["maxLength"] <= 4096, "CEL cost estimation needs a bounded string"


def test_status_schema(version: dict[str, Any]) -> None:
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Converting", "Publishing", "Ready", "Failed"]
    cond = status["conditions"]["items"]["properties"]
    assert set(cond) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert status["report"]["x-kubernetes-preserve-unknown-fields"] is True
    for key in ("observedGeneration", "jobName", "modelVersion"):
        assert key in status
