"""What a kubelet resolves for a Pod before its runtime starts it, or exactly why it cannot.

The node agent's Pod half (podrun.py turns the result into ``podman run``):
env (values, ``$(VAR)`` expansion, fieldRef, ConfigMap/Secret refs), volumes
materialized as local folders (a claim -> the hostPath of the
PersistentVolume it is bound to, ConfigMap/Secret/projected/downwardAPI files
and the projected ServiceAccount token, emptyDir, hostPath) and fsGroup
ownership.  Whether the Pod fits the Node is kube-scheduler's to say; it
binds the Pod here only once it does.  Two outcomes besides a result:

* :class:`NotYet` - what a kubelet would keep the Pod Pending on (a ConfigMap
  that does not exist yet, runAsNonRoot with a root user); the runner retries
  and the Pod shows the reason.
* :class:`CannotEmulate` - a feature the dev node cannot give faithfully;
  the Pod fails with a message that says so.  We never pretend.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import CoreV1Api
from kubernetes.client.rest import ApiException

from edgeopt_dev.podnet import ServiceDirectory

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
# containerd's default capability set: a root process in a container has
# these, not everything root has on the host.
DEFAULT_CAPS = (
    "chown",
    "dac_override",
    "fsetid",
    "fowner",
    "mknod",
    "net_raw",
    "setgid",
    "setuid",
    "setfcap",
    "setpcap",
    "net_bind_service",
    "sys_chroot",
    "kill",
    "audit_write",
)
_SUFFIX = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class CannotEmulate(Exception):
    """The Pod asks for something the dev node cannot faithfully give."""


class NotYet(Exception):
    """What a kubelet would wait on; the Pod stays Pending with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class RuntimeContext:
    root: Path  # the control plane DIR
    core: CoreV1Api
    api_host: str
    api_port: int
    services: ServiceDirectory | None = None  # what Service names resolve to (None: read once from the API)


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names replaced, ``$$`` escapes, unknown left as is."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, value)


def field_value(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    status = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or []),
        "status.hostIP": status.get("hostIP", ""),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise CannotEmulate(f"fieldRef {path} is not emulated by the edgeopt node agent")


def _read(kind: str, name: str, namespace: str, ctx: RuntimeContext) -> dict[str, Any] | None:
    read = ctx.core.read_namespaced_config_map if kind == "configmap" else ctx.core.read_namespaced_secret
    try:
        obj = read(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    data = dict(obj.data or {})
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in data.items()}
    out: dict[str, Any] = {k: v.encode() for k, v in data.items()}
    out.update({k: base64.b64decode(v) for k, v in (getattr(obj, "binary_data", None) or {}).items()})
    return out


def _key_ref(kind: str, ref: dict[str, Any], namespace: str, ctx: RuntimeContext) -> str | None:
    data = _read(kind, ref["name"], namespace, ctx)
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        what = (
            f'{kind} "{ref["name"]}" not found'
            if data is None
            else f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}"
        )
        raise NotYet("CreateContainerConfigError", what)
    return bytes(data[ref["key"]]).decode()


