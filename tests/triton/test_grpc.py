"""Every served test model answers through Triton's gRPC endpoint as well as over HTTP, like TensorFlow.

Users reach Triton through gRPC as often as HTTP.  tritonclient 2.51's grpc
extra runs on protobuf 4 (the one TensorFlow 2.17 needs), so the client is
the real ``tritonclient.grpc`` in the same venv; the server is the real
tritonserver with its gRPC port bound on loopback (``TritonServer.grpc_url``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.triton.client import TritonClient
from edgeopt.triton.publish import publish_version
from tests.triton.cases import build_case, source_manifest

pytestmark = [pytest.mark.triton, pytest.mark.tf]


def grpc_infer(url: str, model: str, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(outputs, model metadata) through gRPC only."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    client = grpcclient.InferenceServerClient(url)
    try:
        assert client.is_server_live() and client.is_model_ready(model)
        meta = client.get_model_metadata(model, as_json=True)
        inputs = []
        for name, array in feed.items():
            item = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            inputs.append(item)
        result = client.infer(model, inputs, client_timeout=120.0)
        return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}, meta
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["add", "convbn", "keras"])
def test_grpc_and_http_give_tensorflows_answer(
    kind: str,
    samples: dict[str, dict[str, Any]],
    triton_repository: Path,
    triton_server: Any,
    triton_client: TritonClient,
    tmp_path: Path,
) -> None:
    name = f"grpc-{kind}"
    model = source_manifest(kind, samples[kind], triton_repository, name, maxBatchSize=8)
    case = build_case(kind, samples[kind], model, tmp_path / "work")
    publish_version(case.artifact, model)
    triton_client.load(name)
    try:
        over_http = triton_client.infer(name, case.feed)
        over_grpc, meta = grpc_infer(triton_server.grpc_url, name, case.feed)
        assert meta["name"] == name and {i["name"] for i in meta["inputs"]} == set(case.feed)
        assert set(over_grpc) == set(over_http) == set(case.expected)
        for out, want in case.expected.items():
            assert over_grpc[out].shape == want.shape, out
            np.testing.assert_allclose(over_grpc[out], want, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(over_grpc[out], over_http[out])  # same server, same bytes
        if kind == "add":
            np.testing.assert_allclose(over_grpc["y"], case.feed["x"] + 5.0)
    finally:
        triton_client.unload(name)


def test_grpc_reports_an_unknown_model_by_name(triton_server: Any) -> None:
    """A request for a model that is not loaded fails with Triton's own message, not a hang or a crash."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    try:
        x = grpcclient.InferInput("x", [1, 1], "FP32")
        x.set_data_from_numpy(np.ones((1, 1), np.float32))
        with pytest.raises(InferenceServerException, match="no-such-model"):
            client.infer("no-such-model", [x], client_timeout=30.0)
    finally:
        client.close()
