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
class Point:
    """One measured point for the chart: a model on a runtime at a batch size and concurrency.

    ``runtime`` is what a reader compares ("in-process TF", "Triton gRPC",
    "onnxruntime"); the chart gives each runtime one colour across panels.
    ``per_second`` counts inferences (samples), not requests: batch 8 at 100
    requests/s is 800.
    """

    model: str
    runtime: str
    batch: int = 1
    concurrency: int = 1
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    per_second: float | None = None
    area: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Point:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


@dataclass
class AreaResult:
    """What one benchmark area hands back: table rows, chart points and everything else it measured.

    The whole API for a new area: ``result.row(...)`` (or ``rows.append(Row(...))``)
    for the table, ``result.point(...)`` for the chart, ``result.details`` for
    the JSON only (per-stage times, raw samples, CSV paths).
    """

    area: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    points: list[Point] = field(default_factory=list)

    def row(
        self,
        name: str,
        value: float | None,
        baseline: float | None = None,
        unit: str = "",
        *,
        target: Target | None = None,
        baseline_name: str = "",
        note: str = "",
    ) -> Row:
        """Add a table row of this area and return it."""
        r = Row(self.area, name, value, baseline, unit, target, baseline_name, note)
        self.rows.append(r)
        return r

    def point(
        self,
        model: str,
        runtime: str,
        *,
        batch: int = 1,
        concurrency: int = 1,
        p50_ms: float | None = None,
        p90_ms: float | None = None,
        p99_ms: float | None = None,
        per_second: float | None = None,
    ) -> Point:
        """Add a chart point: latency panels use concurrency 1, throughput curves every concurrency."""
        p = Point(model, runtime, batch, concurrency, p50_ms, p90_ms, p99_ms, per_second, self.area)
        self.points.append(p)
        return p

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.as_dict() for r in self.rows],
            "points": [p.as_dict() for p in self.points],
            "details": self.details,
            "error": self.error,
            "seconds": round(self.seconds, 1),
        }


def points_of(results_file: dict[str, Any]) -> list[Point]:
    """Every area's chart points in a results file (a day's file may merge several runs)."""
    return [Point.from_dict(p) for area in (results_file.get("areas") or {}).values() for p in area.get("points") or []]


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