def build_env(pod: dict[str, Any], container: dict[str, Any], ctx: RuntimeContext) -> dict[str, str]:
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {  # PATH and HOME come from the image, as with a CRI runtime
        "HOSTNAME": pod["metadata"]["name"],
        # In-cluster clients find the API server here (the Service IP does not route locally).
        "KUBERNETES_SERVICE_HOST": ctx.api_host,
        "KUBERNETES_SERVICE_PORT": str(ctx.api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(ctx.api_port),
        "KUBERNETES_PORT": f"tcp://{ctx.api_host}:{ctx.api_port}",
    }
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            data = _read(kind, ref["name"], ns, ctx)
            if data is None:
                if ref.get("optional"):
                    continue
                raise NotYet("CreateContainerConfigError", f'{kind} "{ref["name"]}" not found')
            env.update({prefix + k: bytes(v).decode() for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"]
        value: str | None
        if "fieldRef" in vf:
            value = field_value(pod, vf["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in vf:
            value = _key_ref("configmap", vf["configMapKeyRef"], ns, ctx)
        elif "secretKeyRef" in vf:
            value = _key_ref("secret", vf["secretKeyRef"], ns, ctx)
        else:
            raise CannotEmulate(f"env {name}: valueFrom {sorted(vf)} is not emulated by the edgeopt node agent")
        if value is not None:
            env[name] = value
    return env


def _safe_relpath(path: str) -> str:
    if os.path.isabs(path) or ".." in Path(path).parts or not path:
        raise CannotEmulate(f"volume item path {path!r} must be relative without '..'")
    return path


def _write_files(folder: Path, files: dict[str, bytes], modes: dict[str, int], default_mode: int) -> None:
    for rel, content in files.items():
        target = folder / _safe_relpath(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(modes.get(rel, default_mode))


def _keyed_files(
    kind: str, src: dict[str, Any], namespace: str, ctx: RuntimeContext
) -> tuple[dict[str, bytes], dict[str, int]]:
    name = src.get("name") or src.get("secretName") or ""
    data = _read(kind, name, namespace, ctx)
    if data is None:
        if src.get("optional"):
            return {}, {}
        raise NotYet("ContainerCreating", f'MountVolume.SetUp failed: {kind} "{name}" not found')
    items = src.get("items")
    if not items:
        return {k: bytes(v) for k, v in data.items()}, {}
    files, modes = {}, {}
    for item in items:
        if item["key"] not in data:
            if src.get("optional"):
                continue
            raise NotYet("ContainerCreating", f"MountVolume.SetUp failed: {kind} {name} has no key {item['key']}")
        files[item["path"]] = bytes(data[item["key"]])
        if "mode" in item:
            modes[item["path"]] = int(item["mode"])
    return files, modes


def _downward_files(pod: dict[str, Any], items: list[dict[str, Any]]) -> tuple[dict[str, bytes], dict[str, int]]:
    files, modes = {}, {}
    for item in items:
        if "fieldRef" not in item:
            raise CannotEmulate(f"downwardAPI item {item.get('path')}: only fieldRef is emulated")
        files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"]).encode()
        if "mode" in item:
            modes[item["path"]] = int(item["mode"])
    return files, modes


def _token(pod: dict[str, Any], src: dict[str, Any], ctx: RuntimeContext) -> bytes:
    meta = pod["metadata"]
    spec: dict[str, Any] = {
        "expirationSeconds": int(src.get("expirationSeconds", 3600)),
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
    }
    if src.get("audience"):
        spec["audiences"] = [src["audience"]]
    sa = pod["spec"].get("serviceAccountName") or "default"
    result = ctx.core.create_namespaced_service_account_token(sa, meta["namespace"], {"spec": spec})
    return str(result.status.token).encode()


def claim_path(claim: str, namespace: str, ctx: RuntimeContext) -> Path:
    """The folder of the hostPath (or local) PersistentVolume a claim is bound to, as a kubelet mounts it."""
    try:
        pvc = ctx.core.read_namespaced_persistent_volume_claim(claim, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        raise NotYet("ContainerCreating", f'persistentvolumeclaim "{claim}" not found') from exc
    if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
        raise NotYet("ContainerCreating", f'persistentvolumeclaim "{claim}" is not bound')
    pv = ctx.core.read_persistent_volume(pvc.spec.volume_name)
    source = pv.spec.host_path or pv.spec.local
    if source is None:
        raise CannotEmulate(f"PersistentVolume {pv.metadata.name}: only hostPath and local volumes are emulated")
    path = Path(source.path)
    if not path.is_dir():
        if getattr(source, "type", None) != "DirectoryOrCreate":
            raise NotYet(
                "ContainerCreating",
                f"MountVolume.SetUp failed for volume {pv.metadata.name}: " f"{path} does not exist",
            )
        path.mkdir(parents=True)
    return path


def materialize_volume(
    pod: dict[str, Any], volume: dict[str, Any], folder: Path, ctx: RuntimeContext
) -> tuple[Path, bool]:
    """Make ``volume`` exist locally; return (source path, read-only)."""
    ns = pod["metadata"]["namespace"]
    name = volume["name"]
    if "persistentVolumeClaim" in volume:
        src = volume["persistentVolumeClaim"]
        return claim_path(src["claimName"], ns, ctx), bool(src.get("readOnly"))
    if "hostPath" in volume:
        path = Path(volume["hostPath"]["path"])
        kind = volume["hostPath"].get("type", "")
        if kind == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise NotYet("ContainerCreating", f"MountVolume.SetUp failed for volume {name}: {path} does not exist")
        return path, False
    target = folder / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if "emptyDir" in volume:
        target.chmod(0o777)
        return target, False
    files: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    if "configMap" in volume:
        files, modes = _keyed_files("configmap", volume["configMap"], ns, ctx)
        default = volume["configMap"].get("defaultMode", 0o644)
    elif "secret" in volume:
        files, modes = _keyed_files("secret", volume["secret"], ns, ctx)
        default = volume["secret"].get("defaultMode", 0o644)
    elif "downwardAPI" in volume:
        files, modes = _downward_files(pod, volume["downwardAPI"].get("items") or [])
        default = volume["downwardAPI"].get("defaultMode", 0o644)
    elif "projected" in volume:
        default = volume["projected"].get("defaultMode", 0o644)
        for source in volume["projected"].get("sources") or []:
            if "serviceAccountToken" in source:
                files[source["serviceAccountToken"]["path"]] = _token(pod, source["serviceAccountToken"], ctx)
            elif "configMap" in source:
                f, m = _keyed_files("configmap", source["configMap"], ns, ctx)
                files.update(f)
                modes.update(m)
            elif "secret" in source:
                f, m = _keyed_files("secret", source["secret"], ns, ctx)
                files.update(f)
                modes.update(m)
            elif "downwardAPI" in source:
                f, m = _downward_files(pod, source["downwardAPI"].get("items") or [])
                files.update(f)
                modes.update(m)
            else:
                raise CannotEmulate(f"projected volume {name}: source {sorted(source)} is not emulated")
    else:
        kinds = sorted(k for k in volume if k != "name")
        raise CannotEmulate(f"volume {name}: type {kinds} is not emulated by the edgeopt node agent")
    _write_files(target, files, modes, int(default))
    return target, True  # kubelet mounts these read-only


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2", "1Gi", "1e3") as a number."""
    text = str(value)
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    return float(text)


def subpath_source(volume: Path, sub: str) -> Path:
    """What kubelet does for a ``subPath`` mount: the folder inside the volume, made if missing.

    As kubelet's SafeMakeDir: missing folders take the volume root's mode
    (with fsGroup that is group-writable and setgid, so the Pod's group can
    write what kubelet made as root), and a path that resolves outside the
    volume, through a symbolic link, is refused rather than followed.
    """
    root = volume.resolve()
    mode = stat.S_IMODE(os.stat(root).st_mode)
    current = root
    for part in Path(_safe_relpath(sub)).parts:
        current = current / part
        if not current.exists() and not current.is_symlink():
            current.mkdir()
            os.chmod(current, mode)
        real = current.resolve()
        if real != root and root not in real.parents:
            raise NotYet("CreateContainerConfigError", f"subPath {sub!r} resolves outside its volume ({real})")
    return current.resolve()


def give_group(folder: Path, gid: int) -> None:
    """What kubelet does for fsGroup: the volume's files belong to the group, dirs setgid."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        os.chown(dirpath, -1, gid)
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o2070)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chown(p, -1, gid)
                os.chmod(p, os.stat(p).st_mode | 0o060)
