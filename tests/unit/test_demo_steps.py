"""The demo's step record, which ``edgeopt-dev demo --results`` writes and tests/ship/test_demo.py reads."""

from __future__ import annotations

import pytest

from edgeopt_dev.demo import DemoError, Steps


def test_a_failed_step_is_recorded_with_its_error_and_stops_the_demo() -> None:
    steps = Steps(total=3)
    with steps.step("first"):
        steps.facts["seen"] = 1
    with pytest.raises(DemoError, match="step 2/3 'second' failed: no luck"), steps.step("second"):
        raise RuntimeError("no luck")
    results = steps.results("step 2/3 'second' failed: no luck")
    assert results["ok"] is False and results["seen"] == 1
    recorded = [(s["n"], s["title"], s["status"]) for s in results["steps"]]
    assert recorded == [(1, "first", "ok"), (2, "second", "failed")]
    assert results["steps"][1]["error"] == "no luck" and "error" not in results["steps"][0]


@pytest.mark.parametrize(
    ("done", "error", "ok"),
    [(3, None, True), (2, None, False), (3, "interrupted", False)],
    ids=["all-steps", "steps-missing", "error"],
)
def test_ok_only_when_every_step_ran_and_nothing_failed(done: int, error: str | None, ok: bool) -> None:
    steps = Steps(total=3)
    for n in range(done):
        with steps.step(f"step {n}"):
            pass
    assert steps.results(error)["ok"] is ok
