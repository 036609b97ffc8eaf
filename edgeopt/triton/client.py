"""Talk to a running Triton over HTTP: what the operator needs, with clear failures.

Triton runs in explicit model-control mode, so the operator decides when a
model (re)loads; which versions are served is decided by the version_policy
in config.pbtxt.  Every call has a timeout, transport failures are retried a
bounded number of times with exponential backoff, and whatever goes wrong
surfaces as a ``ServingError`` whose message says which server, which model
and what Triton said, because that text ends up in the resource's status.

``TritonClient`` is blocking (tests, CLI); ``AsyncTritonClient`` has the same
methods for kopf's event loop.  No TensorFlow here (an import-linter contract
checks it): the operator image has none.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from edgeopt.errors import ServingError

T = TypeVar("T")

#: HTTP statuses worth retrying: Triton (or a proxy in front of it) is starting or overloaded.
TRANSIENT_STATUSES = {"429", "502", "503", "504"}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 5.0

    def delays(self) -> list[float]:
        out, delay = [], self.initial_delay
        for _ in range(self.attempts - 1):
            out.append(min(delay, self.max_delay))
            delay *= self.factor
        return out


@dataclass
class SmokeResult:
    model: str
    version: str
    latency_ms: float
    outputs: dict[str, list[int]] = field(default_factory=dict)  # name -> shape


def split_url(url: str) -> tuple[str, bool]:
    """``http://host:port`` -> (``host:port``, ssl); tritonclient wants no scheme."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServingError(f"Triton URL {url!r} is not http(s)://HOST[:PORT]")
    port = parts.port or (443 if parts.scheme == "https" else 8000)
    return f"{parts.hostname}:{port}", parts.scheme == "https"


def _status(exc: InferenceServerException) -> str:
    status = exc.status()
    return str(status) if status is not None else ""


def _message(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException):
        return exc.message() or str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError))


def _is_transient(exc: BaseException) -> bool:
    """Worth another attempt: refused/reset connections and 'busy' statuses.

    A timeout is not retried: the call already waited its full budget (a load
    can legitimately take minutes), and the caller (kopf) has its own retry.
    """
    if isinstance(exc, InferenceServerException):
        return _status(exc) in TRANSIENT_STATUSES
    if _is_timeout(exc):
        return False
    return isinstance(exc, OSError) or type(exc).__module__.startswith(("aiohttp", "gevent", "geventhttpclient"))


class TritonUnavailable(ServingError):
    """Triton did not answer: down, restarting, overloaded, or too slow. Worth retrying."""

    reason = "TritonUnavailable"


class TritonRefused(ServingError):
    """Triton answered and said no (a load that fails, a bad request); the message is Triton's own."""

    reason = "LoadFailed"


def _error(url: str, what: str, exc: BaseException, attempts: int, timeout: float) -> ServingError:
    if isinstance(exc, InferenceServerException) and not _is_transient(exc):
        return TritonRefused(f"Triton at {url}: {what} failed: {_message(exc)}")
    if _is_timeout(exc):
        return TritonUnavailable(f"Triton at {url} did not answer within {timeout:.0f}s ({what})")
    return TritonUnavailable(
        f"Triton at {url} is unreachable or not answering ({what}, {attempts} attempts): {_message(exc)}"
    )


# --------------------------------------------------------------------------- request building


def config_dims(tensor: dict[str, Any]) -> list[int]:
    return [int(d) for d in tensor.get("dims", [])]


#: Default cap on a smoke request built from a model config (all inputs together).
SMOKE_INPUT_MAX_BYTES = 64 * 1024 * 1024


class SmokeInputTooLarge(ServingError):
    """The model config declares inputs too large for a smoke request; none was built."""

    reason = "SmokeInputTooLarge"


