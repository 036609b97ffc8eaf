"""Publishing → Ready through the real Triton: retry while it is down, never re-run the Job."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edgeopt.triton.client import TritonClient
from edgeopt_dev.triton_server import TritonServer
from tests.fixtures.common import wait_for
from tests.operator.support import (
    Kubectl,
    OperatorProcess,
    apply,
    condition,
    events_of,
    example,
    free_port,
    jobs_of,
    om,
    wait_phase,
)

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.triton]


def test_loaded_into_triton_after_it_comes_up(
    kubectl: Kubectl,
    model_namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    control_plane: Any,
    tmp_path: Any,
) -> None:
    ns = model_namespace
    repo = control_plane.pvc_dir("triton-models")
    shutil.rmtree(repo / "served", ignore_errors=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    operator_factory(EDGEOPT_TRITON_URL=url, EDGEOPT_TRITON_TIMEOUT_SECONDS="5")
    apply(kubectl, ns, example(name="served", model_name="served"))

    # Published, but Triton is not there yet: ServingReady False, phase stays Publishing.
    def not_serving() -> dict[str, Any] | None:
        obj = om(kubectl, ns, "served")
        return obj if condition(obj, "ServingReady").get("status") == "False" else None

    obj = wait_for(not_serving, timeout=120, what="ServingReady=False while Triton is down")
    assert obj["status"]["phase"] == "Publishing" and obj["status"]["modelVersion"] == 1
    assert condition(obj, "ServingReady")["reason"] == "TritonUnavailable"
    assert condition(obj, "Ready")["status"] == "False"
    assert url in condition(obj, "ServingReady")["message"]

    with TritonServer(repo, http_port=port, log_path=tmp_path / "triton.log"):
        obj = wait_phase(kubectl, ns, "served", "Ready", timeout=120)
        assert condition(obj, "ServingReady")["status"] == "True"
        assert condition(obj, "Ready")["status"] == "True"
        assert len(jobs_of(kubectl, ns, obj["metadata"]["uid"])) == 1, "serving retries never re-run the Job"
        client = TritonClient(url, timeout=60)
        out = client.infer("served", {"x": np.array([[1.0], [2.0]], dtype=np.float32)}, version=1)
        np.testing.assert_allclose(out["y"].reshape(-1), [6.0, 7.0])
        reasons = [e["reason"] for e in events_of(kubectl, ns, "served")]
        assert "TritonUnavailable" in reasons and "Ready" in reasons  # the Event carries the reason

        # Delete unloads it (the finalizer), then lets go.
        kubectl("delete", "om", "served", "-n", ns, "--timeout=60s", timeout=70)
        assert not client.is_model_ready("served")
