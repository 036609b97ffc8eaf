"""The pure parts of bench/: percentiles, ratios, PASS/MISS, the table, results files, the perf_analyzer
CSV parser, chart points and panels, and how areas are found.

No TensorFlow, no cluster, no Triton: the benchmarks themselves are not
tests, but a wrong percentile, a misread CSV or a target that passes on a
missing number would make every table they print wrong.  The perf_analyzer
CSVs in ``data/`` are real files it wrote on this machine (2.51, CPU only).
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.__main__ import AREAS, discover_areas
from bench.audit import client_of as audit_client_of
from bench.audit import counts as audit_counts
from bench.audit import parse_line, phase_summary
from bench.audit import read as audit_read
from bench.audit import timelines as audit_timelines
from bench.chart import chart_path, draw, latency_panels, latest, runtime_colours, throughput_panels
from bench.cluster import delta, parse_request_totals
from bench.perf_analyzer import PerfAnalyzerError, Window, parse_csv
from bench.perf_analyzer import command as pa_command
from bench.perf_analyzer import environment as pa_environment
from bench.report import (
    MISS,
    NA,
    PASS,
    AreaResult,
    Point,
    Row,
    Target,
    markdown_table,
    merge_results,
    points_of,
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


# --------------------------------------------------------------------------- perf_analyzer, chart points, areas

DATA = Path(__file__).parent / "data"


def test_perf_analyzer_csv_from_a_real_run() -> None:
    """The CSV perf_analyzer 2.51 wrote here (count_windows, gRPC, batch 8, concurrency 4): µs -> ms."""
    (m,) = parse_csv((DATA / "perf_analyzer_count_windows_grpc_b8_c4.csv").read_text())
    assert m.concurrency == 4
    assert m.inferences_per_second == pytest.approx(9485.78)
    assert m.latency_ms == {"p50": 3.011, "p90": 3.847, "p95": 4.179, "p99": 9.838}
    assert m.stages_ms["serverQueue"] == pytest.approx(1.902)
    assert m.stages_ms["serverComputeInfer"] == pytest.approx(0.66)


def test_perf_analyzer_csv_keeps_the_optional_average() -> None:
    """Time-windows mode adds Avg latency and two more columns; the same parser reads both shapes."""
    (m,) = parse_csv((DATA / "perf_analyzer_time_windows_http_b1_c2.csv").read_text())
    assert (m.concurrency, m.latency_ms["p99"], m.latency_ms["avg"]) == (2, 9.198, 2.297)


def test_perf_analyzer_csv_that_lacks_a_column_is_an_error() -> None:
    text = (DATA / "perf_analyzer_count_windows_grpc_b8_c4.csv").read_text()
    header, row = text.splitlines()[:2]
    cut = ",".join(header.split(",")[:-1]) + "\n" + ",".join(row.split(",")[:-1]) + "\n"
    with pytest.raises(PerfAnalyzerError, match="p99 latency"):
        parse_csv(cut)
    with pytest.raises(PerfAnalyzerError, match="no measurement rows"):
        parse_csv(header + "\n")


def test_perf_analyzer_command_measures_one_point(tmp_path: Path) -> None:
    cmd = pa_command("m", "127.0.0.1:1", "grpc", 8, 4, window=Window(30), csv_path=tmp_path / "x.csv")
    joined = " ".join(cmd)
    assert "-i grpc" in joined and "-b 8" in joined and "--concurrency-range 4:4" in joined
    assert "--measurement-request-count 30" in joined and f"-f {tmp_path / 'x.csv'}" in joined
    with pytest.raises(ValueError):
        pa_command("m", "u", "rest", 1, 1, window=Window(1), csv_path=tmp_path / "x.csv")


def test_cuda_runtime_goes_on_the_library_path_of_perf_analyzer_only() -> None:
    env = pa_environment({"LD_LIBRARY_PATH": "/already"})
    first, rest = env["LD_LIBRARY_PATH"].split(":", 1)
    assert first.endswith("nvidia/cuda_runtime/lib") and Path(first, "libcudart.so.12").exists()
    assert rest == "/already"


def test_area_api_rows_and_points_reach_the_file() -> None:
    result = AreaResult("onnx")
    row = result.row("mobilenet p50", 1.0, 2.0, "ms", target=Target(1.0), baseline_name="TF")
    result.point("mobilenet", "onnxruntime", batch=8, p50_ms=1.0, p99_ms=1.5)
    data = result.as_dict()
    assert row.area == "onnx" and row.status == PASS
    assert data["rows"][0]["name"] == "mobilenet p50"
    want = Point("mobilenet", "onnxruntime", 8, 1, 1.0, None, 1.5, None, "onnx")
    assert points_of({"areas": {"onnx": data}}) == [want]


def test_chart_panels_group_latency_and_throughput() -> None:
    pts = [
        Point("convbn", "TF", 1, 1, 0.5, None, 0.9, 2000.0),
        Point("convbn", "Triton gRPC", 1, 1, 0.9, None, 2.0, 1000.0),
        Point("convbn", "Triton gRPC", 1, 4, 3.0, None, 6.0, 1300.0),
        Point("convbn", "Triton gRPC", 1, 2, 2.0, None, 4.0, 1200.0),
        Point("resnet50", "TF", 8, 1, 90.0, None, 120.0, None),
        Point("convbn", "TF", 1, 1, 0.4, None, 0.8, 2100.0),  # reported again: the last one wins
    ]
    pts = latest(pts)
    lat = latency_panels(pts)
    assert list(lat) == ["convbn", "resnet50"] and list(lat["resnet50"]) == [8]
    assert lat["convbn"][1]["TF"].p50_ms == 0.4 and set(lat["convbn"][1]) == {"TF", "Triton gRPC"}
    thr = throughput_panels(pts)
    assert list(thr) == [(1, "convbn")]  # resnet50 has no curve (one concurrency, no throughput)
    assert [p.concurrency for p in thr[(1, "convbn")]["Triton gRPC"]] == [1, 2, 4]
    assert runtime_colours(pts)["TF"] != runtime_colours(pts)["Triton gRPC"]
    assert chart_path(Path("r/2026-12-01.quick.json")) == Path("r/2026-12-01.quick.png")


def test_chart_is_a_png_and_nothing_to_draw_writes_nothing(tmp_path: Path) -> None:
    pts = [Point("convbn", "TF", 1, c, 0.5 * c, None, 0.9 * c, 1000.0 * c) for c in (1, 2, 4)]
    out = draw(pts, tmp_path / "c.png", title="t")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert draw([], tmp_path / "none.png", title="t") is None and not (tmp_path / "none.png").exists()


def test_a_new_area_is_a_file_found_without_importing_it(tmp_path: Path) -> None:
    (tmp_path / "onnx_rows.py").write_text('AREA = "onnx"\n\nimport not_installed_here\n\ndef run(ctx):\n    pass\n')
    (tmp_path / "helper.py").write_text('AREA_NOTE = "no"\n')
    (tmp_path / "_private.py").write_text('AREA = "hidden"\ndef run(ctx):\n    pass\n')
    areas = discover_areas(tmp_path)
    assert list(areas)[: len(AREAS)] == list(AREAS)  # the core areas first, in their order
    assert areas["onnx"] == "bench.onnx_rows"
    assert "hidden" not in areas and len(areas) == len(AREAS) + 1
    (tmp_path / "dup.py").write_text('AREA = "serving"\ndef run(ctx):\n    pass\n')
    with pytest.raises(SystemExit, match="declared by both"):
        discover_areas(tmp_path)


def test_the_real_areas_are_discovered() -> None:
    assert {"converter", "serving", "operator", "publish", "onnx", "seed"} <= set(discover_areas())


def test_audit_log_counts_by_client_and_times_each_step() -> None:
    """Real audit lines this API server wrote for one OptimizedModel reconciled by the operator (n=1)."""
    requests = list(audit_read(DATA / "audit_operator_1_resource.jsonl"))
    by_client = audit_counts(requests, "operator-1")
    assert by_client["kopf"] == {"patch optimizedmodels": 3, "create events": 1}  # finalizer, annotations, removal
    assert by_client["operator"] == {
        "list jobs": 2,
        "create configmaps": 1,
        "create jobs": 1,
        "patch optimizedmodels/status": 1,
        "get optimizedmodels": 1,
    }
    assert by_client["controller-manager"] == {
        "get jobs": 1,
        "get configmaps": 1,
        "delete jobs": 1,
        "delete configmaps": 1,
    }
    assert by_client["bench"]["create optimizedmodels"] == 1 and by_client["bench"]["delete optimizedmodels"] == 1
    lines = audit_timelines(requests, "operator-1", ["m000"])
    steps = lines["m000"]
    assert set(steps) == {"kopf", "configmap", "job", "status"}
    assert 0 < steps["kopf"] < steps["configmap"] < steps["job"] < steps["status"] < 1000  # kopf's finalizer first
    summary = phase_summary(lines)
    assert list(summary) == ["→kopf", "→configmap", "→job", "→status"]
    assert summary["→job"]["p50"] == pytest.approx(steps["job"] - steps["configmap"], abs=0.1)


def test_phase_steps_follow_the_order_they_happened() -> None:
    """No finalizer (a delete with no work): kopf's first patch is its annotation after the handler."""
    lines = {
        "a": {"kopf": 1300.0, "configmap": 900.0, "job": 1000.0, "status": 1100.0},
        "b": {"kopf": 1500.0, "configmap": 1000.0, "job": 1150.0, "status": 1300.0},
    }
    summary = phase_summary(lines)
    assert list(summary) == ["→configmap", "→job", "→status", "→kopf"]
    assert summary["→configmap"]["p50"] == pytest.approx(950.0)
    assert summary["→kopf"]["p50"] == pytest.approx(200.0)
    assert all(step["p50"] >= 0 for step in summary.values())


