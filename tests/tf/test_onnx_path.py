"""Real TensorFlow → tf2onnx → ONNX Runtime on the sample models, FP32 and INT8, and the bad inputs.

INT8 calibrates on a real ``.npz`` (never synthetic data here) and the layout
must follow the target; every bad input fails with a clear error and leaves
nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.errors import ConversionError, SpecError
from tests.fixtures.triton import tree_digest
from tests.tf.conftest import convbn_source, make_model, manifest_dict, write_manifest

pytestmark = pytest.mark.tf

REPO_ROOT = Path(__file__).resolve().parents[2]
CPU = {"backend": "onnxruntime", "device": "CPU"}


def calibration(path: Path, name: str, shape: list[int], n: int = 32, seed: int = 11) -> dict[str, Any]:
    np.savez(path, **{name: np.random.default_rng(seed).random((n, *shape[1:])).astype(np.float32)})
    return {"uri": f"file://{path}", "samples": n}


def onnx_model(name: str, source: dict[str, Any], repo: Path, precision: str, cal: dict[str, Any] | None, **kw: Any):
    target = {"repository": f"file://{repo}", "modelName": name, **CPU, **kw.pop("target", {})}
    trt: dict[str, Any] = {"enabled": False, "precision": precision}
    if cal:
        trt["calibration"] = cal
    return make_model(name, source, repo, target=target, tensorrt=trt, **kw)


def ort_outputs(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


@pytest.mark.parametrize("precision", ["FP32", "INT8"])
def test_convbn_graph(convbn_dir: Path, tmp_path: Path, precision: str) -> None:
    from edgeopt.converter.pipeline import convert_model
    from tests.triton.tf_models import run_frozen_graph

    cal = calibration(tmp_path / "cal.npz", "input", [-1, 16, 16, 3])
    model = onnx_model("convbn", convbn_source(convbn_dir), tmp_path / "repo", precision, cal)
    art = convert_model(model, tmp_path / "work")
    rep = art.report
    assert art.model_format == "onnx" and art.savedmodel_dir.name == "model.onnx"
    assert [(t.name, t.shape) for t in art.inputs] == [("input", [-1, 16, 16, 3])]  # key kept, batch dynamic
    assert [(t.name, t.shape) for t in art.outputs] == [("output", [-1, 4])]
    assert rep["onnx"]["opset"] == 17 and rep["onnx"]["fileBytes"] > 0 and rep["onnx"]["ops"]["total"] > 0
    assert rep["latencyMs"]["beforeRuntime"] == "tensorflow" and rep["latencyMs"]["after"] > 0
    assert rep["validation"]["top1Agreement"]["output"] >= 0.9
    x = np.random.default_rng(3).random((5, 16, 16, 3)).astype(np.float32)
    (want,) = run_frozen_graph(convbn_dir / "convbn_frozen.pb", {"input:0": x}, ["output:0"])
    got = ort_outputs(art.savedmodel_dir, {"input": x})["output"]
    if precision == "FP32":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert "int8" not in rep["onnx"]
    else:
        np.testing.assert_allclose(got, want, atol=0.05)
        int8 = rep["onnx"]["int8"]
        assert int8["layout"]["name"] == "U8S8-QOperator" and int8["layout"]["per_channel"]
        assert int8["calibration"]["source"].startswith("file:") and int8["calibration"]["samples"] == 32
        assert any(op.startswith("QLinear") for op in int8["ops"]["byType"])
        assert rep["tensorrt"]["precision"] == "INT8"


@pytest.mark.parametrize("precision", ["FP32", "INT8"])
def test_keras_bn_dropout_model(keras_dir: Path, tmp_path: Path, precision: str) -> None:
    from edgeopt.converter.pipeline import convert_model
    from tests.triton.tf_models import run_savedmodel

    src = {"uri": f"file://{keras_dir / 'saved_model'}", "format": "SavedModel"}
    cal = calibration(tmp_path / "cal.npz", "image", [-1, 32, 32, 3])
    model = onnx_model(
        "keras", src, tmp_path / "repo", precision, cal, target={"device": "GPU", "backend": "onnxruntime"}
    )
    art = convert_model(model, tmp_path / "work")
    x = np.random.default_rng(4).random((4, 32, 32, 3)).astype(np.float32)
    want = run_savedmodel(keras_dir / "saved_model", {"image": x})
    got = ort_outputs(art.savedmodel_dir, {"image": x})
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(
            got[k], want[k], rtol=1e-4 if precision == "FP32" else 0.2, atol=1e-5 + 0.05 * (precision == "INT8")
        )
    if precision == "INT8":  # GPU without the TensorRT accelerator: the portable S8S8 Q/DQ layout
        assert art.report["onnx"]["int8"]["layout"]["name"] == "S8S8-QDQ"
        ops = art.report["onnx"]["int8"]["ops"]["byType"]
        assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0


@pytest.fixture(scope="module")
def mobilenet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeopt_dev.samples import write_keras_model

    d = tmp_path_factory.mktemp("mnv2")
    write_keras_model(d, "savedmodel", architecture="mobilenetv2", input_size=96)
    return d


@pytest.mark.parametrize("precision", ["FP32", "INT8"])
def test_mobilenet_v2_random_weights(mobilenet_dir: Path, tmp_path: Path, precision: str) -> None:
    from edgeopt.converter.pipeline import convert_model

    src = {"uri": f"file://{mobilenet_dir / 'saved_model'}", "format": "SavedModel"}
    import tensorflow as tf

    sig = tf.saved_model.load(str(mobilenet_dir / "saved_model")).signatures["serving_default"]
    (inp,) = sig.structured_input_signature[1]
    cal = calibration(tmp_path / "cal.npz", inp, [-1, 96, 96, 3], n=16)
    # Random weights give near-uniform softmax scores, so top-1 is noise: the INT8 gate here is elementwise.
    model = onnx_model(
        "mnv2", src, tmp_path / "repo", precision, cal, validation={"samples": 8, "minTop1Agreement": 0.0}
    )
    art = convert_model(model, tmp_path / "work")
    rep = art.report
    assert rep["validation"]["maxAbsError"] < (1e-4 if precision == "FP32" else 0.1)
    assert "top1Agreement" in rep["validation"]
    if precision == "INT8":  # the softmax head stays in float: INT8 would round small probabilities to 0
        assert "Softmax" in {n["op"] for n in rep["onnx"]["int8"]["floatNodes"]}
        assert rep["validation"]["correlation"][next(iter(rep["validation"]["correlation"]))] >= 0.99
    assert rep["ops"]["onnx"]["byType"].get("Conv", 0) + rep["ops"]["onnx"]["byType"].get("QLinearConv", 0) > 30


# --------------------------------------------------------------------------- bad inputs


def _unsupported_op_graph(d: Path) -> dict[str, Any]:
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        s = tf.strings.as_string(x)
        tf.identity(tf.strings.to_hash_bucket_fast(s, 7), name="y")
    tf.io.write_graph(g.as_graph_def(), str(d), "hash.pb", as_text=False)
    return {
        "uri": f"file://{d}",
        "format": "FrozenGraph",
        "graph": "hash.pb",
        "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 2]}],
        "outputs": ["y"],
    }


def test_op_tf2onnx_cannot_convert_is_named_and_nothing_published(tmp_path: Path) -> None:
    from edgeopt.converter.pipeline import convert_model

    repo = tmp_path / "repo"
    model = onnx_model("hash", _unsupported_op_graph(tmp_path), repo, "FP32", None)
    with pytest.raises(ConversionError, match=r"no form for the TensorFlow op\(s\) StringToHashBucketFast.*TF path"):
        convert_model(model, tmp_path / "work")
    assert not repo.exists() and not any((tmp_path / "work").iterdir())


def test_int8_without_calibration_is_a_spec_error(convbn_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="INT8 needs calibration data"):
        onnx_model("convbn", convbn_source(convbn_dir), tmp_path / "repo", "INT8", None)


def test_calibration_shapes_that_do_not_fit(convbn_dir: Path, tmp_path: Path) -> None:
    from edgeopt.converter.pipeline import convert_model
    from edgeopt.errors import InputError

    cal = calibration(tmp_path / "cal.npz", "input", [-1, 16, 16, 1])
    model = onnx_model("convbn", convbn_source(convbn_dir), tmp_path / "repo", "INT8", cal)
    with pytest.raises(InputError, match=r"dimension 3: 1 != 3"):
        convert_model(model, tmp_path / "work")
    assert not (tmp_path / "repo").exists()


def test_backend_tensorrt_without_tensorrt_exits_5(convbn_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip(reason="TensorRT is installed here; the GPU tests cover the plan build")
    except ImportError:
        pass
    repo = tmp_path / "repo"
    doc = manifest_dict(
        "convbn",
        convbn_source(convbn_dir),
        repo,
        target={"repository": f"file://{repo}", "modelName": "convbn", "backend": "tensorrt", "device": "GPU"},
        tensorrt={"enabled": True, "precision": "FP16"},
    )
    manifest = write_manifest(tmp_path / "m.yaml", doc)
    term = tmp_path / "term.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", EDGEOPT_WORKDIR=str(tmp_path / "work"))
    proc = subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", "convert", "-f", str(manifest), "--termination-log", str(term)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env=env,
    )
    assert proc.returncode == 5, proc.stderr
    assert "TensorRT's Python bindings" in proc.stderr
    summary = json.loads(term.read_text())
    assert summary["ok"] is False and summary["reason"] == "TensorRTUnavailable"
    assert tree_digest(repo) == "absent"
    assert not any(p.is_dir() for p in (tmp_path / "work" / "edgeopt-work").glob("*"))


def test_cpu_int8_example_converts_with_the_cli(tmp_path: Path) -> None:
    """examples/convbn-onnx-int8-cpu.yaml as written, through ``edgeopt convert``, into its pvc:// repository."""
    pvc, work = tmp_path / "pvc", tmp_path / "work"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", EDGEOPT_PVC_ROOT=str(pvc), EDGEOPT_WORKDIR=str(work))

    def edgeopt(*args: str, module: str = "edgeopt.cli") -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", module, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=env)

    made = edgeopt("samples", "convbn", "--dir", str(pvc / "models" / "convbn"), module="edgeopt_dev.cli")
    assert made.returncode == 0, made.stderr
    calibration(pvc / "models" / "convbn" / "calibration.npz", "input", [-1, 16, 16, 3], n=64)
    term = tmp_path / "term.json"
    example = REPO_ROOT / "examples" / "convbn-onnx-int8-cpu.yaml"
    proc = edgeopt("convert", "-f", str(example), "--termination-log", str(term))
    assert proc.returncode == 0, proc.stderr
    for stage in ("load", "freeze", "optimize", "onnx", "quantize", "validate", "report", "publish"):
        assert any(f"] {stage}" in ln and "done" in ln for ln in proc.stderr.splitlines()), (stage, proc.stderr)
    summary = json.loads(term.read_text())
    assert summary["ok"] and summary["version"] == 1 and summary["report"]["precision"] == "INT8"
    model_dir = pvc / "triton-models" / "convbn_int8"
    config = (model_dir / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "kind: KIND_CPU" in config and "optimization" not in config
    assert sorted(p.name for p in (model_dir / "1").iterdir() if not p.name.startswith(".")) == [
        "model.onnx",
        "report.json",
    ]
    report = json.loads((model_dir / "1" / "report.json").read_text())
    assert report["onnx"]["int8"]["layout"]["name"] == "U8S8-QOperator"
    assert report["onnx"]["int8"]["method"] == "MinMax"


@pytest.mark.parametrize("device", ["CPU", "GPU"])
def test_fp16_artefact_keeps_fp32_inputs_and_outputs(convbn_dir: Path, tmp_path: Path, device: str) -> None:
    """FP16 is in the graph whoever runs it: the CPU, the CUDA EP, or TensorRT (accelerator on, device GPU)."""
    import onnx

    from edgeopt.converter.pipeline import convert_model
    from edgeopt.triton.config import build_model_config

    model = onnx_model("convbn", convbn_source(convbn_dir), tmp_path / "repo", "FP16", None, target={"device": device})
    model.spec.tensorrt.enabled = device == "GPU"  # GPU: ORT's TensorRT accelerator runs it (TensorRT 11: no flags)
    art = convert_model(model, tmp_path / "work")
    assert [t.dtype for t in (*art.inputs, *art.outputs)] == ["FP32", "FP32"]  # the Triton config is unchanged
    graph = onnx.load(str(art.savedmodel_dir)).graph
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    onnx_report = art.report["onnx"]
    assert onnx_report["precisionBy"] == "onnx" and onnx_report["precision"] == "FP16"
    nodes = onnx_report["fp16"]["nodes"]
    assert nodes["fp16"] > 0 and nodes["cast"] >= 2, nodes  # a Cast at each end: FP32 in, FP32 out
    validation = art.report["validation"]
    assert (validation["rtol"], validation["atol"]) == (0.05, 0.1)  # FP16 tolerances
    assert 0 < validation["maxAbsError"] < 0.1
    # Also gated as a GPU computes it (every FP16 tensor stored in FP16), and the FP32 prefix was fitted to it.
    prefix = onnx_report["fp16"]["fp32Prefix"]
    assert prefix["tried"] and prefix["tried"][0]["computeNodes"] == 0 and prefix["ofComputeNodes"] >= 1
    emulated = validation["gpuEmulation"]
    assert 0 < emulated["maxAbsError"] < 0.1 and emulated["toleranceUse"] <= 1
    if prefix["computeNodes"] == 0:
        assert prefix["tried"][0]["toleranceUse"] <= prefix["headroom"]
    config = build_model_config(art, model).render()
    assert "precision_mode" not in config
    stages = {s["name"]: s for s in art.report["stages"]}
    if device == "GPU" and "TensorrtExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        engines = stages["tensorrt-engines"]  # asked for (buildEngines defaults true), impossible here: says why
        assert engines["status"] == "skipped" and "no TensorRT execution provider" in engines["details"]["reason"]
    if device == "CPU":
        assert "1.5x slower" in onnx_report["note"]
