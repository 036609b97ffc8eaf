"""Publishing: ``publish_version`` of a big artefact against a plain copy of the same bytes, fsync included.

The artefact is random bytes shaped like a SavedModel (a small
``saved_model.pb``, ``variables/variables.index`` and one big data shard), so
the publisher does its real work (staging dir, per-file and per-dir fsync,
rename, config.pbtxt, model.py, report.json) on a realistic size.  The
baseline copies the same files and fsyncs each one and the target dir: the
least any durable publish must do.  Rounds alternate which goes first, each
into a fresh directory that is removed before the next round, so both read
the source from the same (warm) page cache.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from bench.context import Context
from bench.report import AreaResult, Row, Target
from bench.stats import percentile

AREA = "publish"
MIB = 1024 * 1024
CHUNK = 8 * MIB


def write_fake_savedmodel(directory: Path, size_mib: int) -> int:
    """Random (incompressible) bytes in a SavedModel-shaped dir; returns the total size in bytes."""
    rng_bytes = os.urandom
    (directory / "variables").mkdir(parents=True, exist_ok=True)
    (directory / "saved_model.pb").write_bytes(rng_bytes(256 * 1024))
    (directory / "variables" / "variables.index").write_bytes(rng_bytes(64 * 1024))
    remaining = size_mib * MIB - 320 * 1024
    with open(directory / "variables" / "variables.data-00000-of-00001", "wb") as fh:
        while remaining > 0:
            n = min(CHUNK, remaining)
            fh.write(rng_bytes(n))
            remaining -= n
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def plain_copy(src: Path, dst: Path) -> None:
    """Copy every file, fsync each, then fsync every directory: durable, nothing more."""
    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            out = target / name
            shutil.copyfile(Path(root) / name, out)
            fd = os.open(out, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for root, _dirs, _files in os.walk(dst, topdown=False):
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def run(ctx: Context) -> AreaResult:
    from edgeopt.artifact import Artifact, TensorInfo
    from edgeopt.spec import parse_manifest
    from edgeopt.triton.publish import publish_version

    size_mib = 20 if ctx.quick else 500
    rounds = 3 if ctx.quick else 4
    base = ctx.dir("publish")
    src = base / "artefact" / "model.savedmodel"
    ctx.log(f"publish: writing {size_mib} MiB of random bytes as a SavedModel-shaped dir")
    total = write_fake_savedmodel(src, size_mib)
    artifact = Artifact(
        savedmodel_dir=src,
        signature_key="serving_default",
        inputs=[TensorInfo("x", "FP32", [-1, 224, 224, 3])],
        outputs=[TensorInfo("y", "FP32", [-1, 1000])],
        report={"bench": "publish"},
    )

    def model_for(repo: Path) -> object:
        return parse_manifest(
            {
                "apiVersion": "edgeopt.io/v1alpha1",
                "kind": "OptimizedModel",
                "metadata": {"name": "big"},
                "spec": {
                    "source": {"uri": "file:///unused", "format": "SavedModel"},
                    "tensorrt": {"enabled": False},
                    "target": {"repository": f"file://{repo}", "modelName": "big", "backend": "python"},
                },
            }
        )

    def publish_once(i: int) -> float:
        repo = base / f"repo-{i}"
        model = model_for(repo)
        t0 = time.perf_counter()
        publish_version(artifact, model, repository=repo)  # type: ignore[arg-type]
        took = time.perf_counter() - t0
        shutil.rmtree(repo)
        return took

    def copy_once(i: int) -> float:
        dst = base / f"copy-{i}"
        t0 = time.perf_counter()
        plain_copy(src, dst)
        took = time.perf_counter() - t0
        shutil.rmtree(dst)
        return took

    # A first unmeasured pass of each warms the page cache and the allocator alike.
    publish_once(-1)
    copy_once(-1)
    times: dict[str, list[float]] = {"publish": [], "copy": []}
    for i in range(rounds):
        order = [("publish", publish_once), ("copy", copy_once)]
        if i % 2:
            order.reverse()
        for name, fn in order:
            times[name].append(fn(i))
            os.sync()  # let the flush of one side not land on the other's clock
    shutil.rmtree(base / "artefact", ignore_errors=True)
    med = {k: percentile(v, 50) for k, v in times.items()}
    mib_s = {k: total / MIB / v for k, v in med.items()}
    ctx.log(f"publish: {times}")
    result = AreaResult(AREA)
    result.details = {
        "bytes": total,
        "rounds": rounds,
        "seconds": times,
        "medianSeconds": med,
        "throughputMiBs": mib_s,
    }
    label = f"{total / MIB:.0f} MiB"
    result.rows.append(
        Row(
            AREA,
            f"publish_version {label} (median of {rounds}, interleaved)",
            med["publish"],
            med["copy"],
            "s",
            Target(1.2),
            baseline_name="copy+fsync",
        )
    )
    result.rows.append(
        Row(AREA, f"publish throughput {label}", mib_s["publish"], mib_s["copy"], "MiB/s", baseline_name="copy+fsync")
    )
    return result
