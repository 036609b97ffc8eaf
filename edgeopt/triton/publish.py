"""Publish a converted model as a new Triton model version, atomically.

Triton may scan the repository at any moment (a load request, a poll), so it
must never see a half-written version:

1. The model name is validated before any path is built from it.
2. Publishers of the same model serialise on an ``flock`` of
   ``<model>/.lock`` (per open file description, so it works between threads
   and between processes); the version number is chosen under that lock, and
   a model directory owned by another OptimizedModel (``.owner.json``, see
   ``ownership``) is refused before anything is written.
3. The version is written into ``<model>/.staging-<uuid>/`` (non-numeric:
   Triton ignores it), every file and directory is fsynced, and the staging
   dir is renamed to ``<model>/<version>``.
4. Only then is ``config.pbtxt`` replaced, through a temp file + fsync + rename.
5. Old versions beyond ``versionsToKeep`` are pruned, never the new one and
   never one the caller says is being served.

Any failure before step 3's rename removes the staging dir (and a model dir
this call created), so the repository is byte-for-byte as it was.

Everything lives inside ``<model>/`` (lock, staging, pruning): in a cluster
the converter mounts only that directory of the repository claim (a
``subPath``), so a publisher can never touch another model's files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from edgeopt.artifact import KEPT_VERSIONS_ENV, OPTIMIZED_GRAPH_FILE, SERVING_VERSIONS_ENV, Artifact
from edgeopt.errors import PublishError
from edgeopt.spec import OptimizedModel, resolve_uri
from edgeopt.triton import ownership
from edgeopt.triton.config import (
    ONNX_FILENAME,
    OPENVINO_FILENAME,
    OPENVINO_WEIGHTS_FILENAME,
    PLAN_FILENAME,
    SAVEDMODEL_DIRNAME,
    ModelConfig,
    build_model_config,
    same_interface,
)
from edgeopt.triton.durable import fsync_dir, replace_file_atomically, write_file_durably
from edgeopt.triton.python_model import write_python_model

log = logging.getLogger(__name__)

MODEL_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
CONFIG_NAME = "config.pbtxt"
REPORT_NAME = "report.json"
LOCK_NAME = ".lock"
STAGING_PREFIX = ".staging-"
DELETING_PREFIX = ".deleting-"
#: File name in the version dir per single-file artefact format.
MODEL_FILES = {"onnx": ONNX_FILENAME, "plan": PLAN_FILENAME, "openvino": OPENVINO_FILENAME}
#: Files that travel beside the model file (same stem, this suffix): OpenVINO IR keeps its weights in model.bin.
COMPANION_FILES = {"openvino": {".bin": OPENVINO_WEIGHTS_FILENAME}}
#: Versions Triton is serving, for a publisher that cannot ask Triton itself (the converter Job).


@dataclass
class PublishResult:
    model_name: str
    version: int
    version_dir: Path
    config_path: Path
    seconds: float
    pruned: list[int] = field(default_factory=list)


class RepositoryFullError(PublishError):
    """The repository volume is full (or over quota): retryable, unlike the other publish errors.

    Its exit code is outside the converter Job's podFailurePolicy FailJob list,
    so the Job retries once space may have been freed.
    """

    exit_code = 9
    reason = "RepositoryFull"


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, also inside shutil.Error (copytree collects errors as text)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def validate_model_name(name: object) -> str:
    """Reject anything that is not a plain Triton model name, before it touches a path."""
    if not isinstance(name, str) or not MODEL_NAME_RE.fullmatch(name):
        raise PublishError(
            f"model name {name!r} is not allowed: it must match [a-z0-9][a-z0-9_-]{{0,62}} "
            "(lower case letters, digits, '-' and '_'; no '/', '..' or upper case)"
        )
    return name


def existing_versions(model_dir: Path) -> list[int]:
    """Numeric version directories, ascending. Staging and deleting dirs are not versions."""
    try:
        entries = list(os.scandir(model_dir))
    except FileNotFoundError:
        return []
    return sorted(int(e.name) for e in entries if e.name.isdigit() and not e.name.startswith("0") and e.is_dir())


def versions_to_prune(versions: Iterable[int], keep: int, protect: Iterable[int] = ()) -> list[int]:
    """Versions beyond the newest ``keep``, minus the protected ones (being served, just published)."""
    ordered = sorted(set(versions), reverse=True)
    protected = set(protect)
    return sorted(v for v in ordered[keep:] if v not in protected)


# --------------------------------------------------------------------------- durable file operations


def _copy_durably(src: str, dst: str) -> str:
    shutil.copy2(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return dst


def copy_tree_durably(src: Path, dst: Path) -> None:
    """copytree, then fsync every file (during the copy) and every directory (after)."""
    shutil.copytree(src, dst, copy_function=_copy_durably, symlinks=False)
    for root, _dirs, _files in os.walk(dst, topdown=False):
        fsync_dir(Path(root))


@contextlib.contextmanager
def model_lock(model_dir: Path) -> Iterator[None]:
    """Exclusive flock on ``<model>/.lock``.

    After acquiring, re-check that the lock file is still the one linked at
    that path: a publisher that failed on a brand-new model removes the model
    dir (to leave the repository as it was), and a waiter must not proceed on
    the unlinked file.
    """
    lock_path = model_dir / LOCK_NAME
    while True:
        try:
            model_dir.mkdir()
            os.chmod(model_dir, 0o755)  # readable by Triton whatever the umask (see make_world_readable)
        except FileExistsError:
            pass
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue  # the dir vanished between mkdir and open; start over
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        return


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def prune_versions(model_dir: Path, keep: int, protect: Iterable[int]) -> list[int]:
    """Delete old versions: rename out of Triton's sight first, then remove."""
    pruned = []
    for version in versions_to_prune(existing_versions(model_dir), keep, protect):
        doomed = model_dir / f"{DELETING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(model_dir / str(version), doomed)
        except OSError as exc:
            log.warning("could not prune %s version %d: %s", model_dir.name, version, exc)
            continue
        _remove_tree(doomed)
        pruned.append(version)
    if pruned:
        fsync_dir(model_dir)
    return pruned


