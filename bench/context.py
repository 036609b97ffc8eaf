"""What every area gets: the mode, a scratch dir, a logger, and a cache of prepared models.

Converting MobileNetV2 takes a while; the serving area reuses what the
converter area already converted in the same run instead of doing it again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Context:
    quick: bool
    workdir: Path
    cache: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:7.1f}s] {message}", file=sys.stderr, flush=True)

    def dir(self, *parts: str) -> Path:
        path = self.workdir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception as exc:  # clean-up is best effort; say what was left
                self.log(f"clean-up failed: {exc}")
