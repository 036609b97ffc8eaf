"""config.pbtxt generation: pure, no TensorFlow, no Triton (the real parser runs in tests/triton)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeopt.artifact import Artifact, TensorInfo
from edgeopt.errors import PublishError
from edgeopt.spec import parse_manifest
from edgeopt.triton.config import build_model_config, render_config


def manifest(**target: object) -> dict:
    tgt = {"repository": "file:///tmp/repo", "modelName": "m", **target}
    return {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": "m"},
        "spec": {
            "source": {"uri": "file:///tmp/src", "format": "SavedModel"},
            "target": tgt,
            "tensorrt": {"enabled": False},
        },
    }


def artifact(**kw: object) -> Artifact:
    base = dict(
        savedmodel_dir=Path("/nonexistent"),
        signature_key="serving_default",
        inputs=[TensorInfo("images", "FP32", [-1, 8, 8, 3])],
        outputs=[TensorInfo("logits", "FP32", [-1, 10])],
    )
    base.update(kw)
    return Artifact(**base)  # type: ignore[arg-type]


def test_python_backend_batched_config_drops_batch_dim() -> None:
    cfg = build_model_config(artifact(), parse_manifest(manifest(maxBatchSize=4)))
    text = cfg.render()
    assert 'backend: "python"' in text and "platform" not in text
    assert "max_batch_size: 4" in text
    assert "dims: [ 8, 8, 3 ]" in text and "dims: [ 10 ]" in text
    assert "data_type: TYPE_FP32" in text
    assert "kind: KIND_CPU" in text
    assert "version_policy: { latest: { num_versions: 3 } }" in text
    assert 'parameters { key: "signature_key" value: { string_value: "serving_default" } }' in text
    assert "dynamic_batching" not in text
    # warmup at batch 1 and at the max batch, zero data, every input
    assert 'name: "zeros_batch_1"' in text and 'name: "zeros_batch_4"' in text
    assert text.count("zero_data: true") == 2


def test_tensorflow_backend_uses_savedmodel_platform_and_gpu_instances() -> None:
    m = parse_manifest(manifest(backend="tensorflow", versionsToKeep=2))
    text = render_config(build_model_config(artifact(gpu=True), m))
    assert 'platform: "tensorflow_savedmodel"' in text and "backend:" not in text
    assert "kind: KIND_GPU" in text
    assert "num_versions: 2" in text
    assert "signature_key" not in text  # python-backend parameters only
    assert "execution_accelerators" not in text  # TensorRT disabled in the spec


def test_online_tftrt_only_when_not_applied_offline_and_fp32_fp16() -> None:
    doc = manifest(backend="tensorflow")
    doc["spec"]["tensorrt"] = {"enabled": True, "precision": "FP16", "maxWorkspaceSizeBytes": 1 << 28}
    m = parse_manifest(doc)
    text = build_model_config(artifact(gpu=True), m).render()
    assert 'name: "tensorrt"' in text
    assert 'parameters { key: "precision_mode" value: "FP16" }' in text
    assert f'parameters {{ key: "max_workspace_size_bytes" value: "{1 << 28}" }}' in text
    assert 'parameters { key: "minimum_segment_size" value: "3" }' in text
    assert 'parameters { key: "max_cached_engines" value: "1" }' in text
    assert text.count("optimization {") == 1 and text.count("gpu_execution_accelerator") == 1
    applied = build_model_config(artifact(gpu=True, trt_applied=True, precision="FP16"), m).render()
    assert "execution_accelerators" not in applied
    doc["spec"]["tensorrt"] = {"enabled": True, "precision": "INT8", "calibration": {"synthetic": True}}
    assert "execution_accelerators" not in build_model_config(artifact(), parse_manifest(doc)).render()
    doc["spec"]["tensorrt"] = {"enabled": True, "precision": "FP32"}
    doc["spec"]["target"]["backend"] = "python"
    assert "execution_accelerators" not in build_model_config(artifact(), parse_manifest(doc)).render()


def test_dynamic_batching_block() -> None:
    m = parse_manifest(
        manifest(maxBatchSize=8, dynamicBatching={"preferredBatchSizes": [4, 8], "maxQueueDelayMicroseconds": 500})
    )
    text = build_model_config(artifact(), m).render()
    assert "dynamic_batching {\n  preferred_batch_size: [ 4, 8 ]\n  max_queue_delay_microseconds: 500\n}" in text
    empty = build_model_config(artifact(), parse_manifest(manifest(dynamicBatching={}))).render()
    assert "dynamic_batching {\n  max_queue_delay_microseconds: 0\n}" in empty


def test_no_batching_keeps_full_shape() -> None:
    cfg = build_model_config(artifact(), parse_manifest(manifest(maxBatchSize=0)))
    assert cfg.max_batch_size == 0
    assert cfg.inputs[0].dims == (-1, 8, 8, 3)
    assert not cfg.warmup  # a -1 dim that is not a batch dim: warmup would have to guess


def test_fixed_batch_or_scalar_signature_falls_back_to_no_batching() -> None:
    fixed = artifact(inputs=[TensorInfo("x", "FP32", [1, 4])], outputs=[TensorInfo("y", "FP32", [1, 4])])
    cfg = build_model_config(fixed, parse_manifest(manifest(maxBatchSize=8)))
    assert cfg.max_batch_size == 0 and cfg.inputs[0].dims == (1, 4) and cfg.warmup
    scalar = artifact(inputs=[TensorInfo("x", "FP32", [])], outputs=[TensorInfo("y", "FP32", [])])
    cfg = build_model_config(scalar, parse_manifest(manifest()))
    assert cfg.max_batch_size == 0
    text = cfg.render()
    assert "dims: [ 1 ]" in text and "reshape" not in text  # Triton rejects empty reshapes without batching


def test_variable_inner_dims_skip_warmup() -> None:
    a = artifact(inputs=[TensorInfo("x", "FP32", [-1, -1, 3])], outputs=[TensorInfo("y", "FP32", [-1, 3])])
    cfg = build_model_config(a, parse_manifest(manifest()))
    assert cfg.max_batch_size == 8 and cfg.inputs[0].dims == (-1, 3)
    assert "model_warmup" not in cfg.render()


def test_dtypes_and_names_are_quoted() -> None:
    a = artifact(
        inputs=[TensorInfo('we"ird', "INT64", [-1, 2]), TensorInfo("flag", "BOOL", [-1, 1])],
        outputs=[TensorInfo("s", "STRING", [-1, 1])],
    )
    text = build_model_config(a, parse_manifest(manifest())).render()
    assert 'name: "we\\"ird"' in text
    assert "TYPE_INT64" in text and "TYPE_BOOL" in text and "TYPE_STRING" in text


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"inputs": []}, "no inputs"),
        ({"outputs": [TensorInfo("images", "FP32", [-1, 1])]}, "unique"),
        ({"inputs": [TensorInfo("x", "COMPLEX64", [-1])]}, "no Triton equivalent"),
        ({"inputs": [TensorInfo("x", "FP32", [-1, 0])]}, "neither positive nor -1"),
    ],
)
def test_bad_signatures_are_publish_errors(kw: dict, message: str) -> None:
    with pytest.raises(PublishError, match=message):
        build_model_config(artifact(**kw), parse_manifest(manifest()))


def test_specific_versions_and_interface_comparison() -> None:
    import dataclasses

    from edgeopt.triton.config import same_interface

    cfg = build_model_config(artifact(), parse_manifest(manifest(maxBatchSize=4)))
    both = dataclasses.replace(cfg, versions=(3, 1, 3)).render()
    assert "version_policy: { specific: { versions: [ 1, 3 ] } }" in both and "latest" not in both
    one = dataclasses.replace(cfg, versions=(4,)).render()
    assert same_interface(both, one), "only the versions differ"
    for changed in (
        build_model_config(artifact(inputs=[TensorInfo("images", "FP16", [-1, 8, 8, 3])]), parse_manifest(manifest())),
        build_model_config(artifact(), parse_manifest(manifest(maxBatchSize=4, backend="tensorflow"))),
        build_model_config(artifact(), parse_manifest(manifest(maxBatchSize=2))),
    ):
        assert not same_interface(both, changed.render())
