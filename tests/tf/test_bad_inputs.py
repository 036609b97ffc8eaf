"""Every bad input from issue 2 item 8: one clear paragraph, a non-zero exit, no partial output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeopt.converter.pipeline import convert_model
from edgeopt.errors import EdgeoptError, InputError, SpecError, TensorRTUnavailableError, ValidationError
from edgeopt.spec import parse_manifest
from tests.tf.conftest import add_source, convbn_source, make_model, manifest_dict, write_manifest

pytestmark = pytest.mark.tf

REPO_ROOT = Path(__file__).resolve().parents[2]


def _fails(model: Any, workdir: Path, kind: type[EdgeoptError]) -> str:
    with pytest.raises(kind) as info:
        convert_model(model, workdir)
    message = str(info.value)
    assert "\n" not in message.strip(), "one paragraph"
    assert not any(workdir.iterdir()), f"partial output left in {workdir}: {list(workdir.iterdir())}"
    return message


def test_missing_source_path(tmp_path: Path) -> None:
    model = make_model("add", add_source(tmp_path / "nowhere"), tmp_path / "repo")
    msg = _fails(model, tmp_path / "work", InputError)
    assert "nowhere does not exist" in msg


def test_missing_graph_file_names_what_is_there(add_model_dir: Path, tmp_path: Path) -> None:
    model = make_model("add", add_source(add_model_dir, "other_graph.pb"), tmp_path / "repo")
    msg = _fails(model, tmp_path / "work", InputError)
    assert "other_graph.pb" in msg and "my_graph.pb" in msg


def test_corrupt_graph(add_model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model"
    shutil.copytree(add_model_dir, bad)
    (bad / "my_graph.pb").write_bytes(b"\x0a\xff\xff\x01garbage" * 10)
    model = make_model("add", add_source(bad), tmp_path / "repo")
    msg = _fails(model, tmp_path / "work", InputError)
    assert "is not a readable TensorFlow GraphDef" in msg


@pytest.mark.parametrize("graph", ["my_graph.pb", "test_model.meta"])
def test_corrupt_checkpoint(add_model_dir: Path, tmp_path: Path, graph: str) -> None:
    bad = tmp_path / "model"
    shutil.copytree(add_model_dir, bad)
    (bad / "test_model.index").write_bytes(b"not a checkpoint index")
    model = make_model("add", add_source(bad, graph), tmp_path / "repo")
    msg = _fails(model, tmp_path / "work", InputError)
    assert "checkpoint" in msg and "test_model" in msg


def test_output_node_not_in_graph_names_closest_and_sinks(add_model_dir: Path, tmp_path: Path) -> None:
    source = add_source(add_model_dir)
    source["outputs"] = ["yy"]
    msg = _fails(make_model("add", source, tmp_path / "repo"), tmp_path / "work", InputError)
    assert "'yy' is not in the graph" in msg
    assert "closest names: y" in msg
    assert "sink nodes (likely outputs) are: y" in msg


def test_wrong_input_name(add_model_dir: Path, tmp_path: Path) -> None:
    source = add_source(add_model_dir)
    source["inputs"][0]["name"] = "input"
    msg = _fails(make_model("add", source, tmp_path / "repo"), tmp_path / "work", InputError)
    assert "no node named 'input'" in msg and "placeholders are: x" in msg
    source["inputs"][0]["name"] = "a"  # exists, but it is the variable
    msg = _fails(make_model("add", source, tmp_path / "repo"), tmp_path / "work", InputError)
    assert "is a VarHandleOp, not a Placeholder" in msg


def test_dtype_that_does_not_fit(add_model_dir: Path, tmp_path: Path) -> None:
    source = add_source(add_model_dir)
    source["inputs"][0]["dtype"] = "INT32"
    msg = _fails(make_model("add", source, tmp_path / "repo"), tmp_path / "work", InputError)
    assert "declared dtype INT32 does not fit the model's FP32" in msg


@pytest.mark.parametrize("shape", [[-1, 2], [-1, 1, 1]])
def test_shape_that_does_not_fit(add_model_dir: Path, tmp_path: Path, shape: list[int]) -> None:
    source = add_source(add_model_dir)
    source["inputs"][0]["shape"] = shape
    msg = _fails(make_model("add", source, tmp_path / "repo"), tmp_path / "work", InputError)
    assert f"declared shape {shape}" in msg and "[-1, 1]" in msg


def test_saved_model_wrong_signature_and_input(keras_dir: Path, tmp_path: Path) -> None:
    source: dict[str, Any] = {
        "uri": f"file://{keras_dir / 'saved_model'}",
        "format": "SavedModel",
        "signature": "predict",
    }
    msg = _fails(make_model("k", source, tmp_path / "repo"), tmp_path / "work", InputError)
    assert "no such signature" in msg and "serving_default" in msg
    source = {
        "uri": f"file://{keras_dir / 'saved_model'}",
        "format": "SavedModel",
        "inputs": [{"name": "images", "dtype": "FP32", "shape": [-1, 32, 32, 3]}],
    }
    msg = _fails(make_model("k", source, tmp_path / "repo"), tmp_path / "work", InputError)
    assert "no input named 'images'" in msg and "image" in msg


def test_unknown_transform_and_int8_without_calibration_are_spec_errors(tmp_path: Path) -> None:
    source = add_source(tmp_path)
    with pytest.raises(SpecError, match="unknown transform 'fold_everything'"):
        parse_manifest(manifest_dict("add", source, tmp_path, optimize={"transforms": ["fold_everything"]}))
    with pytest.raises(SpecError, match="INT8 needs calibration data"):
        parse_manifest(manifest_dict("add", source, tmp_path, tensorrt={"enabled": True, "precision": "INT8"}))


def test_validation_mismatch_says_by_how_much(convbn_dir: Path, tmp_path: Path) -> None:
    # Folding batch norms changes float rounding (~1e-8): zero tolerance must catch it.
    model = make_model("convbn", convbn_source(convbn_dir), tmp_path / "repo", validation={"rtol": 0.0, "atol": 0.0})
    msg = _fails(model, tmp_path / "work", ValidationError)
    assert "differs from the original beyond tolerance (rtol=0, atol=0)" in msg
    assert "max abs error" in msg and "off by" in msg


def _has_tensorrt() -> bool:
    from edgeopt.converter.tftrt import tensorrt_version

    return tensorrt_version() is not None


def test_tensorrt_requested_without_tensorrt(add_model_dir: Path, tmp_path: Path) -> None:
    if _has_tensorrt():
        pytest.skip(reason="this TensorFlow has TensorRT; the unavailable path cannot be shown here")
    model = make_model("add", add_source(add_model_dir), tmp_path / "repo", tensorrt={"enabled": True})
    msg = _fails(model, tmp_path / "work", TensorRTUnavailableError)
    assert "not built with TensorRT" in msg and "tensorrt.enabled: false" in msg and "GPU converter image" in msg


def test_tensorrt_probe_agrees_with_tensorflow() -> None:
    from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils

    assert _has_tensorrt() == bool(_pywrap_py_utils.is_tensorrt_enabled())


def test_trt_converter_runtime_error_becomes_one_clear_line(add_model_dir: Path, tmp_path: Path) -> None:
    """Past the preflight, TrtGraphConverterV2's own RuntimeError is translated too."""
    if _has_tensorrt():
        pytest.skip(reason="this TensorFlow has TensorRT")
    from edgeopt.artifact import TensorInfo
    from edgeopt.converter import tftrt
    from edgeopt.spec import TensorRT

    model = make_model("add", add_source(add_model_dir), tmp_path / "repo")
    artifact = convert_model(model, tmp_path / "work")
    with pytest.raises(TensorRTUnavailableError) as info:
        tftrt.convert(artifact.savedmodel_dir, tmp_path / "trt", TensorRT(), [TensorInfo("x", "FP32", [-1, 1])])
    assert "not built with TensorRT" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "has not been built with TensorRT support" in str(info.value.__cause__)
    assert not (tmp_path / "trt").exists()


