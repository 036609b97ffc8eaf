"""Conversions queued per resource class: CPU conversions behind GPU ones that cannot schedule (issue 21).

The dev node has no GPU, so a conversion that asks for one stays Unschedulable, as behind a
cluster's busy GPUs. Two rounds with the operator's defaults (one GPU slot, four CPU slots), run
side by side on one control plane:

* *alone*: N CPU-only conversions of the toy model (examples/add-checkpoint-cpu.yaml) applied at
  once; the time until all N are Ready.
* *behind*: M GPU conversions applied first, then the same N CPU ones; the time until those N are
  Ready. Before slots per class, the first GPU conversion held the only slot until its deadline
  (an hour by default) and no CPU conversion started.

The ratio behind/alone should be about 1. ``--quick``: N=4, M=2; full: N=20, M=5.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import yaml

from bench import cluster
from bench.context import Context
from bench.operator_scale import GROUP, PLURAL, VERSION, Bench
from bench.report import AreaResult, Target

AREA = "queueing"
REPO_ROOT = Path(__file__).resolve().parents[1]
#: behind / alone: "about the time it takes alone".
TARGET_RATIO = 1.5
GPU = {"resources": {"limits": {"nvidia.com/gpu": 1}}}


def doc_for(name: str, *, gpu: bool) -> dict[str, Any]:
    doc = copy.deepcopy(yaml.safe_load((REPO_ROOT / "examples" / "add-checkpoint-cpu.yaml").read_text()))
    doc["metadata"] = {"name": name}
    doc["spec"]["target"]["modelName"] = name
    if gpu:
        doc["spec"]["converter"] = copy.deepcopy(GPU)
    return dict(doc)


def phase_ready(bench: Bench, ns: str, name: str) -> bool:
    obj = bench.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    st = obj.get("status") or {}
    if st.get("phase") == "Failed":
        ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
        raise cluster.Abort(f"{name} Failed ({ready.get('reason')}): {ready.get('message')}")
    return st.get("phase") == "Ready"


def round_seconds(bench: Bench, ns: str, cpu: int, gpu: int) -> float:
    """Apply ``gpu`` GPU conversions, then ``cpu`` CPU ones; seconds from the first CPU apply until all are Ready."""
    for i in range(gpu):
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc_for(f"{ns}-gpu-{i}", gpu=True))
    names = [f"{ns}-cpu-{i}" for i in range(cpu)]
    t0 = time.monotonic()
    for name in names:
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc_for(name, gpu=False))
    cluster.poll(
        f"{cpu} CPU conversions in {ns} to be Ready",
        lambda: all(phase_ready(bench, ns, n) for n in names),
        300 + 60 * cpu,
        interval=1.0,
    )
    return time.monotonic() - t0


def prepare(ctx: Context, bench: Bench, ns: str) -> str:
    from bench.models import samples

    bench.namespace(ns)
    for claim in ("models", "triton-models"):
        bench.core.create_namespaced_persistent_volume_claim(
            ns,
            {
                "metadata": {"name": claim},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
    target = bench.cp.pvc_dir("models") / "add"
    if not (target / "checkpoint").exists():
        samples("add", "--dir", str(target), log=ctx.dir("logs") / "samples-queue.log")
    return ns


def run(ctx: Context) -> AreaResult:
    cpu, gpu = (4, 2) if ctx.quick else (20, 5)
    result = AreaResult(AREA)
    # Its own cluster folder: the operator area's control plane (if that area ran) stays up until the end.
    bench = Bench(ctx, cluster="queue-cluster")
    bench.install_crd()
    # The operator's defaults for slots (1 per GPU kind, 4 without a GPU); the rest as the operator bench.
    bench.start_operator(EDGEOPT_MAX_CONCURRENT_CONVERSIONS="1", EDGEOPT_MAX_CONCURRENT_CPU_CONVERSIONS="4")
    alone = round_seconds(bench, prepare(ctx, bench, "alone"), cpu, 0)
    ctx.log(f"queueing: {cpu} CPU conversions alone: all Ready in {alone:.1f}s")
    behind = round_seconds(bench, prepare(ctx, bench, "behind"), cpu, gpu)
    ctx.log(f"queueing: {cpu} CPU conversions behind {gpu} Unschedulable GPU ones: all Ready in {behind:.1f}s")
    result.details = {"cpu": cpu, "gpu": gpu, "aloneSeconds": alone, "behindSeconds": behind}
    result.row(
        f"{cpu} CPU conversions Ready, behind {gpu} GPU ones that cannot schedule",
        behind,
        alone,
        "s",
        target=Target(TARGET_RATIO),
        baseline_name="the same applied alone",
    )
    return result
