"""A real, local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

The operator must be tested against the real API machinery (watches,
conflicts, finalizers, owner references, RBAC, CRD schema validation), and
no kubelet or CNI can run where we test.  So, like envtest, we start the real
binaries on loopback; unlike envtest we also run the job, deployment,
replicaset, garbage-collector, namespace and service-account controllers (so
Jobs, Deployments, deletion and TokenRequest behave), and the edgeopt node
agent, which plays scheduler and kubelet for every Pod and runs it as an OCI
container with podman.

Everything lives under one folder::

    DIR/kubeconfig        admin kubeconfig (client certificate, system:masters)
    DIR/pki/              CA, serving and client certificates, SA signing key
    DIR/etcd/             etcd data (wiped at every ``up``)
    DIR/run/*.pid         one process group per component (see processes.py)
    DIR/logs/             component logs and ``<ns>_<pod>.log`` container logs
    DIR/run/pods/<pod>/   a running Pod's volumes, env file and termination file
    DIR/pvc/<claim>/      what a PVC named <claim> holds
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import EdgeoptError
from edgeopt_dev import processes
from edgeopt_dev.binaries import KUBERNETES_VERSION, ensure_binaries
from edgeopt_dev.pki import create_cluster_pki

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service, first address of the range
ISSUER = "https://kubernetes.default.svc.cluster.local"
# The real job controller (Pods, back-off, podFailurePolicy, deadlines and Job
# conditions come from Kubernetes itself), the deployment and replicaset
# controllers (the chart's operator and Triton), GC, namespace and service-account
# controllers, root-ca-cert-publisher (the kube-root-ca.crt ConfigMap every
# auto-mounted service-account token volume projects) and ttl-after-finished
# (deletes finished Jobs after ttlSecondsAfterFinished, as the operator expects).
CONTROLLERS = (
    "job,deployment,replicaset,garbagecollector,namespace,serviceaccount,serviceaccount-token,"
    "root-ca-cert-publisher,ttl-after-finished"
)
# Components in start order; ``down`` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "nodeagent")
#: Started on request after the others (``dev up --kueue``: kueue.py); ``down`` stops them first.
OPTIONAL_COMPONENTS = ("kueue",)


class ControlPlaneError(EdgeoptError):
    """The dev control plane could not start or stop; the message points at the log to read."""


class PortTaken(ControlPlaneError):
    """A component lost the race for the port picked for it."""


@dataclass(frozen=True)
class ControlPlane:
    """A running control plane, as the tests and the CLI see it."""

    dir: Path
    server: str
    kubeconfig: Path

    def pvc_dir(self, claim: str) -> Path:
        """The local folder a PersistentVolumeClaim named ``claim`` maps to (created)."""
        return pvc_dir(self.dir, claim)

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "ca.crt"


def pvc_dir(root: Path, claim: str) -> Path:
    if not claim or len(claim) > 253 or not all(c.isalnum() or c in "-." for c in claim) or claim[0] in "-.":
        raise ControlPlaneError(f"invalid PersistentVolumeClaim name {claim!r}")
    path = root / "pvc" / claim
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log(msg: str) -> None:
    print(f"[dev] {msg}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pidfile(root: Path, name: str) -> Path:
    return root / "run" / f"{name}.pid"


def _kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    """Write a self-contained kubeconfig (certificates inlined) readable by kubectl and the client."""
    import base64

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "edgeopt-dev", "cluster": {
            "server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "edgeopt-dev", "context": {"cluster": "edgeopt-dev", "user": user}}],
        "current-context": "edgeopt-dev",
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")  # JSON is valid YAML
    tmp.chmod(0o600)
    os.replace(tmp, path)


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait(
    what: str, check: Callable[[], bool], deadline: float, watch: dict[str, subprocess.Popen[bytes]], root: Path
) -> None:
    while not check():
        for name, proc in watch.items():
            if proc.poll() is not None:
                tail = _tail(root / "logs" / f"{name}.log")
                kind = PortTaken if "address already in use" in tail else ControlPlaneError
                raise kind(f"{name} exited with code {proc.returncode} while waiting for {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"timed out waiting for {what}; see the logs in {root / 'logs'}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def running(root: Path) -> dict[str, int]:
    """Components of the control plane in ``root`` whose recorded process still runs."""
    alive = {}
    for name in COMPONENTS:
        pid = processes.live_pid(_pidfile(root, name))
        if pid is not None:
            alive[name] = pid
    return alive


def load(root: Path) -> ControlPlane:
    """The control plane already running in ``root`` (as ``up --detach`` left it)."""
    root = root.resolve()
    try:
        state = json.loads((root / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise ControlPlaneError(f"no control plane state in {root}: {exc}") from exc
    return ControlPlane(root, state["server"], root / "kubeconfig")


def up(
    root: Path,
    *,
    timeout: float = 90.0,
    die_with_parent: bool = False,
    audit: bool = False,
) -> ControlPlane:
    """Start etcd, kube-apiserver, kube-controller-manager and the node agent; return when ready.

    ``audit`` writes the API server's audit log (every request at Metadata
    level: who, verb, object, timestamps; never bodies) to ``logs/audit.log``,
    which the benchmarks count API requests per client and per resource from.

    A DIR left behind by a crashed run is cleaned first: processes still
    recorded there are stopped, etcd data and certificates are made anew.
    ``die_with_parent`` ties every component to this process (tests), so a
    killed pytest does not leave a control plane behind.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    alive = running(root)
    if set(alive) == set(COMPONENTS):
        raise ControlPlaneError(
            f"a control plane is already running in {root} (pids {sorted(alive.values())}); "
            f"use it, or stop it with `edgeopt dev down --dir {root}`"
        )
    if alive or any((root / "run").glob("**/*.pid")):
        _log(f"cleaning up a previous run in {root}")
        down(root)
    bins = ensure_binaries(["etcd", "kube-apiserver", "kube-controller-manager"])
    if shutil.which("podman") is None:
        _log("warning: podman is not installed, so the node agent cannot run Pods (they wait in "
             "ContainerCreating); `edgeopt dev images` installs it and builds the images Pods run")
    for attempt in range(1, 4):
        _wipe(root)
        try:
            return _start(root, bins, timeout, die_with_parent, audit)
        except PortTaken as exc:
            # Free ports are picked before the components bind them; on a busy
            # machine someone else can win that race.  New ports, new try.
            _log(f"{exc} (attempt {attempt}); retrying with other ports")
    raise ControlPlaneError(f"could not find free loopback ports for the control plane in {root}")


