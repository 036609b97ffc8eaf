"""Who owns a model directory in a shared repository, and the refusal to touch someone else's.

Two namespaces that both say ``modelName: mobilenet`` in one repository would
otherwise publish over and prune each other's versions. The first publisher
records itself in ``<model>/.owner.json`` (namespace, name, uid; a dot file,
so Triton ignores it) under the model's publish lock; from then on publish,
prune and delete refuse any other OptimizedModel, and the error names the
owner so the tenant's status says whom to talk to. The tenant's identity is
(namespace, name): a resource deleted with ``deletionPolicy: Retain`` and
re-created under the same name takes its directory back, and the record's uid
is updated. A record that cannot be read is never overwritten: nobody can
then prove ownership, and a human must look.

Also ``python -m edgeopt.triton.ownership remove ...``: the clean-up Job's
command (``deletionPolicy: Delete``), which removes a model directory only
when the record says it belongs to the resource being deleted. Standard
library only: the operator image builds the command line, the converter image
runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeopt.errors import PublishError
from edgeopt.triton.durable import replace_file_atomically

OWNER_FILE = ".owner.json"
#: The owning resource's uid, set by the operator on the converter Job (the manifest has no uid).
OWNER_UID_ENV = "EDGEOPT_OWNER_UID"
_MAX_RECORD = 4096


class OwnedElsewhereError(PublishError):
    """The model directory belongs to another OptimizedModel; nothing was written."""

    reason = "OwnedByAnotherModel"


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str = ""

    def same_tenant(self, other: Owner) -> bool:
        return (self.namespace, self.name) == (other.namespace, other.name)

    def describe(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else f"{self.name} (a local run, no namespace)"
        return f"OptimizedModel {where}" + (f" (uid {self.uid})" if self.uid else "")


def owner_of(name: str, namespace: str | None, uid: str | None = None) -> Owner:
    """The owner a publish claims for: the manifest's name/namespace, the uid from the Job's env."""
    return Owner(namespace or "", name, uid if uid is not None else os.environ.get(OWNER_UID_ENV, ""))


def read_owner(model_dir: Path) -> Owner | None:
    """The recorded owner; None when there is no record. An unreadable record is refused, never guessed."""
    path = model_dir / OWNER_FILE
    try:
        if path.is_symlink():
            raise PublishError(f"{path} is a symbolic link; refusing to trust it (remove it by hand)")
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_RECORD + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PublishError(f"cannot read the owner record {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw) if len(raw) <= _MAX_RECORD else None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("namespace", "name", "uid")):
            raise ValueError("expected {namespace, name, uid} strings")
        if not data["name"]:
            raise ValueError("empty name")
    except ValueError as exc:
        raise PublishError(
            f"the owner record {path} is malformed ({exc}); nobody can prove ownership of this model directory, "
            "so a cluster admin must check it and remove or fix the record"
        ) from exc
    return Owner(data["namespace"], data["name"], data["uid"])


def refuse_unless_owner(model_dir: Path, owner: Owner, action: str) -> Owner | None:
    """Raise OwnedElsewhereError when another resource owns ``model_dir``; return the record."""
    recorded = read_owner(model_dir)
    if recorded is not None and not recorded.same_tenant(owner):
        raise OwnedElsewhereError(
            f"cannot {action} {model_dir.name}: the model directory is owned by {recorded.describe()}, "
            f"not {owner.describe()}. Choose another spec.target.modelName, or ask the owner to delete theirs "
            "(with deletionPolicy: Delete) first"
        )
    return recorded


def write_owner(model_dir: Path, owner: Owner) -> None:
    """Record ``owner`` atomically (temp file + rename) so a crash never leaves half a record."""
    replace_file_atomically(model_dir / OWNER_FILE, json.dumps(asdict(owner), sort_keys=True))


def claim(model_dir: Path, owner: Owner) -> None:
    """Under the model's publish lock: refuse another owner, else record (or refresh) this one."""
    recorded = refuse_unless_owner(model_dir, owner, "publish to")
    if recorded != owner:
        write_owner(model_dir, owner)


def remove_model(model_dir: Path, owner: Owner) -> bool:
    """Delete a model directory that belongs to ``owner``; False when it is not there.

    Renamed out of Triton's sight first (a dot name), then removed, so Triton
    never sees half a model.
    """
    if not model_dir.is_dir() or model_dir.is_symlink():
        return False
    refuse_unless_owner(model_dir, owner, "delete")
    doomed = model_dir.with_name(f".deleting-{model_dir.name}-{uuid.uuid4().hex[:8]}")
    os.rename(model_dir, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeopt.triton.ownership", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rm = sub.add_parser("remove", help="remove a model directory owned by the given resource")
    rm.add_argument("--namespace", required=True)
    rm.add_argument("--name", required=True)
    rm.add_argument("--uid", default="")
    rm.add_argument("model_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        removed = remove_model(args.model_dir, Owner(args.namespace, args.name, args.uid))
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"removed {args.model_dir}" if removed else f"{args.model_dir} is not there; nothing to remove")
    return 0


if __name__ == "__main__":
    sys.exit(main())