def zero_inputs(
    config: dict[str, Any], batch: int = 1, *, max_bytes: int = SMOKE_INPUT_MAX_BYTES
) -> dict[str, np.ndarray]:
    """Zeros for every input the config declares; variable dims become 1.

    The config comes from the repository, which the converter of a tenant's
    model wrote: its dims are untrusted. The size is computed (in Python ints,
    no overflow) before anything is allocated, and a request above
    ``max_bytes`` is refused with SmokeInputTooLarge.
    """
    batched = int(config.get("max_batch_size") or 0) > 0
    shapes: dict[str, tuple[list[int], str]] = {}
    total = 0
    for t in config.get("input", []):
        dims = [d if d > 0 else 1 for d in config_dims(t)]
        shape = ([batch] if batched else []) + dims
        triton_type = str(t["data_type"]).removeprefix("TYPE_")
        itemsize = 1 if triton_type in ("STRING", "BYTES") else np.dtype(triton_to_np_dtype(triton_type)).itemsize
        total += math.prod(shape) * itemsize
        if total > max_bytes:
            raise SmokeInputTooLarge(
                f"a zero request for input {t.get('name')!r} (shape {shape}) would take more than {max_bytes} bytes; "
                "raise EDGEOPT_SMOKE_INPUT_MAX_BYTES (chart: operator.smokeInputMaxBytes) to send it anyway"
            )
        shapes[t["name"]] = (shape, triton_type)
    out: dict[str, np.ndarray] = {}
    for name, (shape, triton_type) in shapes.items():
        if triton_type in ("STRING", "BYTES"):
            out[name] = np.full(shape, b"", dtype=np.object_)
        else:
            out[name] = np.zeros(shape, dtype=triton_to_np_dtype(triton_type))
    return out


def build_request(
    module: Any, inputs: dict[str, np.ndarray], outputs: list[str] | None
) -> tuple[list[Any], list[Any] | None]:
    infer_inputs = []
    for name, array in inputs.items():
        dtype = "BYTES" if array.dtype == np.object_ else np_to_triton_dtype(array.dtype)
        item = module.InferInput(name, list(array.shape), dtype)
        item.set_data_from_numpy(array, binary_data=True)
        infer_inputs.append(item)
    requested = [module.InferRequestedOutput(n, binary_data=True) for n in outputs] if outputs else None
    return infer_inputs, requested


def check_finite(model: str, outputs: dict[str, np.ndarray]) -> dict[str, list[int]]:
    shapes = {}
    for name, value in outputs.items():
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise ServingError(f"smoke inference on {model}: output {name!r} has NaN or Inf for zero input")
        shapes[name] = list(value.shape)
    return shapes


def ready_versions_from_index(index: list[dict[str, Any]], model: str) -> list[int]:
    return sorted(
        int(e["version"])
        for e in index
        if e.get("name") == model and e.get("state") == "READY" and str(e.get("version", "")).isdigit()
    )


# --------------------------------------------------------------------------- blocking client