def _wipe(root: Path) -> None:
    for stale in ("etcd", "pki", "run", "logs", "state.json", "kubeconfig"):
        path = root / stale
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    (root / "pvc").mkdir(exist_ok=True)


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


def _audit_args(root: Path) -> list[str]:
    policy = root / "run" / "audit-policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(AUDIT_POLICY)
    return [f"--audit-policy-file={policy}", f"--audit-log-path={root / 'logs' / 'audit.log'}",
            "--audit-log-format=json", "--audit-log-mode=batch", "--audit-log-batch-max-wait=1s"]  # fmt: skip


def _start(
    root: Path, bins: dict[str, Path], timeout: float, die_with_parent: bool, audit: bool = False
) -> ControlPlane:
    t0 = time.monotonic()
    deadline = t0 + timeout
    pki = create_cluster_pki(root / "pki", SERVICE_IP)
    etcd_port, peer_port, api_port, kcm_port = (_free_port() for _ in range(4))
    server = f"https://127.0.0.1:{api_port}"
    logs = root / "logs"
    started: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, cmd: list[str]) -> None:
        started[name] = processes.spawn(
            cmd, log=logs / f"{name}.log", pidfile=_pidfile(root, name), cwd=root, die_with_parent=die_with_parent
        )

    try:
        start("etcd", [
            str(bins["etcd"]), "--name=edgeopt", f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=edgeopt=http://127.0.0.1:{peer_port}",
            "--initial-cluster-state=new", "--unsafe-no-fsync", "--log-level=warn",
        ])
        start("kube-apiserver", [
            str(bins["kube-apiserver"]), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}", "--authorization-mode=RBAC",
            f"--service-account-issuer={ISSUER}", f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Its finalizer is removed by the pvc-protection controller, which
            # we do not run: PVCs would block namespace deletion forever.
            "--disable-admission-plugins=StorageObjectInUseProtection",
            f"--cert-dir={root / 'pki' / 'apiserver-generated'}", "--profiling=false",
            # `kubectl logs` goes through the node agent's kubelet endpoint.
            f"--kubelet-client-certificate={pki.kubelet_client.cert}",
            f"--kubelet-client-key={pki.kubelet_client.key}",
            f"--kubelet-certificate-authority={pki.ca.cert}", "--kubelet-preferred-address-types=InternalIP",
            # Endpoints may not hold a loopback address, so the lease reconciler
            # would fail every few seconds; nothing here routes to it anyway.
            "--endpoint-reconciler-type=none",
            *(_audit_args(root) if audit else []),
        ])
        _write_state(root, server, etcd_port, api_port, kcm_port)
        _kubeconfig(root / "kubeconfig", server, pki.ca.cert, pki.admin.cert, pki.admin.key, "edgeopt-admin")
        kcm_kubeconfig = root / "pki" / "controller-manager.kubeconfig"
        _kubeconfig(kcm_kubeconfig, server, pki.ca.cert, pki.controller_manager.cert, pki.controller_manager.key,
                    "system:kube-controller-manager")
        admin = ssl.create_default_context(cafile=str(pki.ca.cert))
        admin.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        _wait("kube-apiserver /readyz", lambda: _https_ok(f"{server}/readyz", admin), deadline, started, root)
        _log(f"kube-apiserver ready after {time.monotonic() - t0:.1f}s at {server}")
        start("kube-controller-manager", [
            str(bins["kube-controller-manager"]), f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}", f"--authorization-kubeconfig={kcm_kubeconfig}",
            f"--controllers={CONTROLLERS}", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}", f"--root-ca-file={pki.ca.cert}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            f"--cert-dir={root / 'pki' / 'controller-manager-generated'}", "--leader-elect=false",
            "--profiling=false",
        ])
        start("nodeagent", [
            sys.executable, "-m", "edgeopt_dev.nodeagent", "--kubeconfig", str(root / "kubeconfig"),
            "--dir", str(root),
        ])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; /healthz needs no identity
        _wait("kube-controller-manager /healthz",
              lambda: _https_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure), deadline, started, root)
        # Pods cannot be created before the default ServiceAccount exists, and
        # their token volume needs kube-root-ca.crt: wait for both controllers.
        _wait("the default ServiceAccount and kube-root-ca.crt",
              lambda: _https_ok(f"{server}/api/v1/namespaces/default/serviceaccounts/default", admin)
              and _https_ok(f"{server}/api/v1/namespaces/default/configmaps/kube-root-ca.crt", admin),
              deadline, started, root)
        _wait("the node agent", lambda: (root / "run" / "nodeagent.ready").exists(), deadline, started, root)
    except BaseException:
        down(root)
        raise
    _log(f"control plane ready in {time.monotonic() - t0:.1f}s (Kubernetes {KUBERNETES_VERSION})")
    return ControlPlane(root, server, root / "kubeconfig")


