"""``edgeopt inspect`` on every format it takes, and its starter manifest converting for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeopt.cli import main
from edgeopt.errors import InputError

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from edgeopt_dev import samples

    root = tmp_path_factory.mktemp("inspect")
    return {
        "guide": samples.write_guide_checkpoint(root / "guide"),
        "add": samples.write_add_checkpoint(root / "add"),
        "seg": samples.write_segmentation_checkpoint(root / "seg"),
        "convbn": samples.write_conv_bn_graph(root / "convbn", checkpoint=False),
        "keras": samples.write_keras_model(root / "keras", "keras", input_size=16),
        "saved": samples.write_keras_model(root / "saved", "savedmodel", input_size=16),
    }


def _inspect(capsys: pytest.CaptureFixture[str], path: Path, *flags: str) -> str:
    capsys.readouterr()
    assert main(["inspect", str(path), *flags]) == 0
    return capsys.readouterr().out


def _json(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, Any]:
    return json.loads(_inspect(capsys, path, "--json"))


@pytest.mark.parametrize("file", ["my_graph.pb", "my_graph.pbtxt", "test_model.meta", "."])
def test_graph_formats_list_ops_placeholders_and_outputs(
    models: dict[str, Any], capsys: pytest.CaptureFixture[str], file: str
) -> None:
    info = _json(capsys, Path(models["add"]["dir"]) / file)
    assert info["format"] == "Checkpoint" and info["checkpoint"] == "test_model"
    assert info["ops"]["byType"]["AddV2"] == 1 and info["ops"]["total"] == sum(info["ops"]["byType"].values())
    assert [(p["name"], p["dtype"], p["shape"]) for p in info["placeholders"]] == [("x", "FP32", [-1, 1])]
    assert info["likelyOutputs"][0]["name"] == "y" and info["likelyOutputs"][0]["shape"] == [-1, 1]


def test_the_table_is_readable(models: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out = _inspect(capsys, Path(models["convbn"]["dir"]) / "convbn_frozen.pb")
    assert "FrozenGraph" in out and "FusedBatchNormV3" in out and "placeholders" in out
    assert "input" in out and "output" in out and "[-1, 16, 16, 3]" in out


def test_a_loss_is_not_the_output_its_logits_are(models: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, Path(models["seg"]["dir"]))
    assert [s["name"] for s in info["sinks"]] == ["cross_entropy_loss"]
    first = info["likelyOutputs"][0]
    assert first["name"] == "Reshape_3" and first["needs"] == ["image_input", "keep_prob"]
    assert {p["name"] for p in info["placeholders"]} == {"image_input", "keep_prob", "correct_label"}


def test_saved_model_and_keras_list_signatures(models: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    saved = _json(capsys, Path(models["saved"]["dir"]) / "saved_model")
    sig = saved["signatures"]["serving_default"]
    assert sig["inputs"][0]["shape"] == [-1, 16, 16, 3] and sig["outputs"][0]["name"] == "output_0"
    keras = _json(capsys, Path(models["keras"]["dir"]) / "model.keras")
    assert keras["format"] == "Keras" and keras["inputs"][0]["name"] == "image"


@pytest.mark.parametrize("kind", ["guide", "seg"])
def test_manifest_quotes_outputs_and_converts(
    models: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    from edgeopt.spec import parse_manifest

    path = Path(models[kind]["dir"]) / models[kind]["graph"]
    text = _inspect(capsys, path, "--manifest")
    expected = {"guide": '- "y"', "seg": '- "Reshape_3"'}[kind]
    assert expected in text
    doc = yaml.safe_load(text)
    doc["spec"]["target"]["repository"] = f"file://{tmp_path / 'repo'}"
    model = parse_manifest(doc)
    assert model.spec.source.outputs == models[kind]["outputs"]
    if kind == "seg":
        assert model.spec.source.constants == {"keep_prob": 1.0}
        assert [t.name for t in model.spec.source.inputs] == ["image_input"]
    from edgeopt.converter.pipeline import convert_model

    artifact = convert_model(model, tmp_path / "work")
    assert artifact.report["validation"]["maxAbsError"] < 1e-5


def test_not_a_model_is_an_input_error(tmp_path: Path) -> None:
    from edgeopt.converter.inspection import inspect_path

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a readable TensorFlow GraphDef"):
        inspect_path(tmp_path / "notes.txt")
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(InputError, match="not a model edgeopt knows"):
        inspect_path(tmp_path / "weights.bin")
    with pytest.raises(InputError, match="does not exist"):
        inspect_path(tmp_path / "missing.pb")
