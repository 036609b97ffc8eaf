"""Run a bound Pod's container as an OCI container with podman: the node agent's runtime.

Three layers, so the part that decides is tested without podman:

* :func:`verify_run_as_non_root` and :func:`image_uid` - what the kubelet
  decides about ``runAsNonRoot`` against the image's USER (pure);
* :func:`plan_container` - a Pod dict, its resolved env and volume folders in,
  a :class:`ContainerPlan` out; :func:`podman_run_args` turns that into the
  ``podman run`` command line (pure);
* :func:`resolve`, :class:`Running` and :func:`run_container` - the API
  look-ups (env from ConfigMaps/Secrets, volume files, the projected token:
  podspec.py resolves them) and the run itself, with the exit code and the
  termination message read back as a kubelet reads them.

The node agent's kubelet half (kubelet.py) runs every Pod through
:func:`resolve` and :class:`Running`.

Env values go through a 0600 env file, never the command line: a Secret's
value must not show up in ``ps``.  Every container gets host networking (each
Pod has an address of its own on this machine, and an ``/etc/hosts`` where
Service names resolve to their ready endpoints: podnet.py), the image's own
filesystem, and the securityContext enforced by the runtime: user and groups,
``--read-only``, capabilities (containerd's default set, then drop/add),
no_new_privs, seccomp.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt_dev.containers import image_exists, image_user, podman_env
from edgeopt_dev.podnet import directory_from_api, write_in_place
from edgeopt_dev.podspec import (
    DEFAULT_CAPS,
    DEFAULT_TERMINATION_PATH,
    CannotEmulate,
    NotYet,
    RuntimeContext,
    build_env,
    expand,
    give_group,
    materialize_volume,
    subpath_source,
)

MAX_MESSAGE = 4096
#: Labels on every container the node agent starts: its Pod, and the dev cluster (its folder) it runs for.
POD_UID_LABEL = "io.edgeopt.pod-uid"
CLUSTER_LABEL = "io.edgeopt.cluster"
#: An image reference (name[:tag][@digest]); never an option: it lands on podman's command line.
_IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
#: Env names podman itself reads; a value for the container must not reach podman through them.
_UNSAFE_FOR_INHERIT = {"PATH", "HOME", "TMPDIR", "CONTAINERS_CONF", "CONTAINER_HOST", "CONTAINER_CONNECTION"}


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


@dataclass
class ContainerPlan:
    """Everything ``podman run`` needs for one container of a Pod."""

    name: str
    image: str
    command: list[str] | None  # Kubernetes `command`: replaces the image's ENTRYPOINT (and its CMD)
    args: list[str] | None  # Kubernetes `args`: replaces the image's CMD
    env: dict[str, str]
    mounts: list[Mount]
    hostname: str
    user: str | None = None  # "uid[:gid]"; None = the image's USER
    groups: list[int] = field(default_factory=list)
    read_only_root: bool = False
    cap_add: list[str] = field(default_factory=list)  # after --cap-drop=all
    privileged: bool = False
    no_new_privileges: bool = False
    seccomp_unconfined: bool = False
    working_dir: str = ""
    stop_timeout: int = 30
    memory_limit_bytes: int | None = None
    cpu_limit: float | None = None
    termination_path: str = DEFAULT_TERMINATION_PATH
    termination_file: str = ""  # the host file bound at termination_path
    fallback_to_logs: bool = False
    hosts_file: str = ""  # the host file bound at /etc/hosts (the node agent keeps its Service names current)
    labels: dict[str, str] = field(default_factory=dict)  # container labels (which cluster and Pod it belongs to)
    shm: list[str] = field(default_factory=list)  # mount targets of memory-medium emptyDirs (tmpfs, not a folder)


def pod_format(pod: dict[str, Any]) -> str:
    """The kubelet's ``format.Pod``: name_namespace(uid)."""
    meta = pod["metadata"]
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A securityContext field as the kubelet sees it: the container's, else the Pod's."""
    csc = container.get("securityContext") or {}
    psc = pod["spec"].get("securityContext") or {}
    return csc.get(key, psc.get(key))


def image_uid(user: str) -> tuple[int | None, str]:
    """The CRI's reading of an image's USER: (uid, "") when numeric, (None, name) by name, (0, "") when empty."""
    name = user.split(":", 1)[0].strip()
    if not name:
        return 0, ""
    if name.isdigit():
        return int(name), ""
    return None, name


def verify_run_as_non_root(pod: dict[str, Any], container: dict[str, Any], image_user_value: str) -> str | None:
    """Why the kubelet refuses to start this container under runAsNonRoot, or None when it may run.

    The kubelet's verifyRunAsNonRoot: an explicit runAsUser decides alone (0
    is refused); otherwise the image's USER must be numeric and non-zero (an
    empty USER is root; a user name cannot be verified and is refused).
    """
    if not effective(pod, container, "runAsNonRoot"):
        return None
    where = f'(pod: "{pod_format(pod)}", container: {container["name"]})'
    run_as_user = effective(pod, container, "runAsUser")
    if run_as_user is not None:
        return f"container's runAsUser breaks non-root policy {where}" if int(run_as_user) == 0 else None
    uid, name = image_uid(image_user_value)
    if uid == 0:
        return f"container has runAsNonRoot and image will run as root {where}"
    if uid is None:
        return f"container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root {where}"  # noqa: E501
    return None


def _capabilities(container: dict[str, Any]) -> tuple[list[str], bool]:
    """(capabilities to add after dropping all, privileged): containerd's default set, minus drop, plus add."""
    csc = container.get("securityContext") or {}
    if csc.get("privileged"):
        return [], True
    caps = csc.get("capabilities") or {}
    drop = {c.lower().removeprefix("cap_") for c in caps.get("drop") or []}
    add = {c.lower().removeprefix("cap_") for c in caps.get("add") or []}
    keep = (set() if "all" in drop else set(DEFAULT_CAPS) - drop) | add
    return sorted(keep), False


