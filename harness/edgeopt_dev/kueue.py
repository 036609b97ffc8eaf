"""Kueue on the dev cluster: the real controller, its own CRDs, RBAC and webhooks, all from its Go module.

``edgeopt-dev up --kueue`` (and the ``kueue`` test fixture) builds
``sigs.k8s.io/kueue/cmd/kueue`` like the control-plane binaries
(binaries.py) and installs what Kueue's own kustomize base (config/default)
would, read from the module cache and renamed the same way (``kueue-``
prefix, namespace ``kueue-system``): the CRDs with their conversion-webhook
patches, the manager's ClusterRole and secrets Role, the webhook Service, the
empty certificate Secret and the webhook configurations.

Where a real cluster differs from ours:

- Identity: Kueue runs as the user ``edgeopt-dev:kueue`` (a client certificate
  from the dev CA, in ``pki/kueue.kubeconfig``) bound to Kueue's own
  ClusterRole and secrets Role, instead of a ServiceAccount token.
- Webhooks: the configurations keep Kueue's ``service:`` references and its
  internal certificate management (cert-controller writes the serving
  certificate for ``kueue-webhook-service.kueue-system.svc`` and injects the
  CA bundle).  No kube-proxy routes ClusterIPs here, so that Service is of
  type ExternalName, ``localhost``: kube-apiserver resolves an ExternalName
  Service to that host and the webhook's port, and still checks the
  certificate against ``<service>.<namespace>.svc``.  The webhook server
  listens on 127.0.0.1 only.  (A ``url:`` on loopback would need a
  certificate for 127.0.0.1, i.e. internal cert management off, which makes
  Kueue read its metrics certificate from the fixed path /etc/kueue/metrics.)
- Only the ``batch/job`` integration runs, and only the webhooks for
  ``batch`` and ``kueue.x-k8s.io`` objects are registered: Kueue's Pod,
  Deployment and StatefulSet webhooks (failurePolicy Fail) would otherwise
  sit in front of every Pod the dev cluster makes.
- The metrics server and the on-demand visibility API server are off
  (nothing scrapes them; the latter is an aggregated API server).
"""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgeopt_dev import processes
from edgeopt_dev.binaries import KUEUE_VERSION, ensure_binaries, module_dir
from edgeopt_dev.controlplane import ControlPlane, ControlPlaneError, _kubeconfig, _tail
from edgeopt_dev.layout import Layout
from edgeopt_dev.netutil import free_port
from edgeopt_dev.pki import CertPair, _signed

NAMESPACE = "kueue-system"
PREFIX = "kueue-"  # config/default's namePrefix
USER = "edgeopt-dev:kueue"
FRAMEWORKS = ("batch/job",)
#: API groups whose webhooks are registered: Jobs and Kueue's own objects.
WEBHOOK_GROUPS = frozenset({"batch", "kueue.x-k8s.io"})
#: Where Kueue's webhook Service points: kube-apiserver resolves an ExternalName Service to this host.
WEBHOOK_HOST = "localhost"
#: zap level: info, debug, or a number (3 shows why a Workload waits); EDGEOPT_KUEUE_LOG_LEVEL overrides.
LOG_LEVEL = os.environ.get("EDGEOPT_KUEUE_LOG_LEVEL", "info")


class KueueError(ControlPlaneError):
    """Kueue could not be installed or started; the message says where to look."""


@dataclass(frozen=True)
class Kueue:
    """A running Kueue, as tests see it."""

    version: str
    log: Path
    webhook_port: int
    health_port: int


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _prefixed(name: str) -> str:
    return name if name.startswith(PREFIX) else PREFIX + name


def _service_ref(ref: dict[str, Any], port: int) -> None:
    """A ``clientConfig.service`` of config/components, as config/default renames it, on ``port``."""
    ref["name"] = _prefixed(ref["name"])
    ref["namespace"] = NAMESPACE
    ref["port"] = port


