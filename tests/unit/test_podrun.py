"""The podman Pod runner's decisions, without podman: a Pod dict in, a ``podman run`` command line out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeopt_dev.podrun import (
    ContainerPlan,
    env_file_text,
    image_uid,
    plan_container,
    podman_run_args,
    verify_run_as_non_root,
)
from edgeopt_dev.podspec import DEFAULT_CAPS, CannotEmulate, NotYet, subpath_source


def pod(container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    c = {"name": "main", "image": "localhost/edgeopt-converter-cpu:dev", **(container or {})}
    return {
        "metadata": {"name": "conv-1", "namespace": "models", "uid": "u-1"},
        "spec": {"containers": [c], "restartPolicy": "Never", **spec},
    }


def plan_of(
    p: dict[str, Any], env: dict[str, str] | None = None, volumes: dict[str, tuple[Path, bool]] | None = None
) -> ContainerPlan:
    return plan_container(p, p["spec"]["containers"][0], env or {}, volumes or {}, Path("/run/pods/x/termination"))


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


# ---------------------------------------------------------------- runAsNonRoot, as the kubelet decides


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, "")),
        ("0", (0, "")),
        ("10001", (10001, "")),
        ("10001:10001", (10001, "")),
        ("root", (None, "root")),
        ("edgeopt:edgeopt", (None, "edgeopt")),
    ],
)
def test_image_uid_reads_user_like_the_cri(user: str, expected: tuple[int | None, str]) -> None:
    assert image_uid(user) == expected


def test_run_as_non_root_refuses_a_root_image() -> None:
    p = pod(securityContext={"runAsNonRoot": True})
    msg = verify_run_as_non_root(p, p["spec"]["containers"][0], "")
    assert msg == 'container has runAsNonRoot and image will run as root (pod: "conv-1_models(u-1)", container: main)'
    assert verify_run_as_non_root(p, p["spec"]["containers"][0], "0:0") == msg


def test_run_as_non_root_refuses_a_named_image_user_it_cannot_verify() -> None:
    p = pod({"securityContext": {"runAsNonRoot": True}})
    msg = verify_run_as_non_root(p, p["spec"]["containers"][0], "edgeopt")
    assert msg and "non-numeric user (edgeopt), cannot verify user is non-root" in msg


def test_run_as_non_root_accepts_a_numeric_non_root_image_user() -> None:
    p = pod(securityContext={"runAsNonRoot": True})
    assert verify_run_as_non_root(p, p["spec"]["containers"][0], "10001:10001") is None


def test_explicit_run_as_user_decides_over_the_image() -> None:
    p = pod({"securityContext": {"runAsNonRoot": True, "runAsUser": 10001}})
    assert verify_run_as_non_root(p, p["spec"]["containers"][0], "") is None  # root image, non-root user
    p = pod({"securityContext": {"runAsUser": 0}}, securityContext={"runAsNonRoot": True})
    msg = verify_run_as_non_root(p, p["spec"]["containers"][0], "10001")
    assert msg and msg.startswith("container's runAsUser breaks non-root policy")


def test_without_run_as_non_root_anything_runs() -> None:
    p = pod({"securityContext": {"runAsNonRoot": False}}, securityContext={"runAsNonRoot": True})
    assert verify_run_as_non_root(p, p["spec"]["containers"][0], "") is None  # the container's field wins


# ---------------------------------------------------------------- the command line


def test_command_and_args_replace_entrypoint_and_cmd_with_var_expansion() -> None:
    p = pod({"command": ["edgeopt", "convert"], "args": ["-f", "$(SPEC)", "$$(SPEC)"]})
    args = podman_run_args(plan_of(p, env={"SPEC": "/etc/edgeopt/model.yaml"}), Path("/e"))
    image_at = args.index("localhost/edgeopt-converter-cpu:dev")
    assert json.loads(flag_values(args, "--entrypoint")[0]) == ["edgeopt", "convert"]
    assert args[image_at + 1 :] == ["-f", "/etc/edgeopt/model.yaml", "$(SPEC)"]


def test_args_alone_keep_the_image_entrypoint() -> None:
    args = podman_run_args(plan_of(pod({"args": ["--version"]})), Path("/e"))
    assert "--entrypoint" not in args and args[-2:] == ["localhost/edgeopt-converter-cpu:dev", "--version"]


def test_host_network_never_pull_and_env_only_through_the_file() -> None:
    plan = plan_of(pod(), env={"TOKEN": "s3cr3t", "PEM": "line1\nline2"})
    args = podman_run_args(plan, Path("/run/env"), ["PEM"])
    assert flag_values(args, "--network") == ["host"] and flag_values(args, "--pull") == ["never"]
    assert flag_values(args, "--env-file") == ["/run/env"] and flag_values(args, "--env") == ["PEM"]
    assert not any("s3cr3t" in a or "line1" in a for a in args), "a Secret value must never be on the command line"
    text, inherited = env_file_text(plan.env)
    assert text == "TOKEN=s3cr3t\n" and inherited == ["PEM"]


def test_env_file_refuses_invalid_names_and_multiline_values_podman_itself_reads() -> None:
    with pytest.raises(CannotEmulate, match="not valid"):
        env_file_text({"A=B": "x"})
    with pytest.raises(CannotEmulate, match="multi-line"):
        env_file_text({"PATH": "a\nb"})


def test_locked_down_security_context_becomes_runtime_flags() -> None:
    p = pod(
        {
            "securityContext": {
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }
        },
        securityContext={
            "runAsNonRoot": True,
            "fsGroup": 10001,
            "supplementalGroups": [2000],
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    )
    args = podman_run_args(plan_of(p), Path("/e"))
    assert flag_values(args, "--user") == ["10001:10001"]
    assert flag_values(args, "--group-add") == ["2000", "10001"]
    assert "--read-only" in args and "--read-only-tmpfs=false" in args  # no tmpfs a kubelet would not mount
    assert flag_values(args, "--cap-drop") == ["all"] and flag_values(args, "--cap-add") == []
    assert flag_values(args, "--security-opt") == ["no-new-privileges"]  # RuntimeDefault is podman's default


def test_capabilities_start_from_containerds_default_set() -> None:
    p = pod({"securityContext": {"capabilities": {"drop": ["NET_RAW", "CAP_MKNOD"], "add": ["NET_ADMIN"]}}})
    added = flag_values(podman_run_args(plan_of(p), Path("/e")), "--cap-add")
    assert set(added) == (set(DEFAULT_CAPS) - {"net_raw", "mknod"}) | {"net_admin"}
    assert "--user" not in podman_run_args(plan_of(p), Path("/e")), "no runAsUser: the image's USER applies"


def test_privileged_and_unconfined_seccomp() -> None:
    p = pod({"securityContext": {"privileged": True, "seccompProfile": {"type": "Unconfined"}}})
    args = podman_run_args(plan_of(p), Path("/e"))
    assert "--privileged" in args and "--cap-drop" not in args
    assert flag_values(args, "--security-opt") == ["seccomp=unconfined"]
    with pytest.raises(CannotEmulate, match="Localhost"):
        plan_of(pod({"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}}}))


def test_run_as_group_without_user_is_refused_not_guessed() -> None:
    with pytest.raises(CannotEmulate, match="runAsGroup without runAsUser"):
        plan_of(pod({"securityContext": {"runAsGroup": 10001}}))


def test_volumes_subpaths_and_the_termination_message_file(tmp_path: Path) -> None:
    claim, config, scratch = tmp_path / "pvc" / "models", tmp_path / "cm", tmp_path / "tmp"
    p = pod(
        {
            "terminationMessagePath": "/var/run/msg",
            "volumeMounts": [
                {"name": "models", "mountPath": "/mnt/models", "subPath": "mobilenet", "readOnly": True},
                {"name": "repo", "mountPath": "/mnt/repo"},
                {"name": "spec", "mountPath": "/etc/edgeopt"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }
    )
    volumes = {
        "models": (claim, False),
        "repo": (tmp_path / "pvc" / "triton-models", False),
        "spec": (config, True),
        "tmp": (scratch, False),
    }
    plan = plan_of(p, volumes=volumes)
    mounts = flag_values(podman_run_args(plan, Path("/e")), "--mount")
    assert mounts == [
        f"type=bind,source={claim}/mobilenet,destination=/mnt/models,ro=true",
        f"type=bind,source={tmp_path}/pvc/triton-models,destination=/mnt/repo",
        f"type=bind,source={config},destination=/etc/edgeopt,ro=true",  # ConfigMap files: read-only, as kubelet
        f"type=bind,source={scratch},destination=/tmp",
        "type=bind,source=/run/pods/x/termination,destination=/var/run/msg",
    ]
    assert plan.termination_path == "/var/run/msg" and plan.termination_file == "/run/pods/x/termination"


@pytest.mark.parametrize("sub", ["../other-claim", "/etc"])
def test_sub_path_cannot_leave_its_volume(sub: str, tmp_path: Path) -> None:
    p = pod({"volumeMounts": [{"name": "models", "mountPath": "/mnt/models", "subPath": sub}]})
    with pytest.raises(CannotEmulate, match="subPath"):
        plan_of(p, volumes={"models": (tmp_path, False)})


def test_a_mount_path_with_a_comma_cannot_be_smuggled_into_mount_options(tmp_path: Path) -> None:
    p = pod({"volumeMounts": [{"name": "v", "mountPath": "/data,ro=false,destination=/etc"}]})
    with pytest.raises(CannotEmulate, match="without ','"):
        plan_of(p, volumes={"v": (tmp_path, True)})


def test_limits_grace_and_working_dir() -> None:
    p = pod(
        {"resources": {"limits": {"memory": "256Mi", "cpu": "500m"}}, "workingDir": "/tmp"},
        terminationGracePeriodSeconds=5,
    )
    args = podman_run_args(plan_of(p), Path("/e"))
    assert flag_values(args, "--memory") == [str(256 * 2**20)] and flag_values(args, "--cpus") == ["0.5"]
    assert flag_values(args, "--stop-timeout") == ["5"] and flag_values(args, "--workdir") == ["/tmp"]
    assert flag_values(args, "--name") == ["edgeopt_models_conv-1_main_u-1"]


@pytest.mark.parametrize("image", ["--privileged", "-v/:/host", "", "img name", "a\nb"])
def test_an_image_that_is_not_a_reference_never_reaches_the_command_line(image: str) -> None:
    with pytest.raises(CannotEmulate, match="not an image reference"):
        plan_of(pod({"image": image}))


def test_sub_path_is_made_with_the_volume_mode_and_never_follows_a_symlink_out(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    claim.mkdir()
    claim.chmod(0o2775)
    made = subpath_source(claim, "models/add")
    assert made == (claim / "models" / "add").resolve() and made.is_dir()
    assert (made.stat().st_mode & 0o7777) == 0o2775
    (claim / "escape").symlink_to("/etc")
    with pytest.raises(NotYet, match="resolves outside its volume"):
        subpath_source(claim, "escape")
    (claim / "inside").symlink_to(claim / "models")
    assert subpath_source(claim, "inside/add") == made  # a link that stays inside is fine


def test_service_names_labels_and_memory_volumes_reach_the_command_line() -> None:
    plan = plan_of(pod())
    assert "--no-hosts" not in podman_run_args(plan, Path("/e")), "no hosts file: podman's own /etc/hosts"
    plan.hosts_file = "/run/pod/hosts"
    plan.shm = ["/dev/shm"]
    args = podman_run_args(plan, Path("/e"))
    # The node agent's hosts file (Service names at their ready endpoints) replaces podman's /etc/hosts.
    assert "--no-hosts" in args and "--add-host" not in args
    assert "type=bind,source=/run/pod/hosts,destination=/etc/hosts,ro=true" in flag_values(args, "--mount")
    assert flag_values(args, "--label") == ["io.edgeopt.pod-uid=u-1"]
    assert "type=tmpfs,destination=/dev/shm,tmpfs-mode=1777" in flag_values(args, "--mount")
    # Options come before the image: nothing after it is read by podman.
    assert args.index("--no-hosts") < args.index(plan.image) and args.index("--label") < args.index(plan.image)
