"""The benchmark models, built here (edgeopt_dev.samples, no downloads) and converted by the real CLI.

Conversions run ``edgeopt convert -f`` in a subprocess, exactly as the Job
does, so the per-stage peak RSS in its report is the converter's own and not
this process's (which holds other models for the latency runs).

"Original" is what a user had before edgeopt: the Keras SavedModel as
exported; for the two graph formats (a checkpoint and a frozen GraphDef,
which TensorFlow cannot serve as they are) it is the same pipeline with no
optimize transforms, i.e. the frozen graph wrapped as a SavedModel the same
way, so the comparison isolates what the optimizer did.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.context import Context


@dataclass(frozen=True)
class ModelCase:
    name: str
    kind: str  # add | convbn | keras
    architecture: str = ""
    input_size: int = 0
    iterations: int = 200  # latency samples per side and batch size

    @property
    def label(self) -> str:
        return f"{self.name}@{self.input_size}" if self.input_size else self.name


@dataclass
class Prepared:
    case: ModelCase
    source_dir: Path
    original: Path  # SavedModel dir
    artefact: Path  # converter --output dir (model.savedmodel/, report.json, signature.json)
    report: dict[str, Any] = field(default_factory=dict)
    baseline_report: dict[str, Any] | None = None

    @property
    def optimized(self) -> Path:
        return self.artefact / "model.savedmodel"


def cases(quick: bool) -> list[ModelCase]:
    if quick:
        return [
            ModelCase("add", "add", iterations=60),
            ModelCase("convbn", "convbn", iterations=60),
            ModelCase("mobilenetv2", "keras", "mobilenetv2", 64, iterations=20),
        ]
    return [
        ModelCase("add", "add", iterations=400),
        ModelCase("convbn", "convbn", iterations=400),
        ModelCase("mobilenetv2", "keras", "mobilenetv2", 224, iterations=60),
        ModelCase("resnet50", "keras", "resnet50", 224, iterations=30),
    ]


def cli(*args: str, log: Path, timeout: float = 1800, env: dict[str, str] | None = None) -> str:
    """Run ``edgeopt ARGS`` with this interpreter; stderr goes to ``log``; raise with its tail on failure."""
    return _command("edgeopt", args, log=log, timeout=timeout, env=env)


def samples(*args: str, log: Path, timeout: float = 1800) -> str:
    """Run ``edgeopt-dev samples ARGS`` (the harness's script) as ``cli`` runs ``edgeopt``."""
    return _command("edgeopt-dev", ("samples", *args), log=log, timeout=timeout, env=None)


def _command(program: str, args: tuple[str, ...], *, log: Path, timeout: float, env: dict[str, str] | None) -> str:
    module = {"edgeopt": "edgeopt.cli", "edgeopt-dev": "edgeopt_dev.cli"}[program]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=err, timeout=timeout, env=env
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{program} {' '.join(args[:2])} exited {proc.returncode}; {log} ends:\n{tail}")
    return proc.stdout.decode(errors="replace")


def _source_spec(case: ModelCase, src: Path) -> dict[str, Any]:
    if case.kind == "add":
        return {
            "uri": f"file://{src}",
            "format": "Checkpoint",
            "graph": "my_graph.pb",
            "checkpoint": "test_model",
            "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 1]}],
            "outputs": ["y"],
        }
    if case.kind == "convbn":
        return {
            "uri": f"file://{src}",
            "format": "FrozenGraph",
            "graph": "convbn_frozen.pb",
            "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 16, 16, 3]}],
            "outputs": ["output"],
        }
    return {"uri": f"file://{src / 'saved_model'}", "format": "SavedModel"}


def manifest(case: ModelCase, src: Path, repository: Path, *, transforms: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": _source_spec(case, src),
        "tensorrt": {"enabled": False},  # no TensorRT on these machines; the rest of the pipeline runs
        "target": {
            "repository": f"file://{repository}",
            "modelName": case.name,
            "backend": "python",
            "maxBatchSize": 8,
        },
    }
    if transforms is not None:
        spec["optimize"] = {"transforms": transforms}
    if case.kind == "keras":
        # Random weights through 50+ layers: float32 reassociation after BN folding moves outputs by ~1e-4.
        spec["validation"] = {"rtol": 1e-2, "atol": 1e-3}
    return {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": case.name},
        "spec": spec,
    }


def write_source(case: ModelCase, src: Path, log: Path) -> None:
    if (src / ".done").exists():
        return
    if case.kind == "keras":
        samples(
            "keras",
            "--architecture",
            case.architecture,
            "--input-size",
            str(case.input_size),
            "--dir",
            str(src),
            log=log,
        )
    else:
        samples(case.kind, "--dir", str(src), log=log)
    (src / ".done").touch()


def convert(
    ctx: Context, case: ModelCase, src: Path, out: Path, *, transforms: list[str] | None = None
) -> dict[str, Any]:
    """``edgeopt convert -f`` (no publish) into ``out``; returns its report.json."""
    convert_manifest(ctx, manifest(case, src, ctx.dir("repo"), transforms=transforms), out)
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def convert_manifest(ctx: Context, doc: dict[str, Any], out: Path) -> None:
    """``edgeopt convert -f`` of the manifest ``doc`` (no publish) into ``out``, unless it is there already."""
    if (out / "report.json").exists():
        return
    spec_file = out.parent / f"{out.name}.yaml"
    spec_file.write_text(yaml.safe_dump(doc))
    cli(
        "convert",
        "-f",
        str(spec_file),
        "--no-publish",
        "--output",
        str(out),
        "--log-format",
        "json",
        "--workdir",
        str(ctx.dir("convert-work")),
        "--termination-log",
        str(out.parent / f"{out.name}.summary"),
        log=ctx.dir("logs") / f"convert-{out.name}.log",
    )


def prepare(ctx: Context, case: ModelCase) -> Prepared:
    """Source written, converted, and the original as a SavedModel; cached for the rest of the run."""
    key = f"model:{case.label}"
    if key in ctx.cache:
        cached: Prepared = ctx.cache[key]
        return cached
    base = ctx.dir("models", case.label)
    src = base / "source"
    ctx.log(f"{case.label}: writing the source model")
    write_source(case, src, ctx.dir("logs") / f"samples-{case.label}.log")
    ctx.log(f"{case.label}: converting (edgeopt convert -f, subprocess)")
    report = convert(ctx, case, src, base / "optimized")
    baseline_report = None
    if case.kind == "keras":
        original = src / "saved_model"
    else:
        ctx.log(f"{case.label}: exporting the unoptimized frozen graph as the original (transforms: [])")
        baseline_report = convert(ctx, case, src, base / "original", transforms=[])
        original = base / "original" / "model.savedmodel"
    prepared = Prepared(case, src, original, base / "optimized", report, baseline_report)
    ctx.cache[key] = prepared
    return prepared