def _crds(src: Path, port: int) -> list[dict[str, Any]]:
    """The CRDs the module's crd/kustomization.yaml lists, with its conversion-webhook patches applied."""
    kust = yaml.safe_load((src / "kustomization.yaml").read_text())
    crds = {d["metadata"]["name"]: d for path in kust["resources"] for d in _load(src / path)}
    for patch in kust.get("patches") or []:
        for doc in _load(src / patch["path"]):
            conversion = copy.deepcopy(doc["spec"]["conversion"])
            _service_ref(conversion["webhook"]["clientConfig"]["service"], port)
            crds[doc["metadata"]["name"]]["spec"]["conversion"] = conversion
    return list(crds.values())


def _webhooks(path: Path, port: int) -> list[dict[str, Any]]:
    out = []
    for doc in _load(path):
        kept = [w for w in doc["webhooks"] if {g for r in w["rules"] for g in r["apiGroups"]} <= WEBHOOK_GROUPS]
        for w in kept:
            _service_ref(w["clientConfig"]["service"], port)
        out.append({**doc, "metadata": {"name": _prefixed(doc["metadata"]["name"])}, "webhooks": kept})
    return out


def _rbac(src: Path) -> list[dict[str, Any]]:
    """Kueue's manager ClusterRole and secrets Role, bound to ``USER`` (leader election is off)."""
    role = _load(src / "role.yaml")[0]
    secrets = _load(src / "manager_secrets_role.yaml")[0]
    subject = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]
    out: list[dict[str, Any]] = []
    for doc, binding in ((role, "ClusterRoleBinding"), (secrets, "RoleBinding")):
        meta = {"name": _prefixed(doc["metadata"]["name"])}
        if doc["kind"] == "Role":
            meta["namespace"] = NAMESPACE
        out.append({**doc, "metadata": meta})
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": doc["kind"], "name": meta["name"]}
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": binding,
                "metadata": dict(meta),
                "roleRef": ref,
                "subjects": subject,
            }
        )
    return out


def manifests(module: Path, webhook_port: int) -> list[dict[str, Any]]:
    """Everything Kueue needs in the cluster, from the module's config/components."""
    comp = module / "config" / "components"
    service = _load(comp / "webhook" / "service.yaml")[0]
    secret = _load(comp / "internalcert" / "secret.yaml")[0]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {**secret, "metadata": {"name": _prefixed(secret["metadata"]["name"]), "namespace": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": _prefixed(service["metadata"]["name"]), "namespace": NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": WEBHOOK_HOST},
        },
        *_crds(comp / "crd", webhook_port),
        *_rbac(comp / "rbac"),
        *_webhooks(comp / "webhook" / "manifests.yaml", webhook_port),
    ]


