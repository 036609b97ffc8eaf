"""The model zoo on both paths: every common architecture converts and answers like Keras itself.

Each case (``zoo_models.CASES``) goes through ``convert_model`` on the TF path
(default backend python: the exported SavedModel; ``.keras`` too where the
case lists it) and the ONNX path (backend onnxruntime on CPU: FP32, and INT8
for the image classifiers).  The converted model runs on inputs the converter
never saw and is compared with the Keras model's own answer: logits equal
within float error, INT8 logits correlated at least 0.99 per sample.

``make test`` runs the quick subset below; ``pytest -m zoo`` runs everything
(see the README for how long).  With ``EDGEOPT_ZOO_TABLE=FILE`` each case
appends one JSON line (case, path, max error, correlation, latencies) there.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tf import zoo_models as Z
from tests.tf.conftest import make_model

pytestmark = pytest.mark.tf

#: (case, path) pairs ``make test`` runs: one per fix this zoo guards, the light models.
QUICK = {
    ("two_heads", "tf"),  # swish/SiLU custom gradients on the SavedModel export; two outputs
    ("bidirectional", "onnx"),  # functional While (LSTM and GRU) kept for tf2onnx
    ("grouped_conv", "onnx"),  # the XLA-marked grouped Conv2D call inlined (ConvNeXt's pattern)
    ("transformer", "onnx"),  # two inputs, a mask
    ("mobilenetv2", "int8"),  # INT8 logits follow FP32
    ("dynamic_hw", "onnx"),
}
#: Float error allowed against Keras, relative to the output's largest magnitude.
FP_RTOL = 1e-4
MIN_INT8_CORRELATION = 0.99
FEED_SAMPLES = 4
CALIBRATION_SAMPLES = 32


def _paths(case: Z.Case) -> list[str]:
    paths = ["tf", *(["keras"] if "keras" in case.formats else []), "onnx"]
    return [*paths, "int8"] if case.image else paths


PARAMS = [
    pytest.param(name, path, id=f"{name}-{path}", marks=pytest.mark.zoo(quick=(name, path) in QUICK))
    for name, case in Z.CASES.items()
    for path in _paths(case)
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Build a case once for all its paths (the parameters come case by case; one is kept at a time)."""
    cache: dict[str, Any] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cache.clear()
            gc.collect()
            model, files = Z.write_case(Z.CASES[name], tmp_path_factory.mktemp(name))
            feeds = Z.sample_inputs(model, FEED_SAMPLES)
            cache[name] = {"model": model, "files": files, "feeds": feeds, "want": Z.keras_outputs(model, feeds)}
        return cache[name]

    return get


def _spec(path: str, model: Any, work: Path) -> dict[str, Any]:
    if path in ("tf", "keras"):
        return {}
    onnx: dict[str, Any] = {
        "target": {"repository": f"file://{work / 'repo'}", "modelName": "zoo", "backend": "onnxruntime"},
        "tensorrt": {"enabled": False},  # no precision: FP32 is the CPU default
    }
    if path == "int8":
        cal = work / "calibration.npz"
        np.savez(cal, **Z.sample_inputs(model, CALIBRATION_SAMPLES, seed=1))
        onnx["tensorrt"].update(precision="INT8", calibration={"uri": f"file://{cal}", "samples": CALIBRATION_SAMPLES})
        # Random weights leave near-ties between logits, so top-1 may flip on a tie: the gate is correlation.
        onnx["validation"] = {"minTop1Agreement": 0.0, "int8Rtol": 1.0, "int8Atol": 1.0}
    return onnx


def _run(artifact: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if artifact.model_format == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(artifact.savedmodel_dir), providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    import tensorflow as tf

    sig = tf.saved_model.load(str(artifact.savedmodel_dir)).signatures["serving_default"]
    return {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in feeds.items()}).items()}


def _correlation(want: np.ndarray, got: np.ndarray) -> float:
    rows = zip(want.reshape(len(want), -1), got.reshape(len(got), -1), strict=True)
    return min(float(np.corrcoef(w, g)[0, 1]) if np.std(g) > 0 else 0.0 for w, g in rows)


def _record(name: str, path: str, artifact: Any, errors: dict[str, Any]) -> None:
    table = os.environ.get("EDGEOPT_ZOO_TABLE")
    if table:
        lat = artifact.report.get("latencyMs") or {}
        row = {"case": name, "path": path, **errors, "latencyMs": [lat.get("before"), lat.get("after")]}
        row["conversionSeconds"] = artifact.report.get("conversionSeconds")
        with open(table, "a") as f:
            f.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("name,path", PARAMS)
def test_zoo(name: str, path: str, built: Any, tmp_path: Path) -> None:
    from edgeopt.converter.pipeline import convert_model

    case = built(name)
    fmt = "keras" if path == "keras" else "savedmodel"
    source = {"uri": f"file://{case['files'][fmt]}", "format": "Keras" if fmt == "keras" else "SavedModel"}
    spec = _spec(path, case["model"], tmp_path)
    artifact = convert_model(make_model("zoo", source, tmp_path / "repo", **spec), tmp_path / "work")
    got, want = _run(artifact, case["feeds"]), case["want"]
    if path == "keras" and len(got) == len(want) == 1:  # a .keras output is named after its layer
        got = {"output_0": next(iter(got.values()))}
    assert sorted(got) == sorted(want)
    errors: dict[str, Any] = {"maxAbsError": 0.0, "correlation": 1.0}
    for key, ref in want.items():
        scale = float(np.abs(ref).max())
        assert np.std(ref) > 1e-3 * scale, f"{name}: output {key} is flat in Keras itself; the case proves nothing"
        errors["maxAbsError"] = max(errors["maxAbsError"], float(np.abs(got[key] - ref).max()))
        errors["correlation"] = min(errors["correlation"], _correlation(ref, got[key]))
        if path != "int8":
            np.testing.assert_allclose(got[key], ref, rtol=FP_RTOL, atol=FP_RTOL * scale, err_msg=f"{name} {key}")
    _record(name, path, artifact, errors)
    if path == "int8":
        assert errors["correlation"] >= MIN_INT8_CORRELATION, errors
        assert artifact.report["validation"]["correlation"]  # the converter's own gate saw the logits
    elif path == "onnx":
        assert artifact.report["tensorrt"]["precision"] == "FP32"  # the CPU default
