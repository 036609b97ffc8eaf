"""The operator's Triton client against the real server: blocking and asyncio, and its failure messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import ServingError
from edgeopt.triton.client import AsyncTritonClient, TritonClient
from edgeopt.triton.publish import publish_version
from tests.fixtures.triton import optimized_model
from tests.triton.tf_models import artifact_from_savedmodel, write_add_savedmodel

pytestmark = [pytest.mark.triton]


def test_unknown_model_message_is_tritons(triton_client: TritonClient) -> None:
    with pytest.raises(ServingError, match=r"loading model 'no-such-model' failed: .*no-such-model"):
        triton_client.load("no-such-model")
    assert triton_client.is_live()
    assert not triton_client.is_model_ready("no-such-model")


@pytest.mark.tf
def test_async_client_load_ready_index_smoke_unload(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    publish_version(
        artifact_from_savedmodel(write_add_savedmodel(tmp_path / "sm", 1.5)), optimized_model("aio", triton_repository)
    )

    async def scenario() -> tuple[bool, list[int], list[str], np.ndarray, bool]:
        client = AsyncTritonClient(triton_client.url, timeout=60)
        assert await client.is_live()
        await client.load("aio")
        ready = await client.is_model_ready("aio", 1)
        versions = await client.ready_versions("aio")
        index = [e["name"] for e in await client.repository_index()]
        smoke = await client.smoke_infer("aio", 1)
        assert smoke.outputs == {"y": [1, 1]}
        y = (await client.infer("aio", {"x": np.array([[2.0]], dtype=np.float32)}))["y"]
        await client.unload("aio")
        gone = await client.is_model_ready("aio")
        return ready, versions, index, y, gone

    ready, versions, index, y, gone = asyncio.run(scenario())
    assert ready and versions == [1]
    assert "aio" in index  # the index lists what is in the repository, loaded or not
    np.testing.assert_allclose(y, [[3.5]])
    assert not gone
