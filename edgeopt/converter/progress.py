"""Progress lines on stderr: readable text for people, one JSON object per line for the cluster.

Standard library only: the command module imports this before TensorFlow loads.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from typing import Any, TextIO


class Progress:
    def __init__(self, fmt: str = "text", stream: TextIO | None = None) -> None:
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def event(self, stage: str, event: str, fields: dict[str, Any] | None = None) -> None:
        fields = dict(fields or {})
        if self.fmt == "json":
            record = {
                "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "elapsed": round(self.elapsed(), 3),
                "level": "error" if event == "failed" else "info",
                "stage": stage,
                "event": event,
                **fields,
            }
            line = json.dumps(record, default=str, separators=(",", ":"))
        else:
            if event == "start":
                text = "started" + (" (" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")" if fields else "")
            elif event in ("done", "failed"):
                extra = ", ".join(
                    f"{k}={v}" for k, v in fields.items() if k not in ("seconds", "peak_rss_mib", "error")
                )
                text = f"{event} in {fields.get('seconds', 0):.2f}s"
                if "peak_rss_mib" in fields:
                    text += f", peak RSS {fields['peak_rss_mib']:.0f} MiB"
                if extra:
                    text += f" ({extra})"
                if "error" in fields:
                    text += f": {fields['error']}"
            else:
                text = event + (": " + ", ".join(f"{k}={v}" for k, v in fields.items()) if fields else "")
            line = f"[{self.elapsed():7.1f}s] {stage:<9} {text}"
        print(line, file=self.stream, flush=True)

    def __call__(self, stage: str, event: str, fields: dict[str, Any]) -> None:
        self.event(stage, event, fields)