def configuration(module: Path, webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    """Kueue's Configuration: the module's controller_manager_config.yaml, adjusted as the module doc says."""
    cfg = yaml.safe_load((module / "config" / "components" / "manager" / "controller_manager_config.yaml").read_text())
    service = _prefixed(_load(module / "config" / "components" / "webhook" / "service.yaml")[0]["metadata"]["name"])
    secret = _prefixed(_load(module / "config" / "components" / "internalcert" / "secret.yaml")[0]["metadata"]["name"])
    cfg.update(
        namespace=NAMESPACE,
        health={"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        metrics={"bindAddress": "0"},
        webhook={"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        leaderElection={"leaderElect": False},
        internalCertManagement={"enable": True, "webhookServiceName": service, "webhookSecretName": secret},
        integrations={"frameworks": list(FRAMEWORKS)},
        featureGates={"VisibilityOnDemand": False},
    )
    return dict(cfg)


def _pidfile(root: Path) -> Path:
    return Layout(root).pidfile("kueue")  # controlplane.down stops it (OPTIONAL_COMPONENTS)


def _kubeconfig_for_kueue(cp: ControlPlane) -> Path:
    pki = cp.dir / "pki"
    ca = CertPair(pki / "ca.crt", pki / "ca.key")
    pair = _signed(pki, "kueue", f"/CN={USER}", ca, server=False)
    path = pki / "kueue.kubeconfig"
    _kubeconfig(path, cp.server, ca.cert, pair.cert, pair.key, USER)
    return path


def _apply(cp: ControlPlane, kubectl: Path, docs: list[dict[str, Any]]) -> None:
    """Server-side apply (the CRDs are too large for client-side apply's annotation)."""
    body = yaml.safe_dump_all(docs, sort_keys=False)
    proc = subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(cp.kubeconfig),
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=edgeopt-dev",
            "-f",
            "-",
        ],
        input=body,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise KueueError(f"installing Kueue's manifests failed:\n{proc.stderr.strip()}")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _mount_certs(core: Any, secret: str, cert_dir: Path) -> bool:
    """Play kubelet's Secret volume: write the certificate Kueue's cert-controller put in ``secret``.

    cert-controller only fills the Secret; a Deployment mounts it at the
    webhook's cert dir, and the rotator waits for ``tls.crt`` to appear there.
    Done once, at start: the certificates it makes are valid for years.
    """
    from kubernetes.client.exceptions import ApiException

    try:
        data = core.read_namespaced_secret(secret, NAMESPACE).data or {}
    except ApiException:
        return False
    if not data.get("tls.crt") or not data.get("tls.key"):
        return False
    for name in ("ca.crt", "tls.crt", "tls.key"):
        if name in data:
            path = cert_dir / name
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(base64.b64decode(data[name]))
            tmp.chmod(0o600)
            tmp.replace(path)
    return True


def start(cp: ControlPlane, *, timeout: float = 180.0, die_with_parent: bool = False) -> Kueue:
    """Install Kueue's CRDs, RBAC and webhooks, start the controller; return when it is ready."""
    from kubernetes import client, config

    bins = ensure_binaries(["kueue", "kubectl"])
    module = module_dir("kueue")
    webhook_port, health_port = free_port(), free_port()
    _apply(cp, bins["kubectl"], manifests(module, webhook_port))
    run, certs = cp.dir / "run", cp.dir / "run" / "kueue-certs"
    certs.mkdir(parents=True, exist_ok=True)
    cfg = configuration(module, webhook_port, health_port, certs)
    (run / "kueue-config.yaml").write_text(yaml.safe_dump(cfg))
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(_kubeconfig_for_kueue(cp)), "HOME": str(run)}
    log = cp.dir / "logs" / "kueue.log"
    t0 = time.monotonic()
    cmd = [str(bins["kueue"]), f"--config={run / 'kueue-config.yaml'}", f"--zap-log-level={LOG_LEVEL}"]
    proc = processes.spawn(cmd, log=log, pidfile=_pidfile(cp.dir), env=env, cwd=cp.dir, die_with_parent=die_with_parent)
    api = config.new_client_from_config(config_file=str(cp.kubeconfig))
    try:
        core, mounted = client.CoreV1Api(api), False
        while not _ready(health_port):
            mounted = mounted or _mount_certs(core, cfg["internalCertManagement"]["webhookSecretName"], certs)
            if proc.poll() is not None:
                raise KueueError(f"kueue exited with code {proc.returncode} while starting:\n{_tail(log)}")
            if time.monotonic() - t0 > timeout:
                stop(cp.dir)
                raise KueueError(f"kueue was not ready after {timeout:.0f}s; see {log}:\n{_tail(log)}")
            time.sleep(0.2)
    finally:
        api.close()
    print(f"[dev] Kueue {KUEUE_VERSION} ready in {time.monotonic() - t0:.1f}s (log {log})", file=sys.stderr)
    return Kueue(KUEUE_VERSION, log, webhook_port, health_port)


def running(root: Path) -> bool:
    return processes.live_pid(_pidfile(root)) is not None


def stop(root: Path, kubeconfig: Path | None = None, kubectl: Path | None = None) -> bool:
    """Stop Kueue; with a kubeconfig, also remove its webhook configurations (Jobs no longer wait on it)."""
    was = running(root)
    processes.stop_pidfile(_pidfile(root))
    if kubeconfig is not None and kubectl is not None:
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            subprocess.run(
                [
                    str(kubectl),
                    "--kubeconfig",
                    str(kubeconfig),
                    "delete",
                    kind,
                    f"{PREFIX}{kind.split('webhook')[0]}-webhook-configuration",
                    "--ignore-not-found",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
    return was