# --------------------------------------------------------------------------- the real CLI


def _cli(manifest: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    term = tmp_path / "termination-log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", EDGEOPT_WORKDIR=str(tmp_path / "work"))
    proc = subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", "convert", "-f", str(manifest), "--termination-log", str(term), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env=env,
    )
    summary = json.loads(term.read_text()) if term.exists() else {}
    return proc, summary


def _no_partial_output(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "repo").exists()
    work = tmp_path / "work" / "edgeopt-work"
    assert not work.exists() or not any(work.iterdir())


CLI_CASES: dict[str, tuple[Any, ...]] = {
    "missing-source": (lambda d, c: {**add_source(d / "gone")}, {}, 3, "InvalidInput", "does not exist"),
    "bad-output": (lambda d, c: {**add_source(d), "outputs": ["z"]}, {}, 3, "InvalidInput", "closest names"),
    "unknown-transform": (
        lambda d, c: add_source(d),
        {"optimize": {"transforms": ["remove_identity", "quantize"]}},
        2,
        "InvalidSpec",
        "unknown transform 'quantize'",
    ),
    "validation-mismatch": (
        lambda d, c: convbn_source(c),
        {"validation": {"rtol": 0.0, "atol": 0.0}},
        6,
        "ValidationFailed",
        "beyond tolerance",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_input(case: str, add_model_dir: Path, convbn_dir: Path, tmp_path: Path) -> None:
    make_source, spec, code, reason, text = CLI_CASES[case]
    doc = manifest_dict("bad", make_source(add_model_dir, convbn_dir), tmp_path / "repo", **spec)
    proc, summary = _cli(write_manifest(tmp_path / "model.yaml", doc), tmp_path, "--output", str(tmp_path / "out"))
    assert proc.returncode == code, proc.stderr
    last = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgeopt convert: error:")]
    assert last and text in last[-1], proc.stderr
    assert summary["ok"] is False and summary["reason"] == reason and text in summary["message"]
    _no_partial_output(tmp_path)


def test_cli_tensorrt_unavailable_json_log(add_model_dir: Path, tmp_path: Path) -> None:
    if _has_tensorrt():
        pytest.skip(reason="this TensorFlow has TensorRT")
    doc = manifest_dict("add", add_source(add_model_dir), tmp_path / "repo", tensorrt={"enabled": True})
    proc, summary = _cli(write_manifest(tmp_path / "model.yaml", doc), tmp_path, "--log-format", "json")
    assert proc.returncode == 5
    events = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert events[-1]["event"] == "failed" and events[-1]["reason"] == "TensorRTUnavailable"
    assert summary["reason"] == "TensorRTUnavailable" and "tensorrt.enabled: false" in summary["message"]
    _no_partial_output(tmp_path)
