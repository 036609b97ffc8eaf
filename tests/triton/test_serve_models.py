"""Publish the three sample models with the python backend, serve them in the real Triton, compare with TF.

Prints the measured publish time, load time and first-inference latency (run with ``-s`` to see them).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.triton.client import TritonClient
from edgeopt.triton.publish import publish_version
from tests.triton.cases import build_case, source_manifest

pytestmark = [pytest.mark.triton, pytest.mark.tf]


@pytest.mark.parametrize("kind", ["add", "convbn", "keras"])
def test_published_model_answers_like_tensorflow(
    kind: str,
    samples: dict[str, dict[str, Any]],
    triton_repository: Path,
    triton_client: TritonClient,
    tmp_path: Path,
) -> None:
    name = f"serve-{kind}"
    model = source_manifest(kind, samples[kind], triton_repository, name, maxBatchSize=8)
    case = build_case(kind, samples[kind], model, tmp_path / "work")

    result = publish_version(case.artifact, model)
    assert result.version == 1

    started = time.monotonic()
    triton_client.load(name)
    load_s = time.monotonic() - started
    assert triton_client.is_model_ready(name, 1)

    started = time.monotonic()
    got = triton_client.infer(name, case.feed)
    first_ms = (time.monotonic() - started) * 1000
    started = time.monotonic()
    triton_client.infer(name, case.feed)
    second_ms = (time.monotonic() - started) * 1000

    assert set(got) == set(case.expected)
    for out, want in case.expected.items():
        assert got[out].shape == want.shape, out
        np.testing.assert_allclose(got[out], want, rtol=1e-5, atol=1e-5)
    if kind == "add":
        np.testing.assert_allclose(got["y"], case.feed["x"] + 5.0)

    smoke = triton_client.smoke_infer(name, 1)
    assert smoke.outputs
    print(
        f"\n[measure] {kind}: publish={result.seconds * 1000:.1f}ms "
        f"load={load_s:.2f}s first_infer={first_ms:.1f}ms second_infer={second_ms:.1f}ms "
        f"smoke={smoke.latency_ms:.1f}ms"
    )
    triton_client.unload(name)