def _write_state(root: Path, server: str, etcd_port: int, api_port: int, kcm_port: int) -> None:
    state = {"server": server, "etcdPort": etcd_port, "apiserverPort": api_port,
             "controllerManagerPort": kcm_port, "kubernetesVersion": KUBERNETES_VERSION}
    (root / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def down(root: Path, grace: float = 10.0) -> list[str]:
    """Stop every process recorded in ``root``; return the names of those that were running.

    The node agent goes first (it stops its Pods' containers itself), then any
    container of this cluster it left behind if it died, then the control
    plane in reverse start order.  Safe to call on a DIR whose processes are
    long dead.
    """
    from edgeopt_dev.podrun import remove_cluster_containers  # podrun -> podspec -> this module

    root = root.resolve()
    stopped = []
    for name in OPTIONAL_COMPONENTS:
        if processes.live_pid(_pidfile(root, name)):
            stopped.append(name)
        processes.stop_pidfile(_pidfile(root, name), grace=grace)
    names = list(reversed(COMPONENTS))
    for name in names[:1]:
        if processes.live_pid(_pidfile(root, name)):
            stopped.append(name)
        processes.stop_pidfile(_pidfile(root, name), grace=grace)
    if shutil.which("podman"):
        stopped += [f"container {name}" for name in remove_cluster_containers(root)]
    for name in names[1:]:
        if processes.live_pid(_pidfile(root, name)):
            stopped.append(name)
        processes.stop_pidfile(_pidfile(root, name), grace=grace)
    (root / "run" / "nodeagent.ready").unlink(missing_ok=True)
    return stopped


def wait_foreground(cp: ControlPlane) -> str:
    """Block until a component exits; return its name (Ctrl-C raises KeyboardInterrupt)."""
    while True:
        alive = running(cp.dir)
        gone = [n for n in COMPONENTS if n not in alive]
        if gone:
            return gone[0]
        time.sleep(0.5)
