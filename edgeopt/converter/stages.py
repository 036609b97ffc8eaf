"""Named, timed pipeline stages: wall time and peak RSS per stage.

``resource.getrusage`` only knows the process-wide peak, which never goes
down, so a sampling thread (psutil, every 20 ms) records each stage's own
peak; the process-wide peak is reported alongside.  Each stage's record goes
into report.json, and the progress callback hears start and end.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

MIB = 1024 * 1024

#: ``on_event(stage, event, fields)`` — event is "start", "done" or "failed".
ProgressCallback = Callable[[str, str, dict[str, Any]], None]


@dataclass
class StageRecord:
    name: str
    status: str = "running"  # running | ok | failed | skipped
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    rss_mib_after: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def as_report(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["peak_rss_mib"] = round(self.peak_rss_mib, 1)
        data["rss_mib_after"] = round(self.rss_mib_after, 1)
        return data


def current_rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / MIB


def process_peak_rss_mib() -> float:
    """Lifetime peak of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.interval = interval
        self.peak = current_rss_mib()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, current_rss_mib())

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, current_rss_mib())
        return self.peak


class StageLog:
    """Runs stages in order and keeps their records; the report is built from it."""

    def __init__(self, on_event: ProgressCallback | None = None) -> None:
        self.records: list[StageRecord] = []
        self.on_event = on_event
        self.started = time.monotonic()

    def _emit(self, stage: str, event: str, fields: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(stage, event, fields)

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        record = StageRecord(name)
        self.records.append(record)
        self._emit(name, "start", {})
        sampler = _RssSampler()
        sampler.start()
        t0 = time.monotonic()
        try:
            yield record
        except BaseException as exc:
            record.status = "failed"
            record.details.setdefault("error", str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
            raise
        else:
            record.status = "ok"
        finally:
            record.seconds = time.monotonic() - t0
            record.peak_rss_mib = sampler.stop()
            record.rss_mib_after = current_rss_mib()
            fields: dict[str, Any] = {
                "seconds": round(record.seconds, 3),
                "peak_rss_mib": round(record.peak_rss_mib, 1),
            }
            fields.update({k: v for k, v in record.details.items() if isinstance(v, (int, float, str, bool))})
            self._emit(name, "done" if record.status == "ok" else "failed", fields)

    def skip(self, name: str, why: str) -> None:
        self.records.append(StageRecord(name, status="skipped", details={"reason": why}))
        self._emit(name, "skipped", {"reason": why})

    def elapsed(self) -> float:
        return time.monotonic() - self.started
