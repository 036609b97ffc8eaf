"""Owner records: a model directory in a shared repository belongs to one OptimizedModel.

Two namespaces naming the same modelName must not publish over, prune or
delete each other's versions; the refusal names the owner, and a refused
publish leaves the repository byte for byte as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeopt.errors import PublishError
from edgeopt.spec import OptimizedModel, parse_manifest
from edgeopt.triton import ownership
from edgeopt.triton.ownership import OWNER_FILE, OwnedElsewhereError, Owner
from edgeopt.triton.publish import existing_versions, publish_version
from tests.fixtures.triton import file_artifact, tree_digest


def tenant(namespace: str, name: str, repo: Path, **target: Any) -> OptimizedModel:
    return parse_manifest(
        {
            "apiVersion": "edgeopt.io/v1alpha1",
            "kind": "OptimizedModel",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "source": {"uri": "file:///unused", "format": "SavedModel"},
                "tensorrt": {"enabled": False},
                "target": {"repository": f"file://{repo}", "modelName": "mobilenet", **target},
            },
        }
    )


def test_first_publisher_owns_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ownership.OWNER_UID_ENV, "uid-a")
    repo = tmp_path / "repo"
    publish_version(file_artifact(tmp_path / "sm"), tenant("team-a", "mobilenet", repo))
    record = json.loads((repo / "mobilenet" / OWNER_FILE).read_text())
    assert record == {"namespace": "team-a", "name": "mobilenet", "uid": "uid-a"}
    assert ownership.read_owner(repo / "mobilenet") == Owner("team-a", "mobilenet", "uid-a")


def test_another_namespace_is_refused_and_nothing_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    monkeypatch.setenv(ownership.OWNER_UID_ENV, "uid-a")
    art = file_artifact(tmp_path / "sm")
    for _ in range(2):
        publish_version(art, tenant("team-a", "mobilenet", repo, versionsToKeep=1))
    before = tree_digest(repo)
    monkeypatch.setenv(ownership.OWNER_UID_ENV, "uid-b")
    with pytest.raises(OwnedElsewhereError) as err:
        # versionsToKeep 1 would prune team-a's versions if this got as far as pruning.
        publish_version(art, tenant("team-b", "mobilenet", repo, versionsToKeep=1))
    message = str(err.value)
    assert "team-a/mobilenet" in message and "uid-a" in message and "team-b/mobilenet" in message
    assert "spec.target.modelName" in message
    assert err.value.reason == "OwnedByAnotherModel" and err.value.exit_code == PublishError.exit_code
    assert tree_digest(repo) == before, "a refused publish must leave the repository byte for byte as it was"
    assert existing_versions(repo / "mobilenet") == [1, 2]


def test_same_name_in_another_namespace_is_another_tenant(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    publish_version(art, tenant("team-a", "shared", repo))
    with pytest.raises(OwnedElsewhereError):
        publish_version(art, tenant("team-b", "shared", repo))
    with pytest.raises(OwnedElsewhereError):
        publish_version(art, tenant("team-a", "other", repo))


def test_a_re_created_resource_takes_its_directory_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deletionPolicy Retain, then the same namespace/name again: same tenant, new uid recorded."""
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    monkeypatch.setenv(ownership.OWNER_UID_ENV, "old")
    publish_version(art, tenant("team-a", "m", repo))
    monkeypatch.setenv(ownership.OWNER_UID_ENV, "new")
    assert publish_version(art, tenant("team-a", "m", repo)).version == 2
    assert ownership.read_owner(repo / "mobilenet") == Owner("team-a", "m", "new")


def test_a_failed_first_publish_leaves_no_record(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    art = file_artifact(tmp_path / "sm")
    (art.savedmodel_dir / "saved_model.pb").unlink()  # not a SavedModel: the publish fails while staging
    with pytest.raises(PublishError):
        publish_version(art, tenant("team-a", "m", repo))
    assert not (repo / "mobilenet").exists()


@pytest.mark.parametrize(
    "content",
    ['{"namespace": "a"}', "not json", '{"namespace": 1, "name": "x", "uid": ""}', "x" * 5000],
)
def test_an_unreadable_record_is_never_overwritten(tmp_path: Path, content: str) -> None:
    repo = tmp_path / "repo"
    (repo / "mobilenet").mkdir(parents=True)
    (repo / "mobilenet" / OWNER_FILE).write_text(content)
    with pytest.raises(PublishError, match="owner record"):
        publish_version(file_artifact(tmp_path / "sm"), tenant("team-a", "m", repo))
    assert (repo / "mobilenet" / OWNER_FILE).read_text() == content


def test_a_symlinked_record_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "elsewhere.json").write_text('{"namespace": "a", "name": "b", "uid": ""}')
    (tmp_path / "m" / OWNER_FILE).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(PublishError, match="symbolic link"):
        ownership.read_owner(tmp_path / "m")


def test_remove_deletes_only_the_owners_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    publish_version(file_artifact(tmp_path / "sm"), tenant("team-a", "mobilenet", repo))
    model_dir = repo / "mobilenet"
    args = ["remove", "--namespace", "team-b", "--name", "mobilenet", "--uid", "u", str(model_dir)]
    assert ownership.main(args) == PublishError.exit_code
    assert "owned by OptimizedModel team-a/mobilenet" in capsys.readouterr().err
    assert model_dir.is_dir()
    assert ownership.main(["remove", "--namespace", "team-a", "--name", "mobilenet", str(model_dir)]) == 0
    assert not model_dir.exists() and list(repo.iterdir()) == []
    assert ownership.main(["remove", "--namespace", "team-a", "--name", "mobilenet", str(model_dir)]) == 0
    assert "nothing to remove" in capsys.readouterr().out
