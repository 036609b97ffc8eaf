"""Trust nothing the Job says: the termination-message summary, validated before it reaches status.

The converter runs a tenant's model, so whatever it writes to its termination
message is as untrusted as the model itself. Unchecked, a ``"version": "x"``
made every status patch fail with 422 (the CRD wants an integer), the Job
event was dropped, and the next event tried again: a loop. Here each field is
checked for its type, ``version`` must be a positive integer, ``reason`` must
come from the closed set the converter can really emit, and the report's
numbers must be numbers; anything else becomes one Failed status with reason
``InvalidJobOutput`` and a message that says what was wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from edgeopt.artifact import TERMINATION_MESSAGE_LIMIT, Summary

INVALID_JOB_OUTPUT = "InvalidJobOutput"
#: What the converter reports on success.
OK_REASONS = frozenset({"Published", "Converted"})
#: What it reports on failure: every EdgeoptError reason, and InternalError for the unexpected
#: (tests/unit/test_job_output.py fails when an error class brings a reason missing here).
FAILURE_REASONS = frozenset(
    {
        "Error",
        "InternalError",
        "InvalidSpec",
        "InvalidInput",
        "ConversionFailed",
        "TensorRTUnavailable",
        "ValidationFailed",
        "PublishFailed",
        "ServingFailed",
        "OwnedByAnotherModel",
        "InvalidSettings",
        "RepositoryFull",
        "Terminated",
    }
)
REASONS = OK_REASONS | FAILURE_REASONS
_KEYS = frozenset({"ok", "reason", "message", "model", "version", "report"})
_MODEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: Report keys whose type the operator relies on (it formats them into condition messages).
_REPORT_INTS = frozenset({"opsBefore", "opsAfter", "trtEngines"})
_REPORT_NUMBERS = frozenset({"maxAbsError", "maxRelError", "latencyMsBefore", "latencyMsAfter", "conversionSeconds"})
_REPORT_STRING_MAX = 256


class InvalidJobOutput(ValueError):
    """The summary is not what a converter writes; the message says which field is wrong."""


def _check_report(report: Any) -> dict[str, Any]:
    if not isinstance(report, Mapping):
        raise InvalidJobOutput(f"report must be an object, got {type(report).__name__}")
    for key, value in report.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,63}", key):
            raise InvalidJobOutput(f"report key {key!r} is not a camelCase name")
        if value is None:
            continue
        if key in _REPORT_INTS and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise InvalidJobOutput(f"report.{key} must be a non-negative integer, got {value!r}")
        if key in _REPORT_NUMBERS and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            raise InvalidJobOutput(f"report.{key} must be a finite number, got {value!r}")
        if isinstance(value, str) and len(value) > _REPORT_STRING_MAX:
            raise InvalidJobOutput(f"report.{key} is longer than {_REPORT_STRING_MAX} characters")
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidJobOutput(f"report.{key} must be a string, number or boolean, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidJobOutput(f"report.{key} must be finite, got {value!r}")
    return dict(report)


def _check_version(data: Mapping[str, Any], ok: bool, reason: str) -> int | None:
    version = data.get("version")
    if version is None:
        if ok and reason == "Published":
            raise InvalidJobOutput("version is missing: a published summary must name the version it published")
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidJobOutput(f"version must be a positive integer, got {version!r}")
    if version > 2**63 - 1:
        raise InvalidJobOutput(f"version {version} is out of range")
    return version


def _no_constants(name: str) -> Any:
    """NaN and Infinity are Python's JSON extensions, not JSON."""
    raise InvalidJobOutput(f"{name} is not a JSON value")


def validate_summary(text: str) -> Summary:
    """The Summary in ``text``, or InvalidJobOutput naming the first thing that is wrong."""
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
        raise InvalidJobOutput(f"the summary is longer than {TERMINATION_MESSAGE_LIMIT} bytes")
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise InvalidJobOutput(f"the summary is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidJobOutput(f"the summary must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InvalidJobOutput(f"unknown summary keys {unknown}")
    ok, reason, message = data.get("ok"), data.get("reason"), data.get("message")
    if not isinstance(ok, bool):
        raise InvalidJobOutput(f"ok must be true or false, got {ok!r}")
    if not isinstance(reason, str) or reason not in REASONS:
        raise InvalidJobOutput(f"reason {reason!r} is not one the converter reports ({', '.join(sorted(REASONS))})")
    if ok != (reason in OK_REASONS):
        raise InvalidJobOutput(f"ok={str(ok).lower()} contradicts reason {reason!r}")
    if not isinstance(message, str):
        raise InvalidJobOutput(f"message must be a string, got {type(message).__name__}")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not _MODEL.fullmatch(model)):
        raise InvalidJobOutput(f"model {model!r} is not a model name")
    version = _check_version(data, ok, reason)
    report = _check_report(data.get("report") or {})
    return Summary(ok=ok, reason=reason, message=message, model=model, version=version, report=report)


def looks_like_summary(text: str) -> bool:
    """One JSON object: a summary (valid or not). A log tail (FallbackToLogsOnError) is not one."""
    try:
        return isinstance(json.loads(text, parse_constant=lambda _: None), dict)
    except ValueError:
        return False


def summary_or_invalid(text: str, *, succeeded: bool) -> Summary:
    """validate_summary, with a failure turned into the Failed summary the status shows.

    ``succeeded`` is the Job's own verdict: a failed Job whose summary says ok is lying too.
    """
    try:
        summary = validate_summary(text)
        if summary.ok and not succeeded:
            raise InvalidJobOutput("the Job failed but its summary says ok")
        return summary
    except InvalidJobOutput as exc:
        return Summary(
            ok=False,
            reason=INVALID_JOB_OUTPUT,
            message=f"the conversion Job's termination message is not a valid edgeopt summary: {exc}. "
            "Nothing from it was used; check the converter image (spec.converter.image) and its log",
        )
