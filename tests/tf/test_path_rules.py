"""Paths in a spec never lead a conversion out of its model (issue 10 item 3), through ``convert``.

The rules themselves are unit-tested in tests/unit/test_spec_paths.py and at
``kubectl apply`` time in tests/operator/test_schema.py; here the real
converter meets symlinks that point out of the model and of the claim.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from edgeopt.converter.pipeline import convert_model
from edgeopt.errors import InputError, SpecError
from tests.tf.conftest import add_source, make_model, manifest_dict

pytestmark = pytest.mark.tf


def _refused(model: Any, tmp_path: Path, match: str) -> None:
    with pytest.raises(InputError, match=match):
        convert_model(model, tmp_path / "work")
    assert not any((tmp_path / "work").iterdir())


def test_graph_symlink_out_of_the_model_is_refused(add_model_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(add_model_dir / "my_graph.pb", outside / "real.pb")
    model_dir = tmp_path / "model"
    shutil.copytree(add_model_dir, model_dir)
    (model_dir / "my_graph.pb").unlink()
    (model_dir / "my_graph.pb").symlink_to(outside / "real.pb")
    _refused(make_model("add", add_source(model_dir), tmp_path / "repo"), tmp_path, "outside .*own directory")


def test_checkpoint_file_symlink_out_of_the_model_is_refused(add_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(add_model_dir, model_dir)
    data = next(model_dir.glob("test_model.data-*"))
    moved = tmp_path / data.name
    data.rename(moved)
    data.symlink_to(moved)
    _refused(make_model("add", add_source(model_dir), tmp_path / "repo"), tmp_path, "checkpoint file")


def test_claim_symlink_out_of_the_claim_is_refused(add_model_dir: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """pvc://models/add where add is a symlink to a host directory: outside the claim's mount."""
    root = tmp_path / "pvc"
    (root / "models").mkdir(parents=True)
    (root / "models" / "add").symlink_to(add_model_dir)
    monkeypatch.setenv("EDGEOPT_PVC_ROOT", str(root))
    source = {**add_source(add_model_dir), "uri": "pvc://models/add"}
    _refused(make_model("add", source, tmp_path / "repo"), tmp_path, "resolves to .* outside")


NO_MATCH = "does not match"  # the field's pattern, the same one the CRD has
DOT_SEGMENT = "must not contain '.' or '..' segments"


@pytest.mark.parametrize(
    "key,value,rule",
    [
        ("uri", "pvc://models//etc", NO_MATCH),
        ("graph", "/etc/passwd", NO_MATCH),
        ("graph", "../x.pb", DOT_SEGMENT),
        ("checkpoint", "a//b", NO_MATCH),
        ("graph", "my_graph.pb\n", NO_MATCH),
    ],
)
def test_spec_paths_are_refused_before_anything_runs(tmp_path: Path, key: str, value: str, rule: str) -> None:
    source = {**add_source(tmp_path), key: value}
    with pytest.raises(SpecError) as err:
        make_model("add", source, tmp_path / "repo")
    assert str(err.value).startswith(f"spec.source.{key}: {value!r} {rule}"), err.value
    assert manifest_dict("add", source, tmp_path)  # the same dict is what kubectl would be given


def test_sample_count_over_the_cap_names_the_setting(add_model_dir: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("EDGEOPT_LIMIT_VALIDATION_SAMPLES", "16")
    model = make_model("add", add_source(add_model_dir), tmp_path / "repo", validation={"samples": 17})
    with pytest.raises(SpecError, match="EDGEOPT_LIMIT_VALIDATION_SAMPLES"):
        convert_model(model, tmp_path / "work")


def test_graph_over_the_size_cap_names_the_setting(add_model_dir: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("EDGEOPT_LIMIT_GRAPH_BYTES", "100")
    _refused(make_model("add", add_source(add_model_dir), tmp_path / "repo"), tmp_path, "EDGEOPT_LIMIT_GRAPH_BYTES")
