"""Smoke requests are built from a config the tenant's converter wrote: their size is capped first."""

from __future__ import annotations

import pytest

from edgeopt.triton.client import SmokeInputTooLarge, zero_inputs


def config(dims: list[int], dtype: str = "TYPE_FP32", batch: int = 8) -> dict[str, object]:
    return {"max_batch_size": batch, "input": [{"name": "x", "data_type": dtype, "dims": dims}]}


def test_small_inputs_are_built() -> None:
    (x,) = zero_inputs(config([-1, 3])).values()
    assert x.shape == (1, 1, 3) and x.dtype.name == "float32"


def test_a_huge_declared_input_is_refused_before_anything_is_allocated() -> None:
    # 10^12 FP32 elements: allocating this would take the operator down.
    with pytest.raises(SmokeInputTooLarge) as err:
        zero_inputs(config([1_000_000, 1_000_000]))
    assert "EDGEOPT_SMOKE_INPUT_MAX_BYTES" in str(err.value) and "'x'" in str(err.value)


def test_the_cap_counts_every_input_and_the_dtype() -> None:
    two = {"max_batch_size": 0, "input": [{"name": n, "data_type": "TYPE_FP64", "dims": [64]} for n in "ab"]}
    assert set(zero_inputs(two, max_bytes=1024)) == {"a", "b"}  # 2 x 64 x 8 bytes = 1024
    with pytest.raises(SmokeInputTooLarge, match="'b'"):
        zero_inputs(two, max_bytes=1023)
