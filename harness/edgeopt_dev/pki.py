"""A throw-away certificate authority for the local control plane.

kube-apiserver only serves TLS and, with RBAC on, needs to know who is
calling: the admin and kube-controller-manager authenticate with client
certificates signed by this CA, and ServiceAccount tokens are signed with a
separate key so TokenRequest works.  We drive the ``openssl`` CLI rather than
add a Python crypto dependency: it is on every machine that can build Go.
EC P-256 keys keep generation in the tens of milliseconds.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import EdgeoptError


class PKIError(EdgeoptError):
    """openssl is missing or refused to make a key or certificate."""


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    """Everything the control plane needs, as files under one folder."""

    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    controller_manager: CertPair
    kubelet: CertPair  # the node agent's kubelet endpoint (serves container logs)
    kubelet_client: CertPair  # kube-apiserver -> kubelet
    service_account_key: Path
    service_account_pub: Path
    scheduler: CertPair  # system:kube-scheduler, bound to its bootstrap ClusterRoles


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if not exe:
        raise PKIError("the `openssl` command is needed to make the dev cluster's certificates; install openssl")
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PKIError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _key(path: Path) -> Path:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
    path.chmod(0o600)
    return path


def _signed(
    folder: Path, name: str, subject: str, ca: CertPair, *, server: bool, sans: list[str] | None = None
) -> CertPair:
    key = _key(folder / f"{name}.key")
    csr = folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}",
    ]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    cert = folder / f"{name}.crt"
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-set_serial",
        str(secrets.randbits(63)),
        "-days",
        "365",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    csr.unlink()
    ext.unlink()
    return CertPair(cert, key)


def create_cluster_pki(folder: Path, service_ip: str) -> ClusterPKI:
    """Make a fresh CA, serving cert, client certs and SA signing key in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca_key = _key(folder / "ca.key")
    ca_cert = folder / "ca.crt"
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        "-subj",
        "/CN=edgeopt-dev-ca",
        "-days",
        "3650",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        str(ca_cert),
    )
    ca = CertPair(ca_cert, ca_key)
    sans = [
        "IP:127.0.0.1",
        f"IP:{service_ip}",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    apiserver = _signed(folder, "apiserver", "/CN=kube-apiserver", ca, server=True, sans=sans)
    # O=system:masters is the built-in cluster-admin group; the controller
    # manager gets the bootstrap RBAC identity real clusters give it.
    admin = _signed(folder, "admin", "/O=system:masters/CN=edgeopt-admin", ca, server=False)
    kcm = _signed(folder, "controller-manager", "/CN=system:kube-controller-manager", ca, server=False)
    scheduler = _signed(folder, "scheduler", "/CN=system:kube-scheduler", ca, server=False)
    sa_key = _key(folder / "sa.key")
    sa_pub = folder / "sa.pub"
    _openssl("ec", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    kubelet = _signed(
        folder, "kubelet", "/CN=system:node:edgeopt-local", ca, server=True, sans=["IP:127.0.0.1", "DNS:localhost"]
    )
    kubelet_client = _signed(
        folder, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", ca, server=False
    )
    return ClusterPKI(ca, apiserver, admin, kcm, kubelet, kubelet_client, sa_key, sa_pub, scheduler)
