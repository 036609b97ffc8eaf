"""The Job's termination message is untrusted: only a well-formed summary reaches status."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

import edgeopt
from edgeopt.artifact import Summary
from edgeopt.operator import job_output, status

GOOD: dict[str, Any] = {
    "ok": True,
    "reason": "Published",
    "message": "converted",
    "model": "add",
    "version": 3,
    "report": {"opsBefore": 10, "opsAfter": 4, "maxAbsError": 0.0, "precision": "FP32", "gpu": None},
}


def with_(**changes: Any) -> str:
    return json.dumps({**GOOD, **changes})


def test_what_the_converter_writes_is_accepted() -> None:
    text = Summary(**GOOD).to_json()
    assert job_output.validate_summary(text) == Summary(**GOOD)
    failed = Summary(ok=False, reason="InvalidInput", message="no node 'z'", model="add").to_json()
    assert job_output.validate_summary(failed).reason == "InvalidInput"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (with_(version="3"), "version must be a positive integer"),
        (with_(version=0), "version must be a positive integer"),
        (with_(version=-1), "version must be a positive integer"),
        (with_(version=True), "version must be a positive integer"),
        (with_(version=2.5), "version must be a positive integer"),
        (with_(version=2**64), "out of range"),
        (with_(version=None), "version is missing"),
        (with_(reason="Pwned"), "is not one the converter reports"),
        (with_(reason=["Published"]), "is not one the converter reports"),
        (with_(ok="yes"), "ok must be true or false"),
        (with_(ok=False), "contradicts reason"),
        (with_(message=42), "message must be a string"),
        (with_(model="../etc"), "is not a model name"),
        (with_(extra=1), "unknown summary keys"),
        (with_(report=[1]), "report must be an object"),
        (with_(report={"maxAbsError": "small"}), "finite number"),
        (with_(report={"opsAfter": -1}), "non-negative integer"),
        (with_(report={"nested": {"a": 1}}), "string, number or boolean"),
        (with_(report={"bad key": 1}), "camelCase"),
        (with_(report={"note": "x" * 300}), "longer than"),
        (
            '{"ok": true, "reason": "Published", "message": "", "version": 1, "report": {"maxAbsError": NaN}}',
            "not a JSON value",
        ),
        ("[1, 2]", "JSON object"),
        ("{not json", "not JSON"),
        (json.dumps({**GOOD, "message": "m" * 5000}), "longer than 4096"),
    ],
)
def test_anything_else_is_invalid_job_output(text: str, fragment: str) -> None:
    with pytest.raises(job_output.InvalidJobOutput, match=fragment.replace("(", r"\(")):
        job_output.validate_summary(text)
    summary = status.parse_summary(text, 0, succeeded=True)
    assert (summary.ok, summary.reason) == (False, "InvalidJobOutput")
    assert fragment.split()[0] in summary.message


def test_a_failed_job_claiming_success_is_invalid() -> None:
    summary = status.parse_summary(Summary(**GOOD).to_json(), 1, succeeded=False)
    assert summary.reason == "InvalidJobOutput" and "says ok" in summary.message


def test_a_log_tail_is_still_a_crash_not_invalid_output() -> None:
    tail = '{"event": "load", "status": "start"}\nTraceback (most recent call last):\nMemoryError'
    summary = status.parse_summary(tail, 137, succeeded=False)
    assert summary.reason == "ConverterCrashed" and "MemoryError" in summary.message


def test_an_invalid_summary_becomes_a_failed_status_the_crd_accepts() -> None:
    """The point: one Failed patch with plain strings, not a 422 on modelVersion retried forever."""
    summary = status.parse_summary(with_(version="1; drop"), 0, succeeded=True)
    patch = status.job_failed({}, 2, summary)
    assert patch["phase"] == "Failed" and "modelVersion" not in patch
    reasons = {c["reason"] for c in patch["conditions"]}
    assert reasons == {"InvalidJobOutput"}


def every_error_reason() -> set[str]:
    """Every class-level ``reason = "..."`` in edgeopt (error classes), read from the source: no imports."""
    reasons: set[str] = set()
    for path in Path(edgeopt.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and any(getattr(t, "id", "") == "reason" for t in stmt.targets)
                    and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)
                ):
                    reasons.add(stmt.value.value)
    return reasons


def test_the_closed_set_covers_every_reason_the_converter_can_report() -> None:
    """A new error class with a new reason must be added to job_output.REASONS, or its Jobs would read as invalid."""
    found = every_error_reason()
    assert {"InvalidInput", "PublishFailed", "OwnedByAnotherModel", "NotAllowed"} <= found, found
    operator_only = {
        "KubernetesAPIError",
        "NotAllowed",
        "DemoFailed",
        "SmokeInputTooLarge",
        "TritonUnavailable",
        "LoadFailed",
    }
    missing = found - job_output.REASONS - operator_only
    assert not missing, f"add to edgeopt/operator/job_output.py FAILURE_REASONS: {sorted(missing)}"


def test_report_keys_the_converter_writes_are_known() -> None:
    from edgeopt.converter.report import COMPACT_KEYS

    numbers = {
        "opsBefore",
        "opsAfter",
        "trtEngines",
        "maxAbsError",
        "maxRelError",
        "latencyMsBefore",
        "latencyMsAfter",
        "conversionSeconds",
    }
    assert numbers <= set(COMPACT_KEYS)
