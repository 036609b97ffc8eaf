"""The dev node's volume provisioner: one hostPath PersistentVolume per claim, under the cluster folder.

kube-controller-manager's persistentvolume-binder does the binding; what it
cannot do here is make volumes (no StorageClass provisioner runs).  So, for
every claim that is Pending with no volume, the node agent creates one
PersistentVolume pre-bound to it (``claimRef``): hostPath ``DIR/pvc/<claim>``
(layout.py), the claim's access modes, volume mode, storage class and
requested size, reclaim policy Retain.  The binder binds the pair, the
claim turns Bound and kube-scheduler places the Pods that use it.  When the
claim is deleted the binder marks its volume Released, and the node agent
deletes that volume object; the folder, like any retained volume's data,
stays (a later claim of the same name sees it, which the tests use to seed
a claim before it exists).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kubernetes.client import CoreV1Api
from kubernetes.client.rest import ApiException

from edgeopt_dev.layout import Layout, LayoutError

log = logging.getLogger("edgeopt.nodeagent")
#: The label on every PersistentVolume the node agent made (only those are ever deleted by it).
PROVISIONED_BY = "edgeopt.io/dev-provisioner"


def volume_for(claim: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The PersistentVolume, pre-bound to ``claim``, that holds it at ``folder`` (pure)."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "labels": {PROVISIONED_BY: "true"},
            "annotations": {"edgeopt.io/claim": f"{meta['namespace']}/{meta['name']}"},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "storageClassName": spec.get("storageClassName") or "",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def wants_volume(claim: dict[str, Any]) -> bool:
    """A claim no volume serves yet (and not on its way out)."""
    return (
        not claim["metadata"].get("deletionTimestamp")
        and not (claim.get("spec") or {}).get("volumeName")
        and (claim.get("status") or {}).get("phase", "Pending") == "Pending"
        and (claim.get("spec") or {}).get("volumeMode", "Filesystem") == "Filesystem"
    )


class Provisioner:
    """Called with the claims and volumes the node agent watches."""

    def __init__(self, core: CoreV1Api, root: Path) -> None:
        self.core = core
        self.layout = Layout(root)

    def claims_listed(self, items: list[dict[str, Any]]) -> None:
        for claim in items:
            self.claim_event("ADDED", claim)

    def claim_event(self, kind: str, claim: dict[str, Any]) -> None:
        if kind == "DELETED" or not wants_volume(claim):
            return
        try:
            folder = self.layout.pvc_dir(claim["metadata"]["name"])
        except LayoutError as exc:  # the API validates names; never a path outside the cluster folder
            log.warning("claim %s: %s", claim["metadata"]["name"], exc)
            return
        try:
            self.core.create_persistent_volume(volume_for(claim, folder))
            log.info("claim %s/%s: volume at %s", claim["metadata"]["namespace"], claim["metadata"]["name"], folder)
        except ApiException as exc:
            if exc.status != 409:  # 409: made already
                log.warning("claim %s: cannot create its volume: %s", claim["metadata"]["name"], exc.reason)

    def volumes_listed(self, items: list[dict[str, Any]]) -> None:
        for volume in items:
            self.volume_event("ADDED", volume)

    def volume_event(self, kind: str, volume: dict[str, Any]) -> None:
        meta = volume["metadata"]
        ours = (meta.get("labels") or {}).get(PROVISIONED_BY) == "true"
        if kind == "DELETED" or not ours or (volume.get("status") or {}).get("phase") != "Released":
            return
        try:
            self.core.delete_persistent_volume(meta["name"])
        except ApiException as exc:
            if exc.status != 404:
                log.warning("volume %s: cannot delete it: %s", meta["name"], exc.reason)