def _seccomp_unconfined(pod: dict[str, Any], container: dict[str, Any]) -> bool:
    profile = (effective(pod, container, "seccompProfile") or {}).get("type", "RuntimeDefault")
    if profile not in ("RuntimeDefault", "Unconfined"):
        raise CannotEmulate(f"seccompProfile {profile} is not supported by the podman runner")
    return bool(profile == "Unconfined")


def _limits(container: dict[str, Any]) -> tuple[int | None, float | None]:
    from edgeopt_dev.podspec import quantity

    limits = (container.get("resources") or {}).get("limits") or {}
    memory = int(quantity(limits["memory"])) if "memory" in limits else None
    cpu = quantity(limits["cpu"]) if "cpu" in limits else None
    return memory, cpu


def _mounts(container: dict[str, Any], volumes: dict[str, tuple[Path, bool]], env: dict[str, str]) -> list[Mount]:
    mounts = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volumes:
            raise CannotEmulate(f"volumeMount {vm['name']} names no volume of the Pod")
        source, read_only = volumes[vm["name"]]
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub:
            parts = Path(sub).parts
            if os.path.isabs(sub) or ".." in parts:
                raise CannotEmulate(f"volumeMount {vm['name']}: subPath {sub!r} must be relative without '..'")
            source = source / sub
        for path in (str(source), vm["mountPath"]):
            if "," in path or not path.startswith("/"):
                raise CannotEmulate(f"mount path {path!r}: must be absolute and without ','")
        mounts.append(Mount(str(source), vm["mountPath"], bool(vm.get("readOnly") or read_only)))
    return mounts


def plan_container(
    pod: dict[str, Any],
    container: dict[str, Any],
    env: dict[str, str],
    volumes: dict[str, tuple[Path, bool]],
    termination_file: Path,
) -> ContainerPlan:
    """A Pod container, with its env and volume folders already resolved, as a ContainerPlan (pure)."""
    spec = pod["spec"]
    meta = pod["metadata"]
    uid = effective(pod, container, "runAsUser")
    gid = effective(pod, container, "runAsGroup")
    if uid is None and gid is not None:
        raise CannotEmulate("runAsGroup without runAsUser: the podman runner needs both, or neither")
    if not _IMAGE_REF.fullmatch(str(container.get("image") or "")):
        image = container.get("image")
        raise CannotEmulate(f"container {container['name']}: image {image!r} is not an image reference")
    psc = spec.get("securityContext") or {}
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    caps, privileged = _capabilities(container)
    memory, cpu = _limits(container)
    mounts = _mounts(container, volumes, env)
    termination = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    mounts.append(Mount(str(termination_file), termination, False))
    return ContainerPlan(
        # Unique per Pod (its uid), so two dev clusters with the same namespace and name never share one.
        name=f"edgeopt_{meta['namespace']}_{meta['name']}_{container['name']}_{str(meta.get('uid', ''))[:8]}",
        image=container["image"],
        command=[expand(a, env) for a in container["command"]] if container.get("command") else None,
        args=[expand(a, env) for a in container["args"]] if container.get("args") else None,
        env=env,
        mounts=mounts,
        hostname=meta["name"][:63],
        user=None if uid is None else (f"{int(uid)}:{int(gid)}" if gid is not None else str(int(uid))),
        groups=groups,
        read_only_root=bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem")),
        cap_add=caps,
        privileged=privileged,
        no_new_privileges=(container.get("securityContext") or {}).get("allowPrivilegeEscalation") is False,
        seccomp_unconfined=_seccomp_unconfined(pod, container),
        working_dir=container.get("workingDir") or "",
        stop_timeout=int(spec.get("terminationGracePeriodSeconds", 30)),
        memory_limit_bytes=memory,
        cpu_limit=cpu,
        termination_path=termination,
        termination_file=str(termination_file),
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        labels={POD_UID_LABEL: str(meta.get("uid", ""))},
    )


