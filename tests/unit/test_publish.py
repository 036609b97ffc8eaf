"""Publishing layout, versions, pruning, name safety and failure atomicity (no TF, no Triton)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from edgeopt.errors import PublishError
from edgeopt.spec import OptimizedModel
from edgeopt.triton.publish import existing_versions, publish_version, versions_to_prune
from tests.fixtures.triton import file_artifact, optimized_model, tree_digest


def entries(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def test_python_backend_layout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    result = publish_version(art, optimized_model("add", repo))
    assert (result.model_name, result.version) == ("add", 1)
    assert result.version_dir == repo / "add" / "1"
    assert result.config_path == repo / "add" / "config.pbtxt"
    assert entries(repo / "add") == [".lock", ".owner.json", "1", "config.pbtxt"]
    expected = [".config.pbtxt", "__pycache__", "_edgeopt_batching.py", "model.py", "model.savedmodel", "report.json"]
    assert entries(result.version_dir) == expected
    # bytecode ships with model.py and its helper so Triton's stub never writes into the repository
    pycs = entries(result.version_dir / "__pycache__")
    assert [p.split(".")[0] for p in pycs] == ["_edgeopt_batching", "model"]
    assert all(".cpython-" in p for p in pycs)
    assert (result.version_dir / "model.savedmodel" / "saved_model.pb").read_bytes() == b"not parsed by the publisher"
    assert (result.version_dir / "model.savedmodel" / "variables" / "variables.index").exists()
    assert "class TritonPythonModel" in (result.version_dir / "model.py").read_text()
    report = json.loads((result.version_dir / "report.json").read_text())
    assert report["opsAfter"] == 2 and report["signature"]["inputs"][0]["name"] == "x"
    assert report["published"]["model"] == "add" and report["published"]["version"] == 1
    assert 'name: "add"' in result.config_path.read_text()
    assert result.seconds > 0


def test_published_files_are_readable_by_another_user_despite_umask(tmp_path: Path) -> None:
    """Triton usually runs as a different UID than the converter Job; a 077 umask must not hide the model."""
    old = os.umask(0o077)
    try:
        art = file_artifact(tmp_path / "sm")
        os.chmod(art.savedmodel_dir / "saved_model.pb", 0o600)
        result = publish_version(art, optimized_model("m", tmp_path / "repo"))
    finally:
        os.umask(old)
    for path in [result.version_dir, *result.version_dir.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    assert result.config_path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "repo").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "repo" / "m").stat().st_mode & 0o777 == 0o755


def test_tensorflow_backend_layout_has_no_model_py(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    result = publish_version(file_artifact(tmp_path / "sm"), optimized_model("tfm", repo, backend="tensorflow"))
    assert entries(result.version_dir) == [".config.pbtxt", "model.savedmodel", "report.json"]
    text = result.config_path.read_text()
    assert 'platform: "tensorflow_savedmodel"' in text and "backend" not in text


def test_versions_increase_and_config_is_replaced(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    assert publish_version(art, optimized_model("m", repo)).version == 1
    art.inputs[0].shape = [-1, 3]
    art.outputs[0].shape = [-1, 3]
    second = publish_version(art, optimized_model("m", repo))
    assert second.version == 2
    assert "dims: [ 3 ]" in second.config_path.read_text()
    assert existing_versions(repo / "m") == [1, 2]
    assert not [e for e in entries(repo / "m") if e.startswith(".") and e not in (".lock", ".owner.json")]


def test_repository_from_spec_uri(tmp_path: Path) -> None:
    repo = tmp_path / "from-uri"
    result = publish_version(file_artifact(tmp_path / "sm"), optimized_model("m", repo))
    assert result.version_dir.parent.parent == repo


def test_explicit_version_and_immutability(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    assert publish_version(art, optimized_model("m", repo, version=7)).version == 7
    assert publish_version(art, optimized_model("m", repo)).version == 8
    before = tree_digest(repo)
    with pytest.raises(PublishError, match="already exists"):
        publish_version(art, optimized_model("m", repo, version=7))
    assert tree_digest(repo) == before


def test_versions_to_keep_prunes_oldest_but_never_served(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    for _ in range(3):
        publish_version(art, optimized_model("m", repo, versionsToKeep=2))
    assert existing_versions(repo / "m") == [2, 3]
    result = publish_version(art, optimized_model("m", repo, versionsToKeep=2), serving_versions=[2])
    assert result.pruned == []
    assert existing_versions(repo / "m") == [2, 3, 4]
    result = publish_version(art, optimized_model("m", repo, versionsToKeep=2))
    assert result.pruned == [2, 3]
    assert existing_versions(repo / "m") == [4, 5]
    # an explicit low version is the new one: it is never pruned right after publishing
    low = publish_version(art, optimized_model("m", repo, versionsToKeep=1, version=1))
    assert existing_versions(repo / "m") == [1, 5] and low.pruned == [4]


def test_unknown_serving_versions_keep_the_previous_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The converter Job cannot ask Triton; without the operator's hint the last version survives one publish."""
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    monkeypatch.delenv("EDGEOPT_SERVING_VERSIONS", raising=False)
    publish_version(art, optimized_model("m", repo, versionsToKeep=1))
    assert publish_version(art, optimized_model("m", repo, versionsToKeep=1)).pruned == []
    assert existing_versions(repo / "m") == [1, 2]
    assert publish_version(art, optimized_model("m", repo, versionsToKeep=1)).pruned == [1]
    # The operator's hint (env) wins: version 2 is served, so 3 may go.
    monkeypatch.setenv("EDGEOPT_SERVING_VERSIONS", "2")
    assert publish_version(art, optimized_model("m", repo, versionsToKeep=1)).pruned == [3]
    assert existing_versions(repo / "m") == [2, 4]
    monkeypatch.setenv("EDGEOPT_SERVING_VERSIONS", "two")
    before = tree_digest(repo)
    with pytest.raises(PublishError, match="EDGEOPT_SERVING_VERSIONS"):
        publish_version(art, optimized_model("m", repo, versionsToKeep=1))
    assert tree_digest(repo) == before


