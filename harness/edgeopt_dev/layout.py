"""Where a dev cluster keeps everything: the one home of its folder layout.

Everything lives under one folder::

    DIR/kubeconfig        admin kubeconfig (client certificate, system:masters)
    DIR/state.json        the ports and version ``up`` chose (``load`` reads it)
    DIR/pki/              CA, serving and client certificates, SA signing key
    DIR/etcd/             etcd data (wiped at every ``up``)
    DIR/run/*.pid         one process group per component (see processes.py)
    DIR/run/pods/<pod>/   a running Pod's volumes, env file, hosts file and termination file
    DIR/logs/             component logs and ``<ns>_<pod>.log`` container logs
    DIR/pvc/<claim>/      the hostPath PersistentVolume of each claim named <claim>

Standard library only: the control plane, the node agent and the tests all read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_CLAIM = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")  # a DNS subdomain, as PersistentVolumeClaim names are


class LayoutError(ValueError):
    """A name that cannot be a folder of the dev cluster."""


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd(self) -> Path:
        return self.root / "etcd"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def volumes(self) -> Path:
        return self.root / "pvc"

    @property
    def node_ready(self) -> Path:
        """Written by the node agent once it watches Pods."""
        return self.run / "nodeagent.ready"

    def pidfile(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self.run / "pods" / f"{namespace}_{name}"

    def pod_log(self, namespace: str, name: str) -> Path:
        return self.logs / f"{namespace}_{name}.log"

    def pvc_dir(self, claim: str) -> Path:
        """The folder of a claim's hostPath PersistentVolume (created)."""
        if len(claim) > 253 or not _CLAIM.fullmatch(claim):
            raise LayoutError(f"invalid PersistentVolumeClaim name {claim!r}")
        path = self.volumes / claim
        path.mkdir(parents=True, exist_ok=True)
        return path