def env_file_text(env: dict[str, str]) -> tuple[str, list[str]]:
    """(env-file text, names passed by inheritance instead): podman's env file cannot hold a newline."""
    lines, inherited = [], []
    for name, value in env.items():
        if "=" in name or not name:
            raise CannotEmulate(f"env name {name!r} is not valid")
        if "\n" in value or "\r" in value:
            if name in _UNSAFE_FOR_INHERIT:
                raise CannotEmulate(f"env {name}: a multi-line value is not supported for this name")
            inherited.append(name)
        else:
            lines.append(f"{name}={value}")
    return "".join(line + "\n" for line in lines), inherited


def podman_run_args(plan: ContainerPlan, env_file: Path, inherited: Sequence[str] = ()) -> list[str]:
    """The ``podman run`` arguments for a plan (pure; the env values live in ``env_file``)."""
    args = [
        "run",
        "--name",
        plan.name,
        "--pull",
        "never",
        "--network",
        "host",
        "--hostname",
        plan.hostname,
        "--http-proxy=false",
        "--env-file",
        str(env_file),
        *[a for n in inherited for a in ("--env", n)],
        "--stop-timeout",
        str(plan.stop_timeout),
    ]
    if plan.user is not None:
        args += ["--user", plan.user]
    for gid in plan.groups:
        args += ["--group-add", str(gid)]
    if plan.read_only_root:
        args += ["--read-only", "--read-only-tmpfs=false"]  # like the kubelet: no tmpfs appears on its own
    if plan.privileged:
        args.append("--privileged")
    else:
        args += ["--cap-drop", "all", *[a for c in plan.cap_add for a in ("--cap-add", c)]]
    if plan.no_new_privileges:
        args += ["--security-opt", "no-new-privileges"]
    if plan.seccomp_unconfined:
        args += ["--security-opt", "seccomp=unconfined"]
    if plan.memory_limit_bytes is not None:
        args += ["--memory", str(plan.memory_limit_bytes)]
    if plan.cpu_limit is not None:
        args += ["--cpus", f"{plan.cpu_limit:g}"]
    if plan.working_dir:
        args += ["--workdir", plan.working_dir]
    for m in plan.mounts:
        args += ["--mount", f"type=bind,source={m.source},destination={m.target}" + (",ro=true" if m.read_only else "")]
    for target in plan.shm:
        args += ["--mount", f"type=tmpfs,destination={target},tmpfs-mode=1777"]
    if plan.hosts_file:
        args += ["--no-hosts", "--mount", f"type=bind,source={plan.hosts_file},destination=/etc/hosts,ro=true"]
    for key, value in sorted(plan.labels.items()):
        args += ["--label", f"{key}={value}"]
    if plan.command is not None:
        args += ["--entrypoint", json.dumps(plan.command)]
    args.append(plan.image)
    args += plan.args or []
    return args


def prestop_sleep(container: dict[str, Any]) -> int | None:
    """Seconds of a ``lifecycle: {preStop: {sleep: {seconds: N}}}`` (the one hook emulated); None for any other hook."""
    lifecycle = container.get("lifecycle") or {}
    sleep = (lifecycle.get("preStop") or {}).get("sleep")
    if set(lifecycle) != {"preStop"} or set(lifecycle["preStop"]) != {"sleep"} or not isinstance(sleep, dict):
        return None
    return max(int(sleep.get("seconds") or 0), 0)