def test_versions_to_prune_pure() -> None:
    assert versions_to_prune([1, 2, 3, 4], 2) == [1, 2]
    assert versions_to_prune([1, 2, 3, 4], 2, protect=[1]) == [2]
    assert versions_to_prune([3], 1) == []


def with_name(model: OptimizedModel, name: str) -> OptimizedModel:
    target = dataclasses.replace(model.spec.target, model_name=name)
    return dataclasses.replace(model, spec=dataclasses.replace(model.spec, target=target))


@pytest.mark.parametrize(
    "name", ["../x", "..", "/", "/etc", "a/b", "Upper", "x\n", "-lead", "a" * 64, "a b", "ok/../../etc"]
)
def test_unsafe_model_names_are_rejected_before_any_path(tmp_path: Path, name: str) -> None:
    repo = tmp_path / "repo"
    model = with_name(optimized_model("ok", repo), name)
    with pytest.raises(PublishError, match="not allowed"):
        publish_version(file_artifact(tmp_path / "sm"), model)
    assert entries(tmp_path) == ["sm"]  # not even the repository was created


def test_validate_model_name_directly() -> None:
    from edgeopt.triton.publish import validate_model_name

    assert validate_model_name("a-b_9") == "a-b_9"
    for bad in ("", None, 3, "a" * 64, "é"):
        with pytest.raises(PublishError):
            validate_model_name(bad)


