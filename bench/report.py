"""Rows, targets, the markdown table and the results file.

A row is one comparison: what edgeopt measured, what the baseline measured
in the same run, their ratio, and (for the claims we make) a target that the
row either meets (PASS) or misses (MISS).  A target can be on the ratio
("optimized latency ≤ 1.0× the original") or on the value itself ("reconcile
p50 ≤ 50 ms").  A row whose measurement is missing says so (``n/a``) rather
than passing by default.  Standard library only (unit-tested without TF).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.stats import ratio

PASS, MISS, NA = "PASS", "MISS", "n/a"


@dataclass(frozen=True)
class Target:
    limit: float
    on: str = "ratio"  # "ratio" or "value"

    def __post_init__(self) -> None:
        if self.on not in ("ratio", "value"):
            raise ValueError(f"a target is on 'ratio' or 'value', not {self.on!r}")

    def label(self, unit: str = "") -> str:
        if self.on == "ratio":
            return f"≤ {self.limit:g}×"
        return f"≤ {self.limit:g} {unit}".rstrip()


@dataclass
class Row:
    area: str
    name: str
    value: float | None
    baseline: float | None = None
    unit: str = ""
    target: Target | None = None
    baseline_name: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.baseline)

    @property
    def status(self) -> str:
        if self.target is None:
            return ""
        measured = self.ratio if self.target.on == "ratio" else self.value
        if measured is None:
            return NA
        return PASS if measured <= self.target.limit else MISS

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = asdict(self.target) if self.target else None
        data["ratio"] = self.ratio
        data["status"] = self.status
        return data


def fmt(value: float | None, unit: str = "") -> str:
    """Three significant digits, the unit after; '–' for a missing number."""
    if value is None:
        return "–"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        text = f"{value:.3g}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def markdown_table(rows: list[Row]) -> str:
    header = "| area | measurement | edgeopt | baseline | ratio | target | result |"
    lines = [header, "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        base = fmt(r.baseline, r.unit)
        if r.baseline_name and r.baseline is not None:
            base = f"{base} ({r.baseline_name})"
        name = f"{r.name} — {r.note}" if r.note else r.name
        ratio_text = "–" if r.ratio is None else f"{r.ratio:.2f}×"
        target = r.target.label(r.unit) if r.target else ""
        lines.append(
            f"| {r.area} | {_cell(name)} | {fmt(r.value, r.unit)} | {_cell(base)} | {ratio_text} | {target} "
            f"| {r.status} |"
        )
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def verdict(rows: list[Row]) -> str:
    with_target = [r for r in rows if r.target is not None]
    passed = sum(r.status == PASS for r in with_target)
    missed = [r.name for r in with_target if r.status == MISS]
    na = [r.name for r in with_target if r.status == NA]
    text = f"targets: {passed}/{len(with_target)} PASS"
    if missed:
        text += f"; MISS: {', '.join(missed)}"
    if na:
        text += f"; not measured: {', '.join(na)}"
    return text


# --------------------------------------------------------------------------- results file


def results_path(directory: Path, when: datetime | None = None, *, quick: bool = False) -> Path:
    """``<dir>/<UTC date>.json``; quick runs go to ``<UTC date>.quick.json`` so they never clobber a full run."""
    when = when or datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise ValueError("a naive datetime has no UTC date; pass an aware one")
    day = when.astimezone(timezone.utc).strftime("%Y-%m-%d")
    return Path(directory) / f"{day}{'.quick' if quick else ''}.json"


@dataclass
class AreaResult:
    """What one benchmark area hands back: table rows plus everything it measured, for the file."""

    area: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.as_dict() for r in self.rows],
            "details": self.details,
            "error": self.error,
            "seconds": round(self.seconds, 1),
        }


def merge_results(existing: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
    """A day's file keeps every area: a run with ``--only`` replaces just the areas it ran."""
    merged = dict(existing or {})
    areas = dict(merged.get("areas") or {})
    areas.update(run.get("areas") or {})
    merged.update({k: v for k, v in run.items() if k != "areas"})
    merged["areas"] = areas
    return merged


def write_results(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Merge into the day's file and replace it atomically (a crash leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = None
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            existing = None
    data = merge_results(existing, run)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return data
