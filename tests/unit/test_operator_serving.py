"""The serving decisions that need no Triton: failure classes, the narrowed config, backoff."""

from __future__ import annotations

from edgeopt.errors import ServingError
from edgeopt.operator import serving
from edgeopt.triton.client import TritonRefused, TritonUnavailable


def test_failures_are_classified_and_only_refusals_count() -> None:
    assert serving.failure_reason(TritonUnavailable("down")) == ("TritonUnavailable", False)
    assert serving.failure_reason(TritonRefused("bad config")) == ("LoadFailed", True)
    assert serving.failure_reason(serving.SmokeTestFailed("NaN")) == ("SmokeTestFailed", True)
    assert serving.failure_reason(ServingError("other")) == ("ServingFailed", True)


def test_only_version_narrows_the_loaded_config_and_nothing_else() -> None:
    loaded = {
        "name": "add",
        "backend": "python",
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["1"]}],
        "version_policy": {"specific": {"versions": [1, 2]}},
    }
    narrowed = serving.only_version(loaded, 2)
    assert narrowed["version_policy"] == {"specific": {"versions": [2]}}
    assert {k: v for k, v in narrowed.items() if k != "version_policy"} == {
        k: v for k, v in loaded.items() if k != "version_policy"
    }
    assert loaded["version_policy"] == {"specific": {"versions": [1, 2]}}, "the input is not changed"


def test_backoff_doubles_and_is_capped() -> None:
    assert [serving.backoff(1.0, n) for n in range(7)] == [1, 2, 4, 8, 10, 10, 10]
