"""The seed guide's scalar graph (x: shape (), y = a + x) through the CLI into the real Triton: 6.0 for x = 1.0.

Also pins down why a scalar travels as dims [1] *without* a reshape: the real
Triton refuses ``reshape: { shape: [] }`` when max_batch_size is 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeopt.cli import main
from edgeopt.errors import ServingError
from edgeopt.triton.client import TritonClient
from tests.tf.conftest import manifest_dict, write_manifest

pytestmark = [pytest.mark.triton, pytest.mark.tf]


def _publish_guide(repository: Path, tmp_path: Path, name: str) -> None:
    from edgeopt_dev.samples import write_guide_checkpoint

    info = write_guide_checkpoint(tmp_path / "model")
    source = {k: info[k] for k in ("format", "graph", "checkpoint", "inputs", "outputs")}
    doc = manifest_dict(name, {"uri": f"file://{info['dir']}", **source}, repository)
    path = write_manifest(tmp_path / f"{name}.yaml", doc)
    assert main(["convert", "-f", str(path), "--termination-log", str(tmp_path / "term")]) == 0
    assert json.loads((tmp_path / "term").read_text())["version"] == 1


def test_guide_scalar_graph_answers_six_through_triton(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    _publish_guide(triton_repository, tmp_path, "guide-scalar")
    config = (triton_repository / "guide-scalar" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config and "dims: [ 1 ]" in config
    assert (triton_repository / "guide-scalar" / "1" / "optimized_graph.pb").is_file()
    triton_client.load("guide-scalar")
    assert triton_client.is_model_ready("guide-scalar", 1)
    for x, want in ((1.0, 6.0), (-2.5, 2.5)):
        y = triton_client.infer("guide-scalar", {"x": np.array([x], dtype=np.float32)})["y"]
        assert y.shape == (1,) and float(y[0]) == want
    triton_client.unload("guide-scalar")


def test_triton_refuses_an_empty_reshape_without_batching(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    _publish_guide(triton_repository, tmp_path, "guide-reshape")
    config = triton_repository / "guide-reshape" / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [ 1 ]\n", "dims: [ 1 ]\n    reshape: { shape: [ ] }\n"))
    with pytest.raises(ServingError, match="scalar tensors are not supported"):
        triton_client.load("guide-reshape")
