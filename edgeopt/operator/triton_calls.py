"""The three Triton conversations the operator has, over tritonclient's aio HTTP client.

Load (explicit mode) + ready + one smoke inference on zeros shaped like the
model's metadata says; and unload. Every failure — refused connection,
timeout, a model Triton will not load, an inference that errors — becomes a
``ServingError`` with a message that says which step failed and where.
"""

from __future__ import annotations

import asyncio
from typing import Any

from edgeopt.errors import ServingError

_NUMPY = {
    "FP32": "float32", "FP16": "float16", "FP64": "float64", "INT8": "int8", "INT16": "int16",
    "INT32": "int32", "INT64": "int64", "UINT8": "uint8", "BOOL": "bool",
}  # fmt: skip


def _client(url: str, timeout: float) -> Any:
    from tritonclient.http import aio

    ssl = url.startswith("https://")
    return aio.InferenceServerClient(url.split("://", 1)[-1].rstrip("/"), conn_timeout=timeout, ssl=ssl)


async def _step(what: str, url: str, coro: Any, timeout: float) -> Any:
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError as exc:
        raise ServingError(f"{what}: Triton at {url} did not answer within {timeout:g}s") from exc
    except ServingError:
        raise
    except Exception as exc:
        text = getattr(exc, "message", None)
        detail = text() if callable(text) else str(exc)
        raise ServingError(f"{what}: Triton at {url}: {detail or type(exc).__name__}") from exc


async def load_and_check(url: str, name: str, version: int | None, *, timeout: float) -> None:
    """Load ``name``, wait until ``version`` is ready, and run one inference on zeros."""
    import numpy as np
    from tritonclient.http import InferInput

    client = _client(url, timeout)
    try:
        await _step(f"loading {name}", url, client.load_model(name), timeout)
        v = str(version or "")
        deadline = asyncio.get_running_loop().time() + timeout
        while not await _step(f"checking {name} is ready", url, client.is_model_ready(name, v), timeout):
            if asyncio.get_running_loop().time() > deadline:
                raise ServingError(f"{name} version {v or 'latest'} is not ready in Triton at {url} after {timeout:g}s")
            await asyncio.sleep(0.5)
        meta = await _step(f"reading the metadata of {name}", url, client.get_model_metadata(name, v), timeout)
        inputs = []
        for spec in meta.get("inputs") or []:
            shape = [1 if d < 0 else d for d in spec["shape"]]
            dtype = spec["datatype"]
            if dtype not in _NUMPY:
                return  # strings etc.: loading and readiness are the check
            tensor = InferInput(spec["name"], shape, dtype)
            tensor.set_data_from_numpy(np.zeros(shape, dtype=_NUMPY[dtype]))
            inputs.append(tensor)
        result = await _step(f"smoke inference on {name}", url, client.infer(name, inputs, model_version=v), timeout)
        for out in meta.get("outputs") or []:
            if result.as_numpy(out["name"]) is None:
                raise ServingError(f"smoke inference on {name}: Triton at {url} returned no {out['name']!r}")
    finally:
        await client.close()


async def unload(url: str, name: str, *, timeout: float) -> None:
    client = _client(url, timeout)
    try:
        await _step(f"unloading {name}", url, client.unload_model(name), timeout)
    finally:
        await client.close()
