"""``edgeopt convert -f MODEL.yaml``: the converter Job's command, and the same command locally.

Runs the pipeline, publishes the artefact to the Triton model repository
(unless ``--no-publish``), optionally copies it to ``--output``, and always
ends by writing the Summary to the termination-message path — on failure
too, because that message is all the operator gets to see.

Only the standard library and edgeopt.spec/errors/artifact are imported at
the top: ``edgeopt convert --help`` must not load TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from edgeopt.artifact import OPTIMIZED_GRAPH_FILE, Artifact, Summary, termination_log_path, write_summary
from edgeopt.converter import native_log
from edgeopt.converter.progress import Progress
from edgeopt.errors import ConversionError, EdgeoptError
from edgeopt.spec import OptimizedModel, load_manifest

WORKDIR_ENV = "EDGEOPT_WORKDIR"


class TerminatedError(EdgeoptError):
    """SIGTERM (Job deleted, node drained, deadline): stop cleanly, never leave half a version.

    Raised from the signal handler in the main thread, so it unwinds through
    the publisher, whose clean-up puts the repository back as it was (a
    version already complete and listed stays: rename and config replace are
    atomic). Exit 143 (128 + SIGTERM) is not in the Job's FailJob list: the
    Job may retry.
    """

    exit_code = 143
    reason = "Terminated"


def _on_sigterm(signum: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one unwinding is enough; SIGKILL follows the grace period
    raise TerminatedError(f"stopped by signal {signum} (the Job was deleted, the node drained, or the deadline hit)")


def _handle_sigterm() -> Any:
    """Install the SIGTERM handler; the previous one, or None off the main thread (tests calling run())."""
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        return None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Load, freeze, optimize, TF-TRT-convert, validate and publish the model a manifest describes."
    parser.add_argument("-f", "--filename", required=True, help="OptimizedModel manifest (the YAML you would apply)")
    parser.add_argument(
        "-o",
        "--output",
        help=f"also write the artefact (model.savedmodel/, {OPTIMIZED_GRAPH_FILE}, report.json) to this directory",
    )
    parser.add_argument("--no-publish", action="store_true", help="do not publish to the Triton model repository")
    parser.add_argument("--repository", help="publish to this local path instead of spec.target.repository")
    parser.add_argument(
        "--workdir", help=f"scratch space for the conversion (default ${WORKDIR_ENV} or the system temp dir)"
    )
    parser.add_argument(
        "--termination-log",
        help="JSON summary path (default $EDGEOPT_TERMINATION_LOG, else /dev/termination-log if writable)",
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="progress lines on stderr")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="let TensorFlow's own log through (kept out by default; its error lines still join a failure)",
    )


def write_output(artifact: Artifact, output: Path) -> Path:
    """Copy the artefact to ``output`` through a sibling staging dir and a rename: all or nothing."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        if artifact.savedmodel_dir.is_dir():
            shutil.copytree(artifact.savedmodel_dir, staging / artifact.savedmodel_dir.name)
        else:  # model.onnx / model.plan
            staging.mkdir()
            shutil.copy2(artifact.savedmodel_dir, staging / artifact.savedmodel_dir.name)
        for extra in ("report.json", "signature.json", OPTIMIZED_GRAPH_FILE):
            src = artifact.work_dir / extra
            if src.exists():
                shutil.copy2(src, staging / extra)
        old = None
        if output.exists():
            old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(output, old)
        os.rename(staging, output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConversionError(f"cannot write the artefact to {output}: {exc}") from exc
    return output


def _publish(artifact: Artifact, model: OptimizedModel, repository: str | None) -> Any:
    from edgeopt.triton.publish import publish_version

    return publish_version(artifact, model, repository=Path(repository) if repository else None)


def run(args: argparse.Namespace) -> int:
    with native_log.captured(enabled=not getattr(args, "verbose", False)) as (tf_log, stderr):
        return _run(args, Progress(args.log_format, stderr), tf_log)


def _run(args: argparse.Namespace, progress: Progress, tf_log: native_log.NativeLog) -> int:
    term_path = termination_log_path(args.termination_log)
    model: OptimizedModel | None = None
    scratch: Path | None = None
    previous = _handle_sigterm()
    try:
        model = load_manifest(args.filename)
        progress.event("convert", "start", {"model": model.model_name, "format": model.spec.source.format})
        workdir = Path(args.workdir or os.environ.get(WORKDIR_ENV) or tempfile.gettempdir()) / "edgeopt-work"
        from edgeopt.converter.pipeline import convert_model

        artifact = convert_model(model, workdir, on_event=progress)
        scratch = artifact.work_dir
        version = None
        if args.output:
            out = write_output(artifact, Path(args.output))
            progress.event("output", "written", {"path": str(out)})
        if not args.no_publish:
            progress.event("publish", "start", {})
            result = _publish(artifact, model, args.repository)
            version = result.version
            progress.event(
                "publish",
                "done",
                {"seconds": round(result.seconds, 3), "version": version, "path": str(result.version_dir)},
            )
        compact = dict(artifact.report.get("summary") or {})
        where = f"published as {model.model_name} version {version}" if version else "not published (--no-publish)"
        message = (
            f"converted {model.spec.source.format} in {compact.get('conversionSeconds')}s: "
            f"ops {compact.get('opsBefore')} -> {compact.get('opsAfter')}, "
            f"max abs error {compact.get('maxAbsError')}; {where}"
        )
        summary = Summary(
            ok=True,
            reason="Published" if version else "Converted",
            message=message,
            model=model.model_name,
            version=version,
            report=compact,
        )
        write_summary(summary, term_path)
        progress.event("convert", "done", {"seconds": round(progress.elapsed(), 3), "message": message})
        print(summary.to_json(), file=sys.stdout, flush=True)
        return 0
    except EdgeoptError as exc:
        _fail(progress, term_path, model, exc.reason, str(exc), tf_log.error_lines())
        raise
    except Exception as exc:
        _fail(progress, term_path, model, "InternalError", f"{type(exc).__name__}: {exc}", tf_log.error_lines())
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _fail(
    progress: Progress,
    path: Path | None,
    model: OptimizedModel | None,
    reason: str,
    message: str,
    tf_lines: list[str],
) -> None:
    write_summary(Summary(ok=False, reason=reason, message=message, model=model.model_name if model else None), path)
    fields: dict[str, Any] = {"seconds": round(progress.elapsed(), 3), "reason": reason, "error": message}
    if tf_lines:  # what TensorFlow's own log said at error level before the failure
        fields["tensorflow"] = " | ".join(tf_lines)
    progress.event("convert", "failed", fields)
