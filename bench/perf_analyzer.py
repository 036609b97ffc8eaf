"""Triton's own ``perf_analyzer``: finding it, running it for one point, reading the CSV it writes.

Triton users judge serving numbers by perf_analyzer, so the serving rows
come from it.  The binary ships inside the tritonclient 2.51 wheel (it lands
in the venv's ``bin/``); it needs two shared libraries the wheel does not
carry: ``libb64.so.0d`` (Debian's ``libb64-0d``) and ``libcudart.so.12``
(PyPI's ``nvidia-cuda-runtime-cu12``; no GPU is needed, it only has to load).
``make bench`` installs both.  The CUDA runtime's ``lib/`` goes on
``LD_LIBRARY_PATH`` for the perf_analyzer process only, never for this
process or Triton.

One call measures one (model, protocol, batch, concurrency) point, so the
serving area can interleave it with the in-process baseline.  The CSV
(``-f``) has one row per concurrency, latencies in microseconds;
:func:`parse_csv` turns it into milliseconds.  Standard library only: the
parser is unit-tested on a CSV that perf_analyzer wrote on this machine.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("http", "grpc")

#: CSV column -> key in :class:`Point` detail (all in microseconds in the CSV).
_LATENCY_COLUMNS = {
    "p50 latency": "p50",
    "p90 latency": "p90",
    "p95 latency": "p95",
    "p99 latency": "p99",
}
#: Present in some modes only (time windows without --input-data): kept when there.
_OPTIONAL_LATENCY = {"Avg latency": "avg"}
_STAGE_COLUMNS = {
    "Client Send": "clientSend",
    "Network+Server Send/Recv": "networkServerSendRecv",
    "Server Queue": "serverQueue",
    "Server Compute Input": "serverComputeInput",
    "Server Compute Infer": "serverComputeInfer",
    "Server Compute Output": "serverComputeOutput",
    "Client Recv": "clientRecv",
}


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer is missing, cannot start, or failed a measurement; the message says which and the fix."""


@dataclass(frozen=True)
class Measurement:
    """One CSV row: throughput in inferences/s (requests × batch), latencies and stages in ms."""

    concurrency: int
    inferences_per_second: float
    latency_ms: dict[str, float]
    stages_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "inferencesPerSecond": self.inferences_per_second,
            "latencyMs": self.latency_ms,
            "stagesMs": self.stages_ms,
        }


def parse_csv(text: str) -> list[Measurement]:
    """perf_analyzer's ``-f`` CSV -> one :class:`Measurement` per concurrency row.

    A CSV without the columns we read (another perf_analyzer mode, a
    truncated file) is an error naming the missing column, never zeros.
    """
    reader = csv.DictReader(io.StringIO(text))
    needed = ["Concurrency", "Inferences/Second", *_LATENCY_COLUMNS]
    missing = [c for c in needed if c not in (reader.fieldnames or [])]
    if missing:
        raise PerfAnalyzerError(f"perf_analyzer CSV lacks column(s) {missing}; header was {reader.fieldnames}")
    out = []
    for row in reader:
        if not (row.get("Concurrency") or "").strip():
            continue
        out.append(
            Measurement(
                concurrency=int(row["Concurrency"]),
                inferences_per_second=float(row["Inferences/Second"]),
                latency_ms={
                    key: int(row[col]) / 1000
                    for col, key in {**_LATENCY_COLUMNS, **_OPTIONAL_LATENCY}.items()
                    if row.get(col)
                },
                stages_ms={key: int(row[col]) / 1000 for col, key in _STAGE_COLUMNS.items() if row.get(col)},
            )
        )
    if not out:
        raise PerfAnalyzerError("perf_analyzer CSV has a header and no measurement rows")
    return out


# --------------------------------------------------------------------------- running it


def binary() -> Path:
    """The perf_analyzer that the tritonclient wheel put next to this interpreter."""
    here = Path(sys.executable).parent / "perf_analyzer"
    found = here if here.is_file() else (Path(p) if (p := shutil.which("perf_analyzer")) else None)
    if found is None:
        raise PerfAnalyzerError(
            "perf_analyzer not found next to this Python or on PATH; it ships in the tritonclient 2.51 wheel "
            "(pip install 'tritonclient[http,grpc]==2.51.0', or make bench)"
        )
    return found


