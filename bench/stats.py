"""Percentiles, ratios and interleaved timing: the arithmetic every area shares.

Standard library only, so the unit tests can check it without TensorFlow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    Few samples make a high percentile close to the maximum; the results file
    keeps the sample count next to every percentile so a reader can judge.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is zero (no made-up infinities)."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


@dataclass
class Samples:
    """Timings of one side of a comparison, in milliseconds."""

    name: str
    ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        if not self.ms:
            return {"n": 0}
        return {
            "n": len(self.ms),
            "p50": round(percentile(self.ms, 50), 4),
            "p99": round(percentile(self.ms, 99), 4),
            "mean": round(sum(self.ms) / len(self.ms), 4),
            "min": round(min(self.ms), 4),
            "max": round(max(self.ms), 4),
        }


def interleave(
    contenders: dict[str, Callable[[], object]],
    iterations: int,
    *,
    warmup: int = 3,
    shuffle_seed: int | None = None,
    gap_s: float = 0.0,
) -> dict[str, Samples]:
    """Time each callable ``iterations`` times, alternating between them call by call.

    The order rotates every round, so neither side always runs first (caches,
    turbo, a neighbour's burst of load hit both alike).  A rotation keeps who
    runs *after* whom; with more than two contenders whose runtimes keep their
    threads spinning after a call (ONNX Runtime, OpenVINO), ``shuffle_seed``
    draws a fresh order each round and ``gap_s`` idles between calls, so no
    contender always inherits the same neighbour's spinning threads.
    """
    import random

    names = list(contenders)
    rng = random.Random(shuffle_seed) if shuffle_seed is not None else None
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    out = {name: Samples(name) for name in names}
    for i in range(iterations):
        shift = i % len(names)
        order = names[shift:] + names[:shift]
        if rng is not None:
            rng.shuffle(order)
        for name in order:
            if gap_s:
                time.sleep(gap_s)
            t0 = time.perf_counter()
            contenders[name]()
            out[name].ms.append((time.perf_counter() - t0) * 1000)
    return out