# --------------------------------------------------------------------------- publish


def _stage_version(staging: Path, artifact: Artifact, backend: str, config_text: str, name: str, version: int) -> None:
    """Fill the staging dir with everything the version needs."""
    src = Path(artifact.savedmodel_dir)
    if artifact.model_format in MODEL_FILES:
        # ONNX path: one file, named as Triton's backend (or the python flavour's model.py) expects it.
        if not src.is_file():
            raise PublishError(f"{src}: the {artifact.model_format} model file is missing; nothing to publish")
        _copy_durably(str(src), str(staging / MODEL_FILES[artifact.model_format]))
        for suffix, dest in COMPANION_FILES.get(artifact.model_format, {}).items():
            if not src.with_suffix(suffix).is_file():
                raise PublishError(f"{src.with_suffix(suffix)}: missing beside {src.name}; nothing to publish")
            _copy_durably(str(src.with_suffix(suffix)), str(staging / dest))
    elif not (src / "saved_model.pb").is_file() and not (src / "saved_model.pbtxt").is_file():
        raise PublishError(f"{src}: not a SavedModel (no saved_model.pb); nothing to publish")
    else:
        copy_tree_durably(src, staging / SAVEDMODEL_DIRNAME)
    graph = artifact.work_dir / OPTIMIZED_GRAPH_FILE
    if graph.is_file():  # the frozen GraphDef the model was made from, for import_graph_def users (guide 5.2)
        _copy_durably(str(graph), str(staging / OPTIMIZED_GRAPH_FILE))
    if backend == "python":
        write_python_model(staging, flavour=artifact.model_format)
    report = dict(artifact.report)
    report.setdefault("signature", artifact.signature_dict())
    report.setdefault("trtApplied", artifact.trt_applied)
    report.setdefault("precision", artifact.precision)
    report.setdefault("gpu", artifact.gpu)
    report["published"] = {
        "model": name,
        "version": version,
        "backend": backend,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_file_durably(staging / REPORT_NAME, json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    # The config this version was published with, for humans and for rollbacks.
    write_file_durably(staging / f".{CONFIG_NAME}", config_text)
    make_world_readable(staging)
    fsync_dir(staging)


def make_world_readable(root: Path) -> None:
    """Triton often runs as another user (its own container) than the converter Job.

    A hardened Job may run with umask 077; without this the version would be
    published but unreadable to Triton.  Directories 0755, files 0644.
    """
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


def publish_version(
    artifact: Artifact,
    model: OptimizedModel,
    *,
    repository: Path | None = None,
    serving_versions: Iterable[int] | None = None,
) -> PublishResult:
    """Publish ``artifact`` as the next version of ``model.model_name``.

    ``repository`` overrides ``spec.target.repository`` (tests, local runs).
    ``serving_versions`` are never pruned (the versions Triton reports
    ready).  The converter Job has no Triton client, so when the caller does
    not pass them they come from ``$EDGEOPT_SERVING_VERSIONS`` (comma list, set
    by the operator from the resource's status), and failing that the
    previous newest version is kept: it is the one most likely being served
    until the operator has loaded the new one.
    """
    started = time.monotonic()
    name = validate_model_name(model.model_name)
    repo = Path(repository) if repository is not None else resolve_uri(model.spec.target.repository)
    model_config = build_model_config(artifact, model)
    pub = _Publication(
        artifact=artifact,
        model=model,
        name=name,
        repo=repo,
        model_config=model_config,
        config_text=model_config.render(),  # fails before any file is touched
        served=_serving_versions(serving_versions),
        owner=ownership.owner_of(model.name, model.namespace),
        kept=_env_versions(KEPT_VERSIONS_ENV) or set(),  # parsed before any file is touched
    )
    repo_existed = _make_repository(repo)
    try:
        pruned = pub.run()
    except BaseException as exc:
        if not repo_existed:
            with contextlib.suppress(OSError):
                repo.rmdir()
        if not isinstance(exc, OSError):
            raise
        if is_disk_full(exc):
            raise RepositoryFullError(
                f"publishing {name} to {repo} failed: the volume is full ({exc}); nothing was published. "
                "Free space (or lower spec.target.versionsToKeep); the Job retries"
            ) from exc
        raise PublishError(f"publishing {name} to {repo} failed: {exc}") from exc
    seconds = time.monotonic() - started
    log.info("published %s version %d to %s in %.2fs (pruned %s)", name, pub.version, repo, seconds, pruned or "none")
    version_dir, config_path = pub.model_dir / str(pub.version), pub.model_dir / CONFIG_NAME
    return PublishResult(name, pub.version, version_dir, config_path, seconds, pruned)


def _make_repository(repo: Path) -> bool:
    """Create the repository directory (0755, for a Triton of another user) if needed; whether it existed."""
    existed = repo.is_dir()
    try:
        repo.mkdir(parents=True, exist_ok=True)
        if not existed:
            os.chmod(repo, 0o755)
    except OSError as exc:
        raise PublishError(f"cannot create model repository {repo}: {exc.strerror}") from exc
    return existed


@dataclass
class _Publication:
    """One publish of a version: what it needs, and what it changed so far, so a failure undoes exactly that."""

    artifact: Artifact
    model: OptimizedModel
    name: str
    repo: Path
    model_config: ModelConfig
    config_text: str
    served: set[int] | None
    owner: ownership.Owner
    kept: set[int]
    version: int = 0
    version_dir: Path | None = None
    recorded: ownership.Owner | None = None
    wrote_owner: bool = False
    model_dir: Path = field(init=False)
    staging: Path = field(init=False)
    model_dir_existed: bool = field(init=False)
    lock_existed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.model_dir = self.repo / self.name
        self.staging = self.model_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        self.model_dir_existed = self.model_dir.is_dir()
        self.lock_existed = (self.model_dir / LOCK_NAME).exists()

    def run(self) -> list[int]:
        """Under the model's lock: install the version (undone whole on any failure), then prune; the pruned."""
        target = self.model.spec.target
        with model_lock(self.model_dir):
            try:
                versions_before = self._install()
            except BaseException:
                self._undo()
                raise
            served = self.served
            if served is None:  # unknown: keep the previous newest, the one most likely being served
                served = {max(versions_before)} if versions_before else set()
            protect = {self.version, *served, *self.kept}
            return prune_versions(self.model_dir, target.versions_to_keep, protect)

    def _install(self) -> list[int]:
        """Stage, rename into place, record the owner, replace config.pbtxt; the versions there before."""
        target = self.model.spec.target
        self.recorded = ownership.refuse_unless_owner(self.model_dir, self.owner, "publish to")
        sweep_stale(self.model_dir)
        versions_before = existing_versions(self.model_dir)
        self.version = _choose_version(self.model_dir, self.name, target.version, self.repo)
        known = self.served if self.served is not None else ({max(versions_before)} if versions_before else set())
        alongside = compatible_versions(self.model_dir, known, self.config_text)
        config_text = replace(self.model_config, versions=(*alongside, self.version)).render()
        self.staging.mkdir()
        _stage_version(self.staging, self.artifact, target.backend, config_text, self.name, self.version)
        self.version_dir = self.model_dir / str(self.version)
        os.rename(self.staging, self.version_dir)
        fsync_dir(self.model_dir)
        if self.recorded != self.owner:
            self.wrote_owner = True
            ownership.write_owner(self.model_dir, self.owner)
        replace_file_atomically(self.model_dir / CONFIG_NAME, config_text)
        return versions_before

    def _undo(self) -> None:
        """Put the repository back exactly as it was.

        Under the lock, so a concurrent publisher of the same new model never loses its directory.
        """
        _remove_tree(self.staging)
        if self.version_dir is not None and self.version_dir.exists():
            _withdraw(self.version_dir)
        if self.wrote_owner:
            _restore_owner(self.model_dir, self.recorded)
        if not self.model_dir_existed:
            _remove_new_model_dir(self.model_dir)
        elif not self.lock_existed:
            # A model dir made by hand or another tool: our lock file must not stay behind.
            # (A publisher waiting on it re-checks the inode and retries: see model_lock.)
            with contextlib.suppress(OSError):
                (self.model_dir / LOCK_NAME).unlink()


def _restore_owner(model_dir: Path, recorded: ownership.Owner | None) -> None:
    """Undo this publish's owner record: the repository must read as it did before."""
    with contextlib.suppress(OSError):
        if recorded is None:
            (model_dir / ownership.OWNER_FILE).unlink()
        else:
            ownership.write_owner(model_dir, recorded)


def compatible_versions(model_dir: Path, versions: Iterable[int], config_text: str) -> tuple[int, ...]:
    """The served versions that were published with this very config (up to version_policy).

    Those stay loaded next to the new version until the operator switches
    (zero downtime); a version built for other inputs, dtypes or another
    backend is left out, so the new config never applies to it. A version
    without its stored config is treated as different (the safe side).
    """
    out = []
    for v in sorted(set(versions)):
        try:
            old = (model_dir / str(v) / f".{CONFIG_NAME}").read_text()
        except OSError:
            continue
        if same_interface(old, config_text):
            out.append(v)
    return tuple(out)


def sweep_stale(model_dir: Path) -> list[str]:
    """Remove staging and deleting dirs left by a publisher that died (SIGKILL, node loss).

    Called with the model lock held: every live publisher makes and removes
    its staging dir under that lock, so whatever is there now is nobody's.
    """
    swept = []
    with contextlib.suppress(OSError):
        for entry in os.listdir(model_dir):
            if entry.startswith((STAGING_PREFIX, DELETING_PREFIX)):
                _remove_tree(model_dir / entry)
                swept.append(entry)
    if swept:
        log.info("removed stale %s from %s", ", ".join(sorted(swept)), model_dir)
    return swept


def _serving_versions(serving: Iterable[int] | None) -> set[int] | None:
    """The caller's served versions, else ``$EDGEOPT_SERVING_VERSIONS``, else None (unknown)."""
    if serving is not None:
        return set(serving)
    return _env_versions(SERVING_VERSIONS_ENV)


def _env_versions(variable: str) -> set[int] | None:
    env = os.environ.get(variable, "").strip()
    if not env:
        return None
    try:
        return {int(v) for v in env.split(",") if v.strip()}
    except ValueError:
        raise PublishError(f"${variable}={env!r} is not a comma-separated list of versions") from None


def _withdraw(version_dir: Path) -> None:
    """Take a just-renamed version back out of Triton's sight (its config.pbtxt could not be written)."""
    doomed = version_dir.with_name(f"{DELETING_PREFIX}{version_dir.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        os.rename(version_dir, doomed)
        fsync_dir(version_dir.parent)
    _remove_tree(doomed)


def _choose_version(model_dir: Path, name: str, explicit: int | None, repo: Path) -> int:
    """Highest existing + 1, or the spec's explicit version if it is still free. Called under the lock."""
    versions = existing_versions(model_dir)
    if explicit is None:
        return (max(versions) if versions else 0) + 1
    if explicit in versions or (model_dir / str(explicit)).exists():
        raise PublishError(
            f"{name} version {explicit} already exists in {repo}; published versions are immutable "
            "(remove spec.target.version to publish the next one)"
        )
    return explicit


def _remove_new_model_dir(model_dir: Path) -> None:
    """Remove a model dir this publish created, unless another publisher has put a version in it meanwhile."""
    with contextlib.suppress(OSError):
        if existing_versions(model_dir) or (model_dir / CONFIG_NAME).exists():
            return
        leftovers = [e for e in os.listdir(model_dir) if e not in (LOCK_NAME, ownership.OWNER_FILE)]
        if leftovers:
            return  # another publisher's staging dir: not ours to remove
        with contextlib.suppress(FileNotFoundError):
            (model_dir / LOCK_NAME).unlink()
        try:
            model_dir.rmdir()
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