def check_pod(pod: dict[str, Any]) -> None:
    """What the node agent's runtime does not give a Pod: it fails with a message that says so (CannotEmulate)."""
    spec = pod["spec"]
    if len(spec["containers"]) != 1:
        raise CannotEmulate(f"{len(spec['containers'])} containers: the edgeopt node agent runs exactly one")
    if spec.get("initContainers") or spec.get("ephemeralContainers"):
        raise CannotEmulate("init and ephemeral containers are not emulated by the edgeopt node agent")
    if spec.get("runtimeClassName"):
        raise CannotEmulate(f"runtimeClassName {spec['runtimeClassName']}: the dev node has only runc")
    if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
        raise CannotEmulate(f"restartPolicy {spec.get('restartPolicy')} is not a restart policy")
    container = spec["containers"][0]
    if container.get("lifecycle") and prestop_sleep(container) is None:
        raise CannotEmulate(
            "container lifecycle hooks other than a preStop sleep are not emulated by the edgeopt " "node agent"
        )
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(key)
        if probe and not any(k in probe for k in ("httpGet", "tcpSocket", "exec")):
            raise CannotEmulate(f"container {key}: only httpGet, tcpSocket and exec probes are emulated")
    csc = container.get("securityContext") or {}
    psc = spec.get("securityContext") or {}
    for key in ("seLinuxOptions", "windowsOptions", "sysctls", "appArmorProfile"):
        if psc.get(key) or csc.get(key):
            raise CannotEmulate(f"securityContext.{key} is not emulated by the edgeopt node agent")
    if csc.get("procMount", "Default") != "Default":
        raise CannotEmulate("securityContext.procMount is not emulated")


def write_hosts(pod: dict[str, Any], pod_dir: Path, ctx: RuntimeContext) -> Path:
    """The Pod's /etc/hosts (its own name at its IP, Service names at their ready endpoints), written now."""
    services = ctx.services
    if services is None:
        from kubernetes.client import DiscoveryV1Api

        services = directory_from_api(ctx.core, DiscoveryV1Api(ctx.core.api_client))
    path = pod_dir / "hosts"
    pod_ip = str((pod.get("status") or {}).get("podIP") or "")
    write_in_place(path, services.hosts(pod["metadata"]["namespace"], pod["metadata"]["name"][:63], pod_ip))
    path.chmod(0o644)
    return path


