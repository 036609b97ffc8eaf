"""Stage timing/RSS records and the progress lines people and the cluster read. No TensorFlow."""

from __future__ import annotations

import io
import json
import mmap
import time

import pytest

from edgeopt.converter.progress import Progress
from edgeopt.converter.stages import StageLog, current_rss_mib


def test_stage_log_times_and_measures_each_stage_and_marks_failures() -> None:
    events: list[tuple[str, str, dict[str, object]]] = []
    log = StageLog(lambda stage, event, fields: events.append((stage, event, fields)))
    before = current_rss_mib()
    with log.stage("load") as rec:
        # An anonymous mapping, written: RSS really grows, and closing it really gives the pages back
        # (a freed Python object may stay in the allocator's arenas once TensorFlow's allocator is loaded).
        block = mmap.mmap(-1, 96 * 1024 * 1024)
        chunk = b"x" * (1024 * 1024)
        for _ in range(96):
            block.write(chunk)
        time.sleep(0.2)  # let the sampler see it
        rec.details["ops"] = 4
        block.close()
    with pytest.raises(ValueError, match="boom"), log.stage("freeze"):
        raise ValueError("boom\nsecond line")
    log.skip("tftrt", "disabled")
    load, freeze, trt = log.records
    assert (load.status, freeze.status, trt.status) == ("ok", "failed", "skipped")
    assert load.peak_rss_mib >= before + 90, (before, load.peak_rss_mib)
    assert load.rss_mib_after < load.peak_rss_mib - 50  # the peak is the stage's, not the end state
    assert freeze.details["error"] == "boom"
    assert [(s, e) for s, e, _ in events] == [
        ("load", "start"),
        ("load", "done"),
        ("freeze", "start"),
        ("freeze", "failed"),
        ("tftrt", "skipped"),
    ]
    assert events[1][2]["ops"] == 4 and "seconds" in events[1][2]
    assert load.as_report()["name"] == "load"


def test_text_progress_shows_elapsed_time_and_stage() -> None:
    out = io.StringIO()
    p = Progress("text", out)
    p.event("load", "start", {})
    p.event("load", "done", {"seconds": 1.234, "peak_rss_mib": 512.0, "ops": 22})
    p.event("freeze", "failed", {"seconds": 0.5, "error": "checkpoint is corrupt"})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[") and "s] load" in lines[0] and "started" in lines[0]
    assert "done in 1.23s, peak RSS 512 MiB (ops=22)" in lines[1]
    assert lines[2].endswith("failed in 0.50s: checkpoint is corrupt")


def test_json_progress_is_one_object_per_line() -> None:
    out = io.StringIO()
    p = Progress("json", out)
    p.event("optimize", "done", {"seconds": 0.1, "ops": 3})
    p.event("convert", "failed", {"reason": "InvalidInput", "error": "x"})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["stage"] == "optimize" and first["event"] == "done" and first["ops"] == 3
    assert first["level"] == "info" and "elapsed" in first and first["ts"].endswith("+00:00")
    assert second["level"] == "error" and second["reason"] == "InvalidInput"
