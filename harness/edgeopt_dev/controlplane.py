"""A real, local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

The operator must be tested against the real API machinery (watches,
conflicts, finalizers, owner references, RBAC, CRD schema validation,
scheduling), and no kubelet or CNI can run where we test.  So, like envtest,
we start the real binaries on loopback; unlike envtest we also run
kube-scheduler, the job, deployment, replicaset, garbage-collector,
namespace, service-account, endpoint(slice) and persistentvolume-binder
controllers (so Jobs, Deployments, Services, claims, deletion and
TokenRequest behave), and the edgeopt node agent, which plays kubelet for
the one Node (and provisions each claim's hostPath volume), running every
Pod as an OCI container with podman.  Where everything lives: layout.py.
"""

from __future__ import annotations

import json
import os
import shutil
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
from edgeopt_dev.layout import Layout, LayoutError
from edgeopt_dev.netutil import free_port
from edgeopt_dev.pki import CertPair, ClusterPKI, create_cluster_pki
from edgeopt_dev.podnet import PodNetworkError, ensure_local_route

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service, first address of the range
ISSUER = "https://kubernetes.default.svc.cluster.local"
# The real job controller (Pods, back-off, podFailurePolicy, deadlines and Job
# conditions come from Kubernetes itself), the deployment and replicaset
# controllers (the chart's operator and Triton), GC, namespace and service-account
# controllers, root-ca-cert-publisher (the kube-root-ca.crt ConfigMap every
# auto-mounted service-account token volume projects) and ttl-after-finished
# (deletes finished Jobs after ttlSecondsAfterFinished, as the operator expects), and
# endpoint and endpointslice (each Service's Pod IPs and their readiness: what the
# operator discovers Triton replicas from, and what Service names resolve to here).
# persistentvolume-binder binds each claim to the hostPath volume the node agent
# provisions for it (and marks the volume Released when the claim goes).
CONTROLLERS = (
    "job,deployment,replicaset,garbagecollector,namespace,serviceaccount,serviceaccount-token,"
    "root-ca-cert-publisher,ttl-after-finished,endpoint,endpointslice,persistentvolume-binder"
)
# Components in start order; ``down`` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "nodeagent")
BINARIES = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
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

    @property
    def layout(self) -> Layout:
        return Layout(self.dir)

    def pvc_dir(self, claim: str) -> Path:
        """The folder of the hostPath volume of every PersistentVolumeClaim named ``claim`` (created)."""
        try:
            return self.layout.pvc_dir(claim)
        except LayoutError as exc:
            raise ControlPlaneError(str(exc)) from exc

    @property
    def ca_file(self) -> Path:
        return self.layout.pki / "ca.crt"


def _log(msg: str) -> None:
    print(f"[dev] {msg}", file=sys.stderr, flush=True)


def _pidfile(root: Path, name: str) -> Path:
    return Layout(root).pidfile(name)


