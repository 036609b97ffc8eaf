"""The OptimizedModel spec: parsing, defaults, and errors that name the field path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from edgeopt.errors import SpecError
from edgeopt.spec import (
    DEFAULT_TRANSFORMS,
    PVC_ROOT_ENV,
    ModelSpec,
    load_manifest,
    parse_manifest,
    pvc_claim,
    resolve_uri,
    walk_fields,
)

BASE: dict[str, Any] = {
    "apiVersion": "edgeopt.io/v1alpha1",
    "kind": "OptimizedModel",
    "metadata": {"name": "add", "namespace": "ml"},
    "spec": {
        "source": {
            "uri": "pvc://models/add",
            "format": "Checkpoint",
            "graph": "graph.pbtxt",
            "checkpoint": "model.ckpt",
            "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 1]}],
            "outputs": ["y"],
        },
        "tensorrt": {"enabled": False},
        "target": {"repository": "pvc://triton-models"},
    },
}


def manifest(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes applied; a value of None deletes the key."""
    doc = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


def error_of(doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_manifest(doc)
    return str(info.value)


@pytest.mark.parametrize(
    "backend,device,trt,onnx,want",
    [
        ("python", None, True, False, "FP16"),  # TF-TRT runs the model
        ("python", None, False, False, "FP32"),
        ("tensorflow", "CPU", False, False, "FP32"),
        ("onnxruntime", "CPU", False, False, "FP32"),  # ORT's CPU kernels compute FP16 through casts
        ("onnxruntime", None, False, False, "FP32"),  # no TensorRT accelerator: the device is CPU
        ("onnxruntime", "GPU", False, False, "FP16"),  # CUDA EP
        ("onnxruntime", None, True, False, "FP16"),  # the TensorRT accelerator on GPU
        ("tensorrt", None, False, False, "FP16"),  # a TensorRT plan
        ("python", "CPU", False, True, "FP32"),  # the python backend's ONNX flavour on CPU
        ("openvino", None, False, False, "FP32"),  # OpenVINO's CPU plugin
    ],
)
def test_precision_follows_the_target(backend: str, device: str | None, trt: bool, onnx: bool, want: str) -> None:
    target = {"repository": "pvc://triton-models", "backend": backend, **({"device": device} if device else {})}
    spec = parse_manifest(manifest(spec__target=target, spec__tensorrt={"enabled": trt}, spec__onnx={"enabled": onnx}))
    assert spec.spec.tensorrt.precision == want
    other = "FP32" if want == "FP16" else "FP16"
    explicit = manifest(spec__target=target, spec__tensorrt={"enabled": trt, "precision": other})
    assert parse_manifest(explicit).spec.tensorrt.precision == other  # asked for: kept


def test_defaults_are_applied() -> None:
    model = parse_manifest(manifest())
    spec = model.spec
    assert model.name == "add" and model.namespace == "ml"
    assert model.model_name == "add"
    assert spec.optimize.transforms == DEFAULT_TRANSFORMS
    assert spec.tensorrt.precision == "FP32"  # TF path without TF-TRT: nothing to convert
    assert spec.tensorrt.max_workspace_size_bytes == 1 << 30
    assert spec.validation.rtol == pytest.approx(1e-3)
    assert spec.target.versions_to_keep == 3
    assert spec.target.backend == "python"
    assert spec.target.deletion_policy == "Retain"
    assert spec.source.inputs[0].shape == [-1, 1]


def test_precision_error_names_path_and_choices() -> None:
    msg = error_of(manifest(spec__tensorrt={"precision": "FP8"}))
    assert msg == "spec.tensorrt.precision: 'FP8' is not one of FP32, FP16, INT8"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"spec__tensorrt": {"maxBatchSize": 0}}, "spec.tensorrt.maxBatchSize: must be >= 1, got 0"),
        ({"spec__tensorrt": {"maxWorkspaceSizeBytes": 1024}}, "spec.tensorrt.maxWorkspaceSizeBytes: must be >="),
        ({"spec__target": {"repository": "pvc://r", "modelName": "../x"}}, "spec.target.modelName: '../x'"),
        ({"spec__target": {"repository": "pvc://r", "modelName": "Upper"}}, "spec.target.modelName: 'Upper'"),
        ({"spec__source__format": "Onnx"}, "spec.source.format: 'Onnx' is not one of"),
        ({"spec__source__uri": "s3://bucket/x"}, "spec.source.uri: 's3://bucket/x' does not match"),
        ({"spec__source__uri": "pvc://models/../etc"}, "spec.source.uri: 'pvc://models/../etc' must not contain"),
        ({"spec__source__checkpoint": None}, "spec.source: format Checkpoint needs checkpoint"),
        ({"spec__source__outputs": []}, "needs outputs"),
        ({"spec__optimize": {"transforms": ["fold_constants", "quantize"]}}, "spec.optimize.transforms[1]"),
        ({"spec__tensorrt": {"precision": "INT8"}}, "spec.tensorrt.calibration: INT8 needs calibration data"),
        ({"spec__tensorrt": {"enabled": "yes"}}, "spec.tensorrt.enabled: must be true or false"),
        ({"spec__validation": {"rtol": "tight"}}, "spec.validation.rtol: must be a number"),
        ({"spec__source__inputs": [{"name": "x", "shape": [0, 3]}]}, "spec.source.inputs[0].shape"),
        ({"spec__source__inputs": [{"name": "x", "dtype": "FLOAT"}]}, "spec.source.inputs[0].dtype: 'FLOAT'"),
        ({"spec__tensorrt": {"precison": "FP16"}}, "spec.tensorrt.precison: unknown field"),
        ({"spec__target": None}, "spec.target: is required"),
        ({"apiVersion": "edgeopt.io/v1"}, "apiVersion: 'edgeopt.io/v1' is not edgeopt.io/v1alpha1"),
        ({"kind": "Model"}, "kind: 'Model' is not OptimizedModel"),
    ],
)
def test_bad_specs_name_the_field(changes: dict[str, Any], expected: str) -> None:
    assert expected in error_of(manifest(**changes))