def test_failure_midway_leaves_existing_repository_byte_identical(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    publish_version(file_artifact(tmp_path / "good"), optimized_model("m", repo))
    publish_version(file_artifact(tmp_path / "good"), optimized_model("other", repo))
    before = tree_digest(repo)
    broken = file_artifact(tmp_path / "broken")
    (broken.savedmodel_dir / "variables" / "zz-dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(PublishError, match="failed"):
        publish_version(broken, optimized_model("m", repo))
    assert tree_digest(repo) == before
    with pytest.raises(PublishError, match="not a SavedModel"):
        publish_version(dataclasses.replace(broken, savedmodel_dir=tmp_path), optimized_model("m", repo))
    assert tree_digest(repo) == before


def test_failure_on_a_new_model_or_new_repository_leaves_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    publish_version(file_artifact(tmp_path / "good"), optimized_model("m", repo))
    before = tree_digest(repo)
    broken = file_artifact(tmp_path / "broken")
    (broken.savedmodel_dir / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(PublishError):
        publish_version(broken, optimized_model("fresh", repo))
    assert tree_digest(repo) == before
    with pytest.raises(PublishError):
        publish_version(broken, optimized_model("fresh", tmp_path / "new-repo"))
    assert not (tmp_path / "new-repo").exists()


def test_failure_on_a_hand_made_model_dir_leaves_no_lock_file(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "m" / "1" / "model.savedmodel").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text('name: "m"\n')
    before = tree_digest(repo)
    broken = file_artifact(tmp_path / "broken")
    (broken.savedmodel_dir / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(PublishError):
        publish_version(broken, optimized_model("m", repo))
    assert tree_digest(repo) == before
    assert publish_version(file_artifact(tmp_path / "good"), optimized_model("m", repo)).version == 2


def test_bad_signature_fails_before_touching_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    art.inputs = []
    with pytest.raises(PublishError, match="no inputs"):
        publish_version(art, optimized_model("m", repo))
    assert not repo.exists()


def policy(repo: Path, name: str = "m") -> str:
    (line,) = [ln for ln in (repo / name / "config.pbtxt").read_text().splitlines() if ln.startswith("version_policy")]
    return line


def test_config_loads_the_new_version_beside_served_ones_of_the_same_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Triton's config is per model: a served version stays listed only while the new config fits it."""
    monkeypatch.delenv("EDGEOPT_SERVING_VERSIONS", raising=False)
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    publish_version(art, optimized_model("m", repo))
    assert policy(repo) == "version_policy: { specific: { versions: [ 1 ] } }"
    publish_version(art, optimized_model("m", repo), serving_versions=[1])
    assert policy(repo) == "version_policy: { specific: { versions: [ 1, 2 ] } }"  # switch without a gap
    # Other inputs: version 2's config would break version 1, so only the new one is listed.
    other = dataclasses.replace(art, inputs=[dataclasses.replace(art.inputs[0], name="pixels")])
    publish_version(other, optimized_model("m", repo), serving_versions=[2])
    assert policy(repo) == "version_policy: { specific: { versions: [ 3 ] } }"
    # Each version keeps the config it was published with (the comparison reads it).
    assert '"pixels"' in (repo / "m" / "3" / ".config.pbtxt").read_text()
    assert '"pixels"' not in (repo / "m" / "2" / ".config.pbtxt").read_text()
    # A served version that is gone, or not a version at all, is simply not listed.
    publish_version(other, optimized_model("m", repo), serving_versions=[3, 9])
    assert policy(repo) == "version_policy: { specific: { versions: [ 3, 4 ] } }"


def test_history_versions_are_never_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    for _ in range(3):
        publish_version(art, optimized_model("m", repo, versionsToKeep=3))
    monkeypatch.setenv("EDGEOPT_KEPT_VERSIONS", "1")
    result = publish_version(art, optimized_model("m", repo, versionsToKeep=1), serving_versions=[3])
    assert sorted(result.pruned) == [2] and existing_versions(repo / "m") == [1, 3, 4]
    monkeypatch.setenv("EDGEOPT_KEPT_VERSIONS", "one")
    before = tree_digest(repo)
    with pytest.raises(PublishError, match="EDGEOPT_KEPT_VERSIONS"):
        publish_version(art, optimized_model("m", repo))
    assert tree_digest(repo) == before


def test_stale_staging_and_deleting_dirs_are_swept_under_the_lock(tmp_path: Path) -> None:
    """A publisher SIGKILLed mid-copy leaves .staging-*; the next publish (holding the lock) removes it."""
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    publish_version(art, optimized_model("m", repo))
    (repo / "m" / ".staging-dead").mkdir()
    (repo / "m" / ".staging-dead" / "half.bin").write_bytes(b"x" * 10)
    (repo / "m" / ".deleting-1-abcd").mkdir()
    publish_version(art, optimized_model("m", repo))
    assert entries(repo / "m") == [".lock", ".owner.json", "1", "2", "config.pbtxt"]


def test_a_full_disk_is_its_own_retryable_reason(tmp_path: Path) -> None:
    import errno

    from edgeopt.operator.resources import PERMANENT_EXIT_CODES
    from edgeopt.triton.publish import RepositoryFullError, is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    # shutil.copytree collects its errors as text in a shutil.Error (an OSError without errno)
    assert is_disk_full(OSError([("a", "b", "[Errno 28] No space left on device: 'b'")]))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert RepositoryFullError.reason == "RepositoryFull"
    assert RepositoryFullError.exit_code not in PERMANENT_EXIT_CODES, "the Job must retry it"


FULL_CHILD = """
import sys
from pathlib import Path
from edgeopt.triton.publish import RepositoryFullError, publish_version
from tests.fixtures.triton import file_artifact, optimized_model
try:
    publish_version(file_artifact(Path(sys.argv[1]), payload=b"x" * (4 << 20)), optimized_model("m", Path(sys.argv[2])))
except RepositoryFullError as exc:
    print(exc.reason, exc)
    sys.exit(exc.exit_code)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs in a private mount namespace needs root")
def test_publishing_onto_a_really_full_volume(tmp_path: Path) -> None:
    """A 2 MiB tmpfs as the repository, in a private mount namespace (nothing is mounted on the host)."""
    import shutil
    import subprocess
    import sys

    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is missing")
    repo = tmp_path / "repo"
    repo.mkdir()
    script = f'mount -t tmpfs -o size=2m tmpfs "{repo}" && exec "{sys.executable}" -c "$0" "$1" "$2"'
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            FULL_CHILD,
            str(tmp_path / "sm"),
            str(repo),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert proc.stdout.startswith("RepositoryFull") and "the volume is full" in proc.stdout
    assert "nothing was published" in proc.stdout
    assert os.listdir(repo) == [], "the tmpfs was private to the child: the host folder stays empty"