def cuda_runtime_lib() -> Path:
    """``nvidia/cuda_runtime/lib`` from the nvidia-cuda-runtime-cu12 wheel (holds libcudart.so.12)."""
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise PerfAnalyzerError(
            "perf_analyzer needs libcudart.so.12 (no GPU needed): pip install nvidia-cuda-runtime-cu12, "
            "or make bench (the bench extra pins it)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus the CUDA runtime on LD_LIBRARY_PATH: for perf_analyzer only."""
    env = dict(os.environ if base is None else base)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(cuda_runtime_lib()), env.get("LD_LIBRARY_PATH")) if p)
    return env


def check_runs() -> str:
    """Start it once (``--version``); a missing library becomes the apt/pip command that fixes it."""
    proc = subprocess.run([str(binary()), "--version"], env=environment(), capture_output=True, text=True, timeout=60)
    text = (proc.stdout + proc.stderr).strip()
    if "libb64" in text:
        raise PerfAnalyzerError(f"perf_analyzer cannot load libb64.so.0d: apt-get install libb64-0d ({text[-200:]})")
    if "libcudart" in text:
        raise PerfAnalyzerError(
            f"perf_analyzer cannot load libcudart.so.12: pip install nvidia-cuda-runtime-cu12 " f"({text[-200:]})"
        )
    if proc.returncode != 0:
        raise PerfAnalyzerError(f"perf_analyzer --version exited {proc.returncode}: {text[-400:]}")
    return text.splitlines()[-1] if text else ""


@dataclass(frozen=True)
class Window:
    """How long one point is measured: three windows of ``requests`` each (count_windows mode).

    perf_analyzer's stability check (3 windows within ``stability_percent``)
    is off by default: on these shared 2-core machines latency swings 2-3×
    from second to second, a 50 % check failed the run ("Failed to obtain
    stable measurement"), and what makes the comparison fair is running the
    in-process baseline right next to it, not a quiet machine.  A lower
    percentage turns the check back on (a quiet machine, a real GPU node).
    """

    requests: int
    max_trials: int = 3
    stability_percent: int = 1000


def command(
    model: str,
    url: str,
    protocol: str,
    batch: int,
    concurrency: int,
    *,
    window: Window,
    csv_path: Path,
    input_data: Path | None = None,
) -> list[str]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol is one of {PROTOCOLS}, not {protocol!r}")
    cmd = [
        str(binary()),
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "-b",
        str(batch),
        "--concurrency-range",
        f"{concurrency}:{concurrency}",
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        str(window.requests),
        "--max-trials",
        str(window.max_trials),
        "--stability-percentage",
        str(window.stability_percent),
        "-f",
        str(csv_path),
    ]
    if input_data is not None:
        cmd += ["--input-data", str(input_data)]
    return cmd


def measure(
    model: str,
    url: str,
    protocol: str,
    batch: int,
    concurrency: int,
    *,
    window: Window,
    workdir: Path,
    input_data: Path | None = None,
    timeout: float = 900.0,
) -> tuple[Measurement, Path]:
    """One point; returns the measurement and the CSV it came from (kept for the results)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"{model}-{protocol}-b{batch}-c{concurrency}"
    csv_path, log_path = workdir / f"{stem}.csv", workdir / f"{stem}.log"
    cmd = command(model, url, protocol, batch, concurrency, window=window, csv_path=csv_path, input_data=input_data)
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, env=environment(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0 or not csv_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
        raise PerfAnalyzerError(f"perf_analyzer {stem} exited {proc.returncode}; {log_path} ends:\n{tail}")
    (row,) = [m for m in parse_csv(csv_path.read_text()) if m.concurrency == concurrency]
    return row, csv_path


def write_input_data(path: Path, inputs: dict[str, Any]) -> Path:
    """perf_analyzer ``--input-data`` JSON holding the first sample of ``inputs`` (the batch dim dropped).

    perf_analyzer repeats it to fill each batch, so Triton sees the same
    values the in-process baseline computes on.
    """
    import json

    step = {}
    for name, array in inputs.items():
        sample = array[0]
        step[name] = {"content": [float(v) for v in sample.reshape(-1)], "shape": list(sample.shape)}
    path.write_text(json.dumps({"data": [step]}))
    return path
