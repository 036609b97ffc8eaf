"""Spec rules for the seed workflow: constants, XLA, transform names; scalar feeds; starter manifests."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import yaml

from edgeopt.artifact import TensorInfo
from edgeopt.converter import feeds, validate
from edgeopt.errors import InputError, SpecError, ValidationError
from edgeopt.spec import TRANSFORMS, parse_manifest
from tests.unit.test_spec import BASE


def manifest(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for key, value in spec.items():
        doc["spec"].setdefault(key, {}).update(value)
    return doc


def test_constants_accept_scalars_and_small_lists() -> None:
    model = parse_manifest(manifest(source={"constants": {"keep_prob": 1.0, "phase_train": False, "m": [1, 2]}}))
    assert model.spec.source.constants == {"keep_prob": 1.0, "phase_train": False, "m": [1, 2]}


@pytest.mark.parametrize(
    "constants,message",
    [
        ({"keep_prob": {"a": 1}}, "spec.source.constants.keep_prob: must be a number"),
        ({"keep_prob": []}, "non-empty list"),
        ({"x": 1.0}, "also in spec.source.inputs"),
        ({"big": list(range(2000))}, "at most 1024 elements"),
        ({"bad name!": 1}, "is not a TensorFlow node name"),
    ],
)
def test_bad_constants_name_the_field(constants: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_manifest(manifest(source={"constants": constants}))


def test_constants_need_a_graph_format() -> None:
    doc = manifest(source={"format": "SavedModel", "constants": {"keep_prob": 1.0}})
    with pytest.raises(SpecError, match="needs format Checkpoint or FrozenGraph"):
        parse_manifest(doc)


def test_xla_and_tensorrt_are_alternatives() -> None:
    assert parse_manifest(manifest(xla={"jit": True})).spec.xla.jit is True
    with pytest.raises(SpecError, match="spec.xla.jit: xla.jit and tensorrt.enabled are alternatives"):
        parse_manifest(manifest(xla={"jit": True}, tensorrt={"enabled": True}))


def test_guide_transform_names_and_aliases_are_accepted() -> None:
    names = [t for t in TRANSFORMS if t != "quantize_nodes"]
    assert parse_manifest(manifest(optimize={"transforms": names})).spec.optimize.transforms == names
    for alias in ("remove_identity", "remove_check_numerics", "remove_nodes"):
        assert alias in TRANSFORMS


def test_quantize_nodes_points_to_int8() -> None:
    with pytest.raises(SpecError, match=r"transforms\[1\]: quantize_nodes .*obsolete.*precision: INT8"):
        parse_manifest(manifest(optimize={"transforms": ["fold_constants", "quantize_nodes"]}))


def test_scalar_validation_compares_rank_0_outputs() -> None:
    ref = {"y": np.asarray(np.float32(6.0))}
    assert validate.compare(ref, {"y": np.asarray(np.float32(6.0))}, rtol=1e-3, atol=1e-4)["maxAbsError"] == 0.0
    with pytest.raises(ValidationError, match="beyond tolerance"):
        validate.compare(ref, {"y": np.asarray(np.float32(7.0))}, rtol=1e-3, atol=1e-4)


def test_scalar_feeds_are_one_sample() -> None:
    inputs = [TensorInfo("x", "FP32", [])]
    arrays = feeds.random_inputs(inputs, batch=8)
    assert isinstance(arrays["x"], np.ndarray) and arrays["x"].shape == ()
    assert feeds.batch_size(arrays) == 1 and feeds.first_sample(arrays)["x"].shape == ()
    assert feeds.take_samples(arrays, 4)["x"].shape == ()
    assert feeds.check_arrays({"x": np.float32(1.0)}, inputs, what="t")["x"].shape == ()
    with pytest.raises(InputError, match=r"has shape \[\] but input x has shape \[-1\]"):
        feeds.check_arrays({"x": np.float32(1.0)}, [TensorInfo("x", "FP32", [-1])], what="t")


def test_starter_manifest_quotes_outputs_for_kubectl() -> None:
    from edgeopt.converter.manifest import render, starter

    info = {
        "path": "/models/guide/my_graph.pb",
        "format": "Checkpoint",
        "checkpoint": "test_model",
        "placeholders": [
            {"name": "x", "dtype": "FP32", "shape": [], "op": "Placeholder"},
            {"name": "keep_prob", "dtype": "FP32", "shape": None, "op": "Placeholder"},
            {"name": "labels", "dtype": "FP32", "shape": [-1, 2], "op": "Placeholder"},
        ],
        "likelyOutputs": [{"name": "y", "needs": ["keep_prob", "x"]}, {"name": "loss", "needs": ["labels", "x"]}],
    }
    text = render(starter(info))
    assert '- "y"' in text
    doc = yaml.safe_load(text)
    src = doc["spec"]["source"]
    assert src["outputs"] == ["y"] and src["constants"] == {"keep_prob": 1.0}
    assert src["inputs"] == [{"name": "x", "dtype": "FP32", "shape": []}]
    assert parse_manifest(doc).spec.source.checkpoint == "test_model"


def test_scalars_need_the_python_backend() -> None:
    from edgeopt.errors import PublishError
    from edgeopt.triton.config import build_model_config
    from tests.unit.test_triton_config import artifact
    from tests.unit.test_triton_config import manifest as config_manifest

    scalar = artifact(inputs=[TensorInfo("x", "FP32", [])], outputs=[TensorInfo("y", "FP32", [])])
    cfg = build_model_config(scalar, parse_manifest(config_manifest(maxBatchSize=0)))
    assert [t.dims for t in (*cfg.inputs, *cfg.outputs)] == [(1,), (1,)]
    with pytest.raises(PublishError, match="scalars .*backend: python"):
        build_model_config(scalar, parse_manifest(config_manifest(maxBatchSize=0, backend="tensorflow")))
