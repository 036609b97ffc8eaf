"""The pure parts of bench/: percentiles, ratios, PASS/MISS, the table, results file naming and merging.

No TensorFlow, no cluster: the benchmarks themselves are not tests, but a
wrong percentile or a target that passes on a missing number would make
every table they print wrong.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.cluster import delta, parse_request_totals
from bench.report import (
    MISS,
    NA,
    PASS,
    AreaResult,
    Row,
    Target,
    markdown_table,
    merge_results,
    results_path,
    verdict,
    write_results,
)
from bench.stats import interleave, percentile, ratio


def test_percentile_interpolates_like_numpy() -> None:
    data = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(data, 0) == 1.0
    assert percentile(data, 50) == 3.0
    assert percentile(data, 100) == 5.0
    assert percentile(data, 25) == 2.0
    assert percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_ratio_never_invents_a_number() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_ratio_target_pass_and_miss() -> None:
    ok = Row("converter", "latency", 0.9, 1.0, "ms", Target(1.0))
    equal = Row("converter", "latency", 1.0, 1.0, "ms", Target(1.0))
    slow = Row("converter", "latency", 1.1, 1.0, "ms", Target(1.0))
    assert (ok.status, equal.status, slow.status) == (PASS, PASS, MISS)


def test_value_target_ignores_the_baseline() -> None:
    fast = Row("operator", "p50", 40.0, 1.0, "ms", Target(50, "value"))
    slow = Row("operator", "p50", 60.0, 100.0, "ms", Target(50, "value"))
    assert fast.status == PASS and fast.ratio == 40.0
    assert slow.status == MISS


def test_a_missing_measurement_is_not_a_pass() -> None:
    assert Row("serving", "x", None, 1.0, "ms", Target(1.3)).status == NA
    assert Row("serving", "x", 1.0, None, "ms", Target(1.3)).status == NA
    assert Row("serving", "x", 1.0, None, "ms").status == ""


def test_target_kind_is_checked() -> None:
    with pytest.raises(ValueError):
        Target(1.0, "median")


def test_markdown_table_has_ratio_target_and_result() -> None:
    rows = [
        Row("publish", "publish 500 MiB", 1.5, 1.0, "s", Target(1.2), baseline_name="copy+fsync"),
        Row("operator", "RSS | idle", 109.4, None, "MiB", note="no baseline"),
        Row("operator", "p50", 12.0, 3.0, "ms", Target(50, "value")),
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[0] == "| area | measurement | edgeopt | baseline | ratio | target | result |"
    assert len(lines) == 2 + len(rows)
    assert lines[2] == "| publish | publish 500 MiB | 1.5 s | 1 s (copy+fsync) | 1.50× | ≤ 1.2× | MISS |"
    assert "RSS \\| idle — no baseline" in lines[3] and "| – |" in lines[3]
    assert lines[4].endswith("| 4.00× | ≤ 50 ms | PASS |")
    assert verdict(rows) == "targets: 1/2 PASS; MISS: publish 500 MiB"


def test_results_file_is_named_by_utc_date() -> None:
    late_evening_west = datetime(2026, 11, 21, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert results_path(Path("r"), late_evening_west) == Path("r/2026-11-22.json")
    assert results_path(Path("r"), late_evening_west, quick=True) == Path("r/2026-11-22.quick.json")
    with pytest.raises(ValueError):
        results_path(Path("r"), datetime(2026, 11, 21, 12, 0))


def test_a_partial_run_replaces_only_its_areas(tmp_path: Path) -> None:
    path = tmp_path / "2026-11-21.json"
    first = {"quick": False, "areas": {"converter": AreaResult("converter").as_dict(), "publish": {"rows": [1]}}}
    write_results(path, first)
    second = {"quick": False, "started": "later", "areas": {"publish": {"rows": [2]}}}
    data = write_results(path, second)
    assert set(data["areas"]) == {"converter", "publish"}
    assert data["areas"]["publish"] == {"rows": [2]}
    assert data["started"] == "later"
    assert json.loads(path.read_text()) == data
    assert merge_results(None, second)["areas"] == {"publish": {"rows": [2]}}


def test_interleave_alternates_and_counts() -> None:
    order: list[str] = []
    samples = interleave({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 4, warmup=1)
    assert order[:2] == ["a", "b"]  # warm-up
    assert order[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # the order rotates every round
    assert all(len(s.ms) == 4 for s in samples.values())
    assert samples["a"].summary()["n"] == 4


def test_apiserver_request_totals_by_verb_and_resource() -> None:
    text = "\n".join(
        [
            "# TYPE apiserver_request_total counter",
            'apiserver_request_total{code="201",component="apiserver",group="batch",resource="jobs",scope="resource",'
            'subresource="",verb="POST",version="v1"} 3',
            'apiserver_request_total{code="409",component="apiserver",group="batch",resource="jobs",scope="resource",'
            'subresource="",verb="POST",version="v1"} 1',
            'apiserver_request_total{code="200",component="apiserver",group="edgeopt.io",resource="optimizedmodels",'
            'scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 2',
            'apiserver_request_total{code="200",component="apiserver",group="",resource="",scope="",'
            'subresource="/metrics",verb="GET",version=""} 9',
        ]
    )
    totals = parse_request_totals(text)
    assert totals == {"POST jobs": 4, "PATCH optimizedmodels/status": 2}
    assert delta(totals, {"POST jobs": 1}) == {"POST jobs": 3, "PATCH optimizedmodels/status": 2}
