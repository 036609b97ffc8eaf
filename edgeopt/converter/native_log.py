"""Keep TensorFlow's own log out of the converter's output, unless ``--verbose``.

TensorFlow's C++ side (Grappler's ``E ... remapper failed``, the CPU feature
notice, absl's ``I0000`` lines) writes straight to file descriptor 2, past
``TF_CPP_MIN_LOG_LEVEL`` and Python's ``sys.stderr``; its Python side adds
deprecation notices and Keras warnings.  Right or wrong, the conversion's
result does not depend on them, and on a correct conversion they only alarm.
So while the converter runs, fd 2 goes to a temporary file and the progress
lines go to the real stderr.  On a failure, the error lines TensorFlow wrote
are kept (``error_lines``) for the failure report: what TF says on a real
failure still reaches the user.

Standard library only: the command module imports this before TensorFlow loads.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TextIO

#: A line at error level: absl/TF C++ (``E0000 00:00:... file.cc:12] ...``, ``F...``), Python logging.
ERROR_LINE = re.compile(r"^(?:[EF]\d{4} |ERROR:|CRITICAL:|\S*Error: )")
#: Lines TensorFlow writes at error level on conversions that are right (seen on the model zoo).
NOISE = ("remapper failed", "cpu_feature_guard", "oneDNN custom operations")
#: How many error lines a failure report keeps (the last ones: the nearest to the failure).
KEEP_LINES = 10


class NativeLog:
    """Where fd 2 went while the converter ran; ``error_lines`` reads it back."""

    def __init__(self, sink: IO[bytes] | None) -> None:
        self._sink = sink

    def error_lines(self) -> list[str]:
        if self._sink is None:
            return []
        self._sink.flush()
        self._sink.seek(0)
        lines = self._sink.read().decode("utf-8", "replace").splitlines()
        errors = [ln.strip()[:400] for ln in lines if ERROR_LINE.match(ln) and not any(n in ln for n in NOISE)]
        return list(dict.fromkeys(errors))[-KEEP_LINES:]


@contextmanager
def captured(enabled: bool = True) -> Iterator[tuple[NativeLog, TextIO]]:
    """While inside, fd 2 writes to a temporary file; yields it and a stream to the real stderr."""
    if not enabled:
        yield NativeLog(None), sys.stderr
        return
    sys.stderr.flush()
    real_fd = os.dup(2)
    real = os.fdopen(real_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield NativeLog(sink), real
        finally:
            sys.stderr.flush()
            os.dup2(real_fd, 2)
            real.close()
