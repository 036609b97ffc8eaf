"""A client that sends requests back to back, for the zero-downtime tests (Triton and operator).

No retries: every request is one attempt, so a failure is a failure. The
timeout is generous on purpose and the slowest request is reported: Triton
2.51's HTTP frontend handles a model load on one of its worker threads for
the load's whole duration, so a request whose connection lands on that thread
waits for the load (triton-inference-server/server#8117, #8958) - slow, not
failed, and it is measured (``slowest``) rather than hidden.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edgeopt.triton.client import RetryPolicy, TritonClient

X = np.array([[1.0]], dtype=np.float32)


@dataclass
class RequestLoop:
    """Requests back to back from one thread, bounded in time and count; records every answer."""

    url: str
    model: str
    timeout: float = 120.0
    max_seconds: float = 180.0
    max_requests: int = 200_000
    answers: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: monotonic start time of each failed request, and of each answer
    failed_at: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    #: (seconds, monotonic send time) of the slowest request
    slowest: tuple[float, float] = (0.0, 0.0)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RequestLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        client = TritonClient(self.url, timeout=self.timeout, retry=RetryPolicy(attempts=1))
        ends = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < ends and self.count < self.max_requests:
            sent = time.monotonic()
            try:
                self.answers.append(float(client.infer(self.model, {"x": X})["y"].reshape(-1)[0]))
                self.answered_at.append(sent)
            except Exception as exc:
                self.failures.append(str(exc)[:300])
                self.failed_at.append(sent)
            took = time.monotonic() - sent
            if took > self.slowest[0]:
                self.slowest = (took, sent)

    @property
    def count(self) -> int:
        return len(self.answers) + len(self.failures)

    def wait_for(self, n: int, timeout: float = 30) -> None:
        ends = time.monotonic() + timeout
        while self.count < n and time.monotonic() < ends:
            time.sleep(0.01)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)