def test_audit_clients_are_told_apart_by_user_agent() -> None:
    assert audit_client_of("kopf/1.45.2") == "kopf"
    assert audit_client_of("OpenAPI-Generator/32.0.1/python") == "operator"
    assert audit_client_of("kube-controller-manager/v1.32.4 (linux/amd64)") == "controller-manager"
    assert audit_client_of("edgeopt-bench") == "bench"
    assert audit_client_of("kubectl/v1.32.4") == "other"
    assert parse_line("not json") is None
    assert parse_line('{"stage": "ResponseStarted", "objectRef": {}}') is None


def test_operator_sizes_default_and_override() -> None:
    from bench.operator_scale import sizes_for

    assert sizes_for(True) == (1, 10)
    assert sizes_for(False) == (1, 10, 100, 500)
    assert sizes_for(False, "500, 100,100") == (100, 500)


def test_operator_rows_put_the_targets_at_100_and_500() -> None:
    from bench.operator_scale import scale_rows

    def round_(p50: float, p99: float, rss: float) -> dict[str, object]:
        return {
            "latencyMs": {"p50": p50, "p99": p99},
            "requestsPerResource": 15.0,
            "rssMiBLoaded": rss,
            "rssMiBPeak": rss + 5,
            "requestsPerResourceByClient": {"kopf": 4.0, "operator": 5.0},
            "phasesMs": {"→kopf": {"p50": 200.0, "p99": 700.0}},
        }

    sizes = (10, 100, 500)
    direct = {n: round_(100.0, 300.0, 0) for n in sizes}
    via = {10: round_(250.0, 900.0, 110), 100: round_(290.0, 1400.0, 130), 500: round_(900.0, 9000.0, 151)}
    via[100]["operatorCpu"] = {"msPerResource": 8.5, "coreShare": 0.93, "windowS": 1.2}
    result = AreaResult("operator")
    scale_rows(result, sizes, direct, via, 108.0)  # type: ignore[arg-type]
    by_name = {r.name: r for r in result.rows}
    assert by_name["reconcile apply → Job created p50, 100 at once"].status == PASS  # 2.9× the floor
    assert by_name["reconcile apply → Job created p99, 100 at once"].status == PASS  # 4.67×
    assert by_name["reconcile apply → Job created p50, 10 at once"].status == ""  # no target off 100
    assert by_name["operator RSS at 500 resources"].status == MISS  # 151 MiB > 150
    assert by_name["operator RSS at 100 resources"].target is None
    assert "→kopf 200" in by_name["reconcile apply → Job created p50, 100 at once"].note
    cpu = "operator CPU 8.5 ms per resource, 93% of one core over the 1.2 s to the last Job"
    assert cpu in by_name["reconcile apply → Job created p50, 100 at once"].note
    assert "operator CPU" not in by_name["reconcile apply → Job created p50, 500 at once"].note  # not measured


def test_interleave_shuffled_varies_who_follows_whom() -> None:
    """A rotation keeps each contender's predecessor; a shuffled order does not (seeded, so repeatable)."""
    order: list[str] = []

    def runs(shuffle_seed: int | None) -> set[tuple[str, str]]:
        order.clear()
        calls = {n: (lambda n=n: order.append(n)) for n in "abcd"}
        samples = interleave(calls, 12, warmup=0, shuffle_seed=shuffle_seed)
        assert all(len(s.ms) == 12 for s in samples.values())
        return set(itertools.pairwise(order))

    rotated, shuffled = runs(None), runs(3)
    assert len(shuffled) > len(rotated)
    assert runs(3) == shuffled