def resolve(pod: dict[str, Any], container: dict[str, Any], pod_dir: Path, ctx: RuntimeContext) -> ContainerPlan:
    """Resolve env and volumes through the API and plan the container, as a kubelet does before it starts one.

    Raises NotYet (what keeps a kubelet's container Waiting: an image not in
    local storage, a missing ConfigMap, runAsNonRoot against a root image) or
    CannotEmulate.
    """
    check_pod(pod)
    image = str(container.get("image") or "")
    if not _IMAGE_REF.fullmatch(image):
        raise CannotEmulate(f"container {container['name']}: image {image!r} is not an image reference")
    if shutil.which("podman") is None:
        raise NotYet(
            "ContainerCreating",
            "podman is not installed on the dev node: `edgeopt-dev images` installs "
            "podman, buildah, runc and debootstrap and builds the images Pods run",
        )
    if not image_exists(image):
        if container.get("imagePullPolicy") == "Never":
            raise NotYet("ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never')
        raise NotYet(
            "ErrImagePull",
            f'Container image "{image}" is not in local storage, and the edgeopt dev node '
            "pulls no image: build it (`edgeopt-dev images`) or name a local one",
        )
    refusal = verify_run_as_non_root(pod, container, image_user(image))
    if refusal:
        raise NotYet("CreateContainerConfigError", refusal)
    env = build_env(pod, container, ctx)
    declared = {e["name"] for e in container.get("env") or []}
    for name in ("PATH", "HOME", "PYTHONPATH"):  # the host's values; an image brings its own
        if name not in declared:
            env.pop(name, None)
    specs = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    volumes = {name: materialize_volume(pod, v, pod_dir / "volumes", ctx) for name, v in specs.items()}
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    if fs_group is not None:  # what a kubelet does for volumes that support ownership management
        for name, (source, _) in volumes.items():
            if "hostPath" not in specs[name]:
                give_group(source, int(fs_group))
    for vm in container.get("volumeMounts") or []:
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub and vm["name"] in volumes:
            subpath_source(volumes[vm["name"]][0], sub)  # the kubelet's SafeMakeDir: made, never escaping
    termination = pod_dir / f"termination-{container['name']}"
    termination.write_bytes(b"")
    termination.chmod(0o666)
    plan = plan_container(pod, container, env, volumes, termination)
    in_memory = {str(volumes[n][0]) for n, v in specs.items() if (v.get("emptyDir") or {}).get("medium") == "Memory"}
    plan.shm = [m.target for m in plan.mounts if m.source in in_memory]
    # Bind what the paths resolve to now, checked above: a symlink swapped in later is not followed.
    plan.mounts = [
        Mount(os.path.realpath(m.source), m.target, m.read_only) for m in plan.mounts if m.source not in in_memory
    ]
    plan.hosts_file = str(write_hosts(pod, pod_dir, ctx))
    plan.labels[CLUSTER_LABEL] = cluster_label(ctx.root)
    return plan


def cluster_label(root: Path) -> str:
    """The value of CLUSTER_LABEL for the dev cluster in ``root``: its folder, so clusters never touch each other."""
    return str(root.resolve())


@dataclass
class ContainerResult:
    exit_code: int
    reason: str  # Completed | Error | StartError, as containerStatuses[].state.terminated.reason
    message: str  # the termination message (4096 bytes at most), or podman's error for StartError


class Running:
    """A started ``podman run`` (attached: it exits with the container), and what reads its end."""

    def __init__(self, plan: ContainerPlan, pod_dir: Path, log_path: Path) -> None:
        self.plan = plan
        self.log_path = log_path
        self.env_path = pod_dir / f"env-{plan.name}"
        text, inherited = env_file_text(plan.env)
        fd = os.open(self.env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        self.penv = podman_env()
        self.penv.update({n: plan.env[n] for n in inherited})
        remove_container(plan.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["podman", *podman_run_args(plan, self.env_path, inherited)],
                env=self.penv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds, as a kubelet stops a container."""
        stop_container(self.plan, grace)

    def wait(self) -> ContainerResult:
        """Wait for the container's end; its exit code and termination message, as the kubelet reads them."""
        try:
            self.proc.wait()
            state = subprocess.run(
                ["podman", "inspect", "--format", "{{.State.ExitCode}} {{.State.Error}}", self.plan.name],
                env=self.penv,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            self.env_path.unlink(missing_ok=True)
        if state.returncode != 0:
            return ContainerResult(128, "StartError", _tail(self.log_path))
        code_text, _, error = state.stdout.strip().partition(" ")
        remove_container(self.plan.name)
        if error.strip():
            return ContainerResult(128, "StartError", error.strip()[:MAX_MESSAGE])
        code = int(code_text)
        message = Path(self.plan.termination_file).read_bytes()[:MAX_MESSAGE].decode(errors="replace")
        if not message and code != 0 and self.plan.fallback_to_logs:
            message = _tail(self.log_path)
        return ContainerResult(code, "Completed" if code == 0 else "Error", message)


def run_container(
    plan: ContainerPlan, pod_dir: Path, log_path: Path, *, timeout: float | None = None
) -> ContainerResult:
    """Run the planned container to its end; output to ``log_path``; the kubelet's terminated state back."""
    run = Running(plan, pod_dir, log_path)
    try:
        run.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.stop(plan.stop_timeout)
    return run.wait()


def exec_in(name: str, command: list[str], timeout: float) -> int:
    """``podman exec`` (an exec probe); the exit code, or 1 on a timeout."""
    try:
        return subprocess.run(
            ["podman", "exec", name, *command], env=podman_env(), capture_output=True, check=False, timeout=timeout
        ).returncode
    except subprocess.TimeoutExpired:
        return 1


def remove_container(name: str) -> None:
    """Remove a container at once (SIGKILL): a leftover of a lost run, or one that already ended."""
    subprocess.run(
        ["podman", "rm", "--force", "--ignore", "--time", "0", name], env=podman_env(), capture_output=True, check=False
    )


def remove_cluster_containers(root: Path) -> list[str]:
    """Remove every container left by an earlier node agent of this dev cluster (it lost them); their names."""
    if shutil.which("podman") is None:  # none can have been started (up warns; Pods wait in ContainerCreating)
        return []
    proc = subprocess.run(
        ["podman", "ps", "--all", "--filter", f"label={CLUSTER_LABEL}={cluster_label(root)}", "--format", "{{.Names}}"],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    names = proc.stdout.split()
    for name in names:
        remove_container(name)
    return names


def _tail(path: Path, limit: int = MAX_MESSAGE) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace")


def stop_container(plan: ContainerPlan, grace: float | None = None) -> None:
    """Stop a running container as a kubelet does on deletion or a deadline: SIGTERM, SIGKILL after the grace.

    ``grace`` is the deletion's (default: the Pod's terminationGracePeriodSeconds).
    """
    seconds = plan.stop_timeout if grace is None else max(int(grace), 0)
    subprocess.run(
        ["podman", "stop", "--time", str(seconds), plan.name], env=podman_env(), capture_output=True, check=False
    )