def test_int8_accepts_calibration_file_or_explicit_synthetic() -> None:
    file_cal = parse_manifest(
        manifest(spec__tensorrt={"precision": "INT8", "calibration": {"uri": "pvc://models/cal.npz"}})
    )
    assert file_cal.spec.tensorrt.calibration is not None
    assert file_cal.spec.tensorrt.calibration.samples == 64
    synthetic = parse_manifest(manifest(spec__tensorrt={"precision": "INT8", "calibration": {"synthetic": True}}))
    assert synthetic.spec.tensorrt.calibration is not None and synthetic.spec.tensorrt.calibration.synthetic
    # INT8 with TF-TRT off needs nothing
    assert parse_manifest(manifest(spec__tensorrt={"precision": "INT8", "enabled": False}))


def test_model_name_defaults_to_metadata_name_and_must_fit_pattern() -> None:
    msg = error_of(manifest(metadata={"name": "my.model"}))
    assert "spec.target.modelName: defaults to metadata.name 'my.model'" in msg
    ok = parse_manifest(
        manifest(metadata={"name": "my.model"}, spec__target={"repository": "pvc://r", "modelName": "m"})
    )
    assert ok.model_name == "m"


def test_dynamic_batching_sizes_within_max_batch() -> None:
    msg = error_of(
        manifest(
            spec__target={"repository": "pvc://r", "maxBatchSize": 4, "dynamicBatching": {"preferredBatchSizes": [8]}}
        )
    )
    assert "preferredBatchSizes: 8 must be within 1..maxBatchSize (4)" in msg


def test_resolve_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PVC_ROOT_ENV, str(tmp_path))
    assert resolve_uri("pvc://models/add/v1") == tmp_path / "models" / "add" / "v1"
    assert resolve_uri("pvc://triton-models") == tmp_path / "triton-models"
    assert resolve_uri("file:///srv/models") == Path("/srv/models")
    assert pvc_claim("pvc://models/add") == "models" and pvc_claim("file:///x") is None
    for bad in ("file://relative/x", "http://x", "pvc://models/../../etc"):
        with pytest.raises(SpecError):
            resolve_uri(bad)


def test_load_manifest_picks_the_optimizedmodel_document(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace"}) + "---\n" + yaml.safe_dump(BASE))
    assert load_manifest(path).name == "add"
    with pytest.raises(SpecError, match="cannot read the manifest"):
        load_manifest(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("spec: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_manifest(tmp_path / "bad.yaml")


def test_every_field_has_a_yaml_key_and_doc() -> None:
    paths = [p for p, f, _ in walk_fields(ModelSpec)]
    assert "spec.tensorrt.maxBatchSize" in paths and "spec.serving.tritonURL" in paths
    assert len(paths) == len(set(paths))
    undocumented = [p for p, f, _ in walk_fields(ModelSpec) if not f.metadata.get("doc")]
    assert undocumented == []
