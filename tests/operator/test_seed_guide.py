"""The seed guide's scalar graph through ``kubectl apply``, the operator, a converter Job and the real Triton.

The manifest is YAML text applied with ``kubectl -f`` (YAML 1.1: the output
name must be quoted), x has shape (), and the model answers 6.0 for x = 1.0.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.triton.client import TritonClient
from edgeopt_dev.triton_server import TritonServer
from tests.operator.support import Kubectl, OperatorProcess, condition, free_port, om, wait_phase

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.triton, pytest.mark.tf]

MANIFEST = """\
apiVersion: edgeopt.io/v1alpha1
kind: OptimizedModel
metadata:
  name: guide
spec:
  source:
    uri: pvc://models/guide
    format: Checkpoint
    graph: my_graph.pb
    checkpoint: test_model
    inputs:
      - {name: x, dtype: FP32, shape: []}
    outputs: ["y"]
  tensorrt:
    enabled: false
  target:
    repository: pvc://triton-models
    modelName: guide
    backend: python
    maxBatchSize: 0
"""


def test_scalar_guide_graph_reaches_ready_and_answers_six(
    kubectl: Kubectl,
    model_namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    control_plane: Any,
    tmp_path: Path,
) -> None:
    from edgeopt_dev.samples import write_guide_checkpoint

    write_guide_checkpoint(control_plane.pvc_dir("models") / "guide")
    repo = control_plane.pvc_dir("triton-models")
    shutil.rmtree(repo / "guide", ignore_errors=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with TritonServer(repo, http_port=port, log_path=tmp_path / "triton.log"):
        operator_factory(EDGEOPT_TRITON_URL=url, EDGEOPT_TRITON_TIMEOUT_SECONDS="10")
        (tmp_path / "guide.yaml").write_text(MANIFEST)
        kubectl("apply", "-n", model_namespace, "-f", str(tmp_path / "guide.yaml"))
        try:
            obj = wait_phase(kubectl, model_namespace, "guide", "Ready", timeout=300)
        except AssertionError:
            status = om(kubectl, model_namespace, "guide").get("status")
            raise AssertionError(f"guide did not reach Ready; status: {status}") from None
        assert condition(obj, "ServingReady")["status"] == "True"
        assert obj["status"]["modelVersion"] == 1
        assert (repo / "guide" / "1" / "optimized_graph.pb").is_file()
        y = TritonClient(url, timeout=60).infer("guide", {"x": np.array([1.0], dtype=np.float32)}, version=1)["y"]
        assert y.shape == (1,) and float(y[0]) == 6.0
        kubectl("delete", "om", "guide", "-n", model_namespace, "--timeout=60s", timeout=70)
