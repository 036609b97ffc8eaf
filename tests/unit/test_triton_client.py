"""The Triton client's failure modes that need no Triton: bad URLs, refused and silent ports."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest

from edgeopt.errors import ServingError
from edgeopt.triton.client import (
    AsyncTritonClient,
    RetryPolicy,
    TritonClient,
    check_finite,
    ready_versions_from_index,
    split_url,
    zero_inputs,
)
from edgeopt_dev.netutil import free_port


def test_unreachable_url_fails_fast_with_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = TritonClient(url, timeout=2, retry=RetryPolicy(attempts=3, initial_delay=0.05))
    started = time.monotonic()
    with pytest.raises(ServingError, match=r"unreachable .*3 attempts.*(refused|Connect)") as err:
        client.load("anything")
    assert url in str(err.value)
    assert time.monotonic() - started < 5
    assert not client.is_live()


def test_async_unreachable_url() -> None:
    client = AsyncTritonClient(f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=2, initial_delay=0.05))
    with pytest.raises(ServingError, match="unreachable"):
        asyncio.run(client.repository_index())


def test_bad_urls_are_rejected() -> None:
    with pytest.raises(ServingError, match="http"):
        TritonClient("ftp://triton:8000")


def test_silent_server_times_out_once_without_retries() -> None:
    """A port that accepts but never answers: one attempt, then a clear timeout message."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = TritonClient(url, timeout=1, retry=RetryPolicy(attempts=4, initial_delay=0.5))
        started = time.monotonic()
        with pytest.raises(ServingError, match=r"did not answer within 1s \(repository index\)"):
            client.repository_index()
        assert time.monotonic() - started < 3
        aclient = AsyncTritonClient(url, timeout=1)
        with pytest.raises(ServingError, match="did not answer within 1s"):
            asyncio.run(aclient.is_model_ready("m"))


def test_pure_helpers() -> None:
    assert split_url("http://triton.edge.svc:8000") == ("triton.edge.svc:8000", False)
    assert split_url("https://t") == ("t:443", True)
    assert split_url("127.0.0.1:9") == ("127.0.0.1:9", False)
    config = {
        "max_batch_size": 4,
        "input": [
            {"name": "a", "data_type": "TYPE_FP32", "dims": ["-1", "3"]},
            {"name": "s", "data_type": "TYPE_STRING", "dims": ["1"]},
        ],
    }
    zeros = zero_inputs(config)
    assert zeros["a"].shape == (1, 1, 3) and zeros["a"].dtype == np.float32 and not zeros["a"].any()
    assert zeros["s"].dtype == np.object_ and zeros["s"].shape == (1, 1)
    with pytest.raises(ServingError, match="NaN or Inf"):
        check_finite("m", {"y": np.array([1.0, np.nan])})
    index = [
        {"name": "m", "version": "2", "state": "READY"},
        {"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "other", "version": "1", "state": "READY"},
        {"name": "m"},
    ]
    assert ready_versions_from_index(index, "m") == [2]
    assert RetryPolicy(attempts=4, initial_delay=1, factor=3, max_delay=5).delays() == [1, 3, 5]