def _kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    """Write a self-contained kubeconfig (certificates inlined) readable by kubectl and the client."""
    import base64

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "edgeopt-dev", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
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
                tail = _tail(Layout(root).log(name))
                kind = PortTaken if "address already in use" in tail else ControlPlaneError
                raise kind(f"{name} exited with code {proc.returncode} while waiting for {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"timed out waiting for {what}; see the logs in {Layout(root).logs}")
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
    layout = Layout(root.resolve())
    try:
        state = json.loads(layout.state.read_text())
    except (OSError, ValueError) as exc:
        raise ControlPlaneError(f"no control plane state in {layout.root}: {exc}") from exc
    return ControlPlane(layout.root, state["server"], layout.kubeconfig)


def up(
    root: Path,
    *,
    timeout: float = 90.0,
    die_with_parent: bool = False,
    audit: bool = False,
    api_only: bool = False,
) -> ControlPlane:
    """Start etcd, kube-apiserver, the controllers, kube-scheduler and the node agent; return when ready.

    ``api_only`` starts etcd and kube-apiserver alone (no controllers, no node
    agent, so no podman and no images): enough for schema, dry-run and RBAC
    checks, which the API server answers by itself.

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
            f"use it, or stop it with `edgeopt-dev down --dir {root}`"
        )
    if alive or any(Layout(root).run.glob("**/*.pid")):
        _log(f"cleaning up a previous run in {root}")
        down(root)
    bins = ensure_binaries(BINARIES[:2] if api_only else BINARIES)
    try:
        if not api_only:
            ensure_local_route()
    except PodNetworkError as exc:
        raise ControlPlaneError(str(exc)) from exc
    if shutil.which("podman") is None and not api_only:
        _log(
            "warning: podman is not installed, so the node agent cannot run Pods (they wait in "
            "ContainerCreating); `edgeopt-dev images` installs it and builds the images Pods run"
        )
    for attempt in range(1, 4):
        _wipe(root)
        try:
            return _start(root, bins, timeout, die_with_parent, audit, api_only)
        except PortTaken as exc:
            # Free ports are picked before the components bind them; on a busy
            # machine someone else can win that race.  New ports, new try.
            _log(f"{exc} (attempt {attempt}); retrying with other ports")
    raise ControlPlaneError(f"could not find free loopback ports for the control plane in {root}")


def _wipe(root: Path) -> None:
    layout = Layout(root)
    for path in (layout.etcd, layout.pki, layout.run, layout.logs, layout.state, layout.kubeconfig):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    layout.volumes.mkdir(exist_ok=True)


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


def _audit_args(layout: Layout) -> list[str]:
    policy = layout.run / "audit-policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(AUDIT_POLICY)
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={layout.log('audit')}",
        "--audit-log-format=json",
        "--audit-log-mode=batch",
        "--audit-log-batch-max-wait=1s",
    ]


@dataclass
class _Start:
    """One attempt at starting the components: their ports, their processes, and how to wait for them."""

    layout: Layout
    pki: ClusterPKI
    bins: dict[str, Path]
    deadline: float
    die_with_parent: bool
    ports: dict[str, int]
    started: dict[str, subprocess.Popen[bytes]]

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def start(self, name: str, cmd: list[str]) -> None:
        self.started[name] = processes.spawn(
            cmd,
            log=self.layout.log(name),
            pidfile=self.layout.pidfile(name),
            cwd=self.layout.root,
            die_with_parent=self.die_with_parent,
        )

    def wait(self, what: str, check: Callable[[], bool]) -> None:
        _wait(what, check, self.deadline, self.started, self.layout.root)

    def client_kubeconfig(self, name: str, pair: CertPair, user: str) -> Path:
        path = self.layout.pki / f"{name}.kubeconfig"
        _kubeconfig(path, self.server, self.pki.ca.cert, pair.cert, pair.key, user)
        return path

    def healthz(self, name: str, port: int) -> None:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; /healthz needs no identity
        self.wait(f"{name} /healthz", lambda: _https_ok(f"https://127.0.0.1:{port}/healthz", insecure))


def _start(
    root: Path,
    bins: dict[str, Path],
    timeout: float,
    die_with_parent: bool,
    audit: bool = False,
    api_only: bool = False,
) -> ControlPlane:
    t0 = time.monotonic()
    layout = Layout(root)
    pki = create_cluster_pki(layout.pki, SERVICE_IP)
    names = ("etcd", "peer", "apiserver", "controller-manager", "scheduler")
    ports = {name: free_port() for name in names}
    run = _Start(layout, pki, bins, t0 + timeout, die_with_parent, ports, {})
    try:
        _start_api(run, audit)
        _write_state(layout, run.server, ports)
        _kubeconfig(layout.kubeconfig, run.server, pki.ca.cert, pki.admin.cert, pki.admin.key, "edgeopt-admin")
        admin = ssl.create_default_context(cafile=str(pki.ca.cert))
        admin.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        run.wait("kube-apiserver /readyz", lambda: _https_ok(f"{run.server}/readyz", admin))
        _log(f"kube-apiserver ready after {time.monotonic() - t0:.1f}s at {run.server}")
        if api_only:
            return ControlPlane(root, run.server, layout.kubeconfig)
        _start_controllers(run)
        # Pods cannot be created before the default ServiceAccount exists, and
        # their token volume needs kube-root-ca.crt: wait for both controllers.
        run.wait(
            "the default ServiceAccount and kube-root-ca.crt",
            lambda: _https_ok(f"{run.server}/api/v1/namespaces/default/serviceaccounts/default", admin)
            and _https_ok(f"{run.server}/api/v1/namespaces/default/configmaps/kube-root-ca.crt", admin),
        )
        run.wait("the node agent", layout.node_ready.exists)
    except BaseException:
        down(root)
        raise
    _log(f"control plane ready in {time.monotonic() - t0:.1f}s (Kubernetes {KUBERNETES_VERSION})")
    return ControlPlane(root, run.server, layout.kubeconfig)


def _start_api(run: _Start, audit: bool) -> None:
    """etcd, then kube-apiserver on it."""
    root, pki, ports = run.layout.root, run.pki, run.ports
    etcd = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['peer']}"
    run.start(
        "etcd",
        [
            str(run.bins["etcd"]),
            "--name=edgeopt",
            f"--data-dir={run.layout.etcd}",
            f"--listen-client-urls={etcd}",
            f"--advertise-client-urls={etcd}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=edgeopt={peer}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    run.start(
        "kube-apiserver",
        [
            str(run.bins["kube-apiserver"]),
            f"--etcd-servers={etcd}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # StorageObjectInUseProtection: its finalizers are removed by the pvc- and
            # pv-protection controllers, which we do not run (claims would block
            # namespace deletion forever). TaintNodesByCondition: the not-ready taint it
            # puts on a new Node is lifted by the node lifecycle controller, which has
            # no heartbeats to watch here (the node agent's Node is Ready while it runs).
            "--disable-admission-plugins=StorageObjectInUseProtection,TaintNodesByCondition",
            f"--cert-dir={root / 'pki' / 'apiserver-generated'}",
            "--profiling=false",
            # `kubectl logs` goes through the node agent's kubelet endpoint.
            f"--kubelet-client-certificate={pki.kubelet_client.cert}",
            f"--kubelet-client-key={pki.kubelet_client.key}",
            f"--kubelet-certificate-authority={pki.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
            # Endpoints may not hold a loopback address, so the lease reconciler
            # would fail every few seconds; nothing here routes to it anyway.
            "--endpoint-reconciler-type=none",
            *(_audit_args(run.layout) if audit else []),
        ],
    )


def _start_controllers(run: _Start) -> None:
    """kube-controller-manager, kube-scheduler (each with its bootstrap RBAC identity) and the node agent."""
    pki, ports, layout = run.pki, run.ports, run.layout
    kcm = run.client_kubeconfig("controller-manager", pki.controller_manager, "system:kube-controller-manager")
    run.start(
        "kube-controller-manager",
        [
            str(run.bins["kube-controller-manager"]),
            f"--kubeconfig={kcm}",
            f"--authentication-kubeconfig={kcm}",
            f"--authorization-kubeconfig={kcm}",
            f"--controllers={CONTROLLERS}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca.cert}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['controller-manager']}",
            f"--cert-dir={layout.pki / 'controller-manager-generated'}",
            "--leader-elect=false",
            "--profiling=false",
        ],
    )
    scheduler = run.client_kubeconfig("scheduler", pki.scheduler, "system:kube-scheduler")
    run.start(
        "kube-scheduler",
        [
            str(run.bins["kube-scheduler"]),
            f"--kubeconfig={scheduler}",
            f"--authentication-kubeconfig={scheduler}",
            f"--authorization-kubeconfig={scheduler}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}",
            f"--cert-dir={layout.pki / 'scheduler-generated'}",
            "--leader-elect=false",
            "--profiling=false",
        ],
    )
    run.start(
        "nodeagent",
        [
            sys.executable,
            "-m",
            "edgeopt_dev.nodeagent",
            "--kubeconfig",
            str(layout.kubeconfig),
            "--dir",
            str(layout.root),
        ],
    )
    run.healthz("kube-controller-manager", ports["controller-manager"])
    run.healthz("kube-scheduler", ports["scheduler"])


def _write_state(layout: Layout, server: str, ports: dict[str, int]) -> None:
    state = {
        "server": server,
        "etcdPort": ports["etcd"],
        "apiserverPort": ports["apiserver"],
        "controllerManagerPort": ports["controller-manager"],
        "schedulerPort": ports["scheduler"],
        "kubernetesVersion": KUBERNETES_VERSION,
    }
    layout.state.write_text(json.dumps(state, indent=2) + "\n")


def down(root: Path, grace: float = 10.0) -> list[str]:
    """Stop every process recorded in ``root``; return the names of those that were running.

    The node agent goes first (it stops its Pods' containers itself), then any
    container of this cluster it left behind if it died, then the control
    plane in reverse start order.  Safe to call on a DIR whose processes are
    long dead.
    """
    from edgeopt_dev.podrun import remove_cluster_containers

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
    Layout(root).node_ready.unlink(missing_ok=True)
    return stopped


def wait_foreground(cp: ControlPlane) -> str:
    """Block until a component exits; return its name (Ctrl-C raises KeyboardInterrupt)."""
    while True:
        alive = running(cp.dir)
        gone = [n for n in COMPONENTS if n not in alive]
        if gone:
            return gone[0]
        time.sleep(0.5)