class _Endpoint:
    """Where Triton is and how patient to be with it; shared by both clients."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        load_timeout: float = 600.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url if "://" in url else f"http://{url}"
        self._hostport, self._ssl = split_url(url)
        self.timeout = timeout
        self.load_timeout = load_timeout
        self.retry = retry or RetryPolicy()


class TritonClient(_Endpoint):
    """Blocking client over ``tritonclient.http``."""

    def _client(self, timeout: float | None = None) -> httpclient.InferenceServerClient:
        t = timeout or self.timeout
        return httpclient.InferenceServerClient(
            self._hostport, connection_timeout=min(t, self.timeout), network_timeout=t, ssl=self._ssl
        )

    def _call(self, what: str, fn: Callable[[httpclient.InferenceServerClient], T], timeout: float | None = None) -> T:
        delays = self.retry.delays()
        for attempt in range(len(delays) + 1):
            client = self._client(timeout)
            try:
                return fn(client)
            except ServingError:
                raise
            except Exception as exc:
                if not _is_transient(exc) or attempt == len(delays):
                    raise _error(self.url, what, exc, attempt + 1, timeout or self.timeout) from exc
                time.sleep(delays[attempt])
            finally:
                client.close()
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ server

    def is_live(self) -> bool:
        try:
            return bool(self._call("live check", lambda c: c.is_server_live()))
        except ServingError:
            return False

    def wait_live(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_live():
                return
            time.sleep(0.5)
        raise ServingError(f"Triton at {self.url} did not become live within {timeout:.0f}s")

    def repository_index(self) -> list[dict[str, Any]]:
        return list(self._call("repository index", lambda c: c.get_model_repository_index()))

    # ------------------------------------------------------------------ models

    def load(self, model: str, config: dict[str, Any] | None = None) -> None:
        """Explicit-mode (re)load; Triton picks the versions from the config's version_policy.

        ``config`` (the JSON form of a model config) replaces config.pbtxt for
        this load; Triton keeps serving what it has until the reload is done.
        """
        cfg = json.dumps(config) if config is not None else None
        self._call(f"loading model {model!r}", lambda c: c.load_model(model, config=cfg), self.load_timeout)

    def unload(self, model: str) -> None:
        self._call(f"unloading model {model!r}", lambda c: c.unload_model(model))

    def is_model_ready(self, model: str, version: int | str | None = None) -> bool:
        v = "" if version is None else str(version)
        return bool(self._call(f"ready check of {model!r}", lambda c: c.is_model_ready(model, v)))

    def ready_versions(self, model: str) -> list[int]:
        return ready_versions_from_index(self.repository_index(), model)

    def model_config(self, model: str, version: int | str | None = None) -> dict[str, Any]:
        v = "" if version is None else str(version)
        return dict(self._call(f"config of {model!r}", lambda c: c.get_model_config(model, v)))

    def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        version: int | str | None = None,
        outputs: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        infer_inputs, requested = build_request(httpclient, inputs, outputs)
        v = "" if version is None else str(version)
        result = self._call(
            f"inference on {model!r}", lambda c: c.infer(model, infer_inputs, model_version=v, outputs=requested)
        )
        response = result.get_response()
        return {o["name"]: result.as_numpy(o["name"]) for o in response.get("outputs", [])}

    def smoke_infer(
        self, model: str, version: int | str | None = None, *, max_bytes: int = SMOKE_INPUT_MAX_BYTES
    ) -> SmokeResult:
        """Zeros in, finite numbers out: the cheapest proof that a loaded version really answers."""
        config = self.model_config(model, version)
        started = time.monotonic()
        outputs = self.infer(model, zero_inputs(config, max_bytes=max_bytes), version=version)
        latency = (time.monotonic() - started) * 1000
        return SmokeResult(model, "" if version is None else str(version), latency, check_finite(model, outputs))


# --------------------------------------------------------------------------- asyncio client


class AsyncTritonClient(_Endpoint):
    """The same operations over ``tritonclient.http.aio``, for kopf handlers."""

    async def _call(
        self, what: str, fn: Callable[[aioclient.InferenceServerClient], Awaitable[T]], timeout: float | None = None
    ) -> T:
        delays = self.retry.delays()
        budget = timeout or self.timeout
        for attempt in range(len(delays) + 1):
            # conn_timeout is aiohttp's total budget per request: a load may take load_timeout, not timeout.
            client = aioclient.InferenceServerClient(self._hostport, conn_timeout=budget, ssl=self._ssl)
            try:
                return await asyncio.wait_for(fn(client), timeout or self.timeout)
            except ServingError:
                raise
            except Exception as exc:
                if not _is_transient(exc) or attempt == len(delays):
                    raise _error(self.url, what, exc, attempt + 1, timeout or self.timeout) from exc
                await asyncio.sleep(delays[attempt])
            finally:
                await client.close()
        raise AssertionError("unreachable")

    async def is_live(self) -> bool:
        try:
            return bool(await self._call("live check", lambda c: c.is_server_live()))
        except ServingError:
            return False

    async def repository_index(self) -> list[dict[str, Any]]:
        return list(await self._call("repository index", lambda c: c.get_model_repository_index()))

    async def load(self, model: str, config: dict[str, Any] | None = None) -> None:
        cfg = json.dumps(config) if config is not None else None
        await self._call(f"loading model {model!r}", lambda c: c.load_model(model, config=cfg), self.load_timeout)

    async def unload(self, model: str) -> None:
        await self._call(f"unloading model {model!r}", lambda c: c.unload_model(model))

    async def is_model_ready(self, model: str, version: int | str | None = None) -> bool:
        v = "" if version is None else str(version)
        return bool(await self._call(f"ready check of {model!r}", lambda c: c.is_model_ready(model, v)))

    async def ready_versions(self, model: str) -> list[int]:
        return ready_versions_from_index(await self.repository_index(), model)

    async def model_config(self, model: str, version: int | str | None = None) -> dict[str, Any]:
        v = "" if version is None else str(version)
        return dict(await self._call(f"config of {model!r}", lambda c: c.get_model_config(model, v)))

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        version: int | str | None = None,
        outputs: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        infer_inputs, requested = build_request(aioclient, inputs, outputs)
        v = "" if version is None else str(version)
        result = await self._call(
            f"inference on {model!r}", lambda c: c.infer(model, infer_inputs, model_version=v, outputs=requested)
        )
        response = result.get_response()
        return {o["name"]: result.as_numpy(o["name"]) for o in response.get("outputs", [])}

    async def smoke_infer(
        self, model: str, version: int | str | None = None, *, max_bytes: int = SMOKE_INPUT_MAX_BYTES
    ) -> SmokeResult:
        config = await self.model_config(model, version)
        started = time.monotonic()
        outputs = await self.infer(model, zero_inputs(config, max_bytes=max_bytes), version=version)
        latency = (time.monotonic() - started) * 1000
        return SmokeResult(model, "" if version is None else str(version), latency, check_finite(model, outputs))
