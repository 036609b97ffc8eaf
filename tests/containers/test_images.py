"""The images the Dockerfile builds, run with podman the way the chart runs them.

Each runs ``edgeopt --version`` as uid 10001 with a read-only root and every
capability dropped; the operator image has no TensorFlow; writing to a
read-only root fails; runAsNonRoot against a root image is refused as a
kubelet refuses it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeopt import __version__
from edgeopt_dev.containers import image_user, podman
from edgeopt_dev.podrun import verify_run_as_non_root

pytestmark = pytest.mark.containers

LOCKED_DOWN = (
    "--rm",
    "--network",
    "host",
    "--read-only",
    "--read-only-tmpfs=false",
    "--user",
    "10001:10001",
    "--cap-drop",
    "all",
    "--security-opt",
    "no-new-privileges",
)


@pytest.mark.parametrize("target", ["operator", "converter-cpu", "triton-cpu"])
def test_edgeopt_runs_in_each_image_as_10001_with_a_read_only_root(images: dict[str, str], target: str) -> None:
    proc = podman("run", *LOCKED_DOWN, "--entrypoint", "edgeopt", images[target], "--version", check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"edgeopt {__version__}"
    who = podman("run", *LOCKED_DOWN, "--entrypoint", "id", images[target], check=False)
    assert who.stdout.startswith("uid=10001(edgeopt) gid=10001(edgeopt)"), who.stdout + who.stderr


@pytest.mark.parametrize("target", ["operator", "converter-cpu", "triton-cpu"])
def test_every_image_declares_the_numeric_non_root_user(images: dict[str, str], target: str) -> None:
    assert image_user(images[target]) == "10001:10001"


def test_operator_image_contains_no_tensorflow(images: dict[str, str]) -> None:
    code = (
        "import importlib.util, sys; "
        "found = [m for m in ('tensorflow', 'keras', 'onnxruntime') if importlib.util.find_spec(m)]; "
        "print(found); sys.exit(1 if found else 0)"
    )
    proc = podman("run", *LOCKED_DOWN, "--entrypoint", "python", images["operator"], "-c", code, check=False)
    assert proc.returncode == 0, f"operator image has {proc.stdout.strip()} {proc.stderr}"
    pip = podman("run", *LOCKED_DOWN, "--entrypoint", "pip", images["operator"], "list", "--format=freeze", check=False)
    assert pip.returncode == 0 and "kopf==" in pip.stdout
    assert "tensorflow" not in pip.stdout.lower()


def test_converter_cpu_and_triton_cpu_have_tensorflow_and_onnxruntime(images: dict[str, str]) -> None:
    """With a read-only root and /tmp as the chart gives it (an emptyDir): TensorFlow needs a temp dir."""
    code = "import tensorflow, onnxruntime; print(tensorflow.__version__, onnxruntime.__version__)"
    for target in ("converter-cpu", "triton-cpu"):
        proc = podman(
            "run",
            *LOCKED_DOWN,
            "--tmpfs",
            "/tmp",
            "-e",
            "TF_CPP_MIN_LOG_LEVEL=3",
            "--entrypoint",
            "python",
            images[target],
            "-c",
            code,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split() == ["2.17.1", "1.32.0"], proc.stdout


def test_a_container_writing_to_its_read_only_root_fails(images: dict[str, str]) -> None:
    proc = podman(
        "run",
        *LOCKED_DOWN,
        "--entrypoint",
        "sh",
        images["converter-cpu"],
        "-c",
        "echo x > /tmp/hello && echo wrote",
        check=False,
    )
    assert proc.returncode != 0 and "wrote" not in proc.stdout
    assert "Read-only file system" in proc.stderr
    # the same write works when the root is writable: it is the flag that refuses, not a permission
    rw = podman(
        "run",
        "--rm",
        "--network",
        "host",
        "--entrypoint",
        "sh",
        images["converter-cpu"],
        "-c",
        "echo x > /tmp/hello && echo wrote",
        check=False,
    )
    assert rw.returncode == 0 and "wrote" in rw.stdout, rw.stderr


def test_run_as_non_root_with_a_root_image_is_refused_as_the_kubelet_does(
    images: dict[str, str], podman_base: str
) -> None:
    pod = {
        "metadata": {"name": "rooty", "namespace": "default", "uid": "u-9"},
        "spec": {"securityContext": {"runAsNonRoot": True}, "containers": [{"name": "main", "image": podman_base}]},
    }
    container = pod["spec"]["containers"][0]  # type: ignore[index]
    assert image_user(podman_base) == ""  # the Debian base has no USER: root
    assert verify_run_as_non_root(pod, container, image_user(podman_base)) == (
        'container has runAsNonRoot and image will run as root (pod: "rooty_default(u-9)", container: main)'
    )
    container["image"] = images["operator"]  # type: ignore[index]
    assert verify_run_as_non_root(pod, container, image_user(images["operator"])) is None


def test_converter_target_refuses_a_base_without_tf_trt(images: dict[str, str], tmp_path: Path) -> None:
    """The GPU converter cannot be built here (no NGC), but its guard can run: given a base whose
    TensorFlow is a CPU build, the build stops and says why instead of shipping a converter without TF-TRT."""
    from edgeopt_dev.images import ROOT

    standin = "localhost/edgeopt/tensorflow-cpu-standin:test"
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text(f"FROM {images['converter-cpu']}\nUSER 0\nENTRYPOINT []\n")
    podman("build", "--tag", standin, "--file", str(containerfile), str(tmp_path))
    try:
        proc = podman(
            "build",
            "--force-rm",
            "--target",
            "converter",
            "--build-arg",
            f"TENSORFLOW_BASE={standin}",
            "--file",
            str(ROOT / "Dockerfile"),
            str(ROOT),
            check=False,
            timeout=600,
        )
    finally:
        podman("rmi", "--force", standin, check=False)
    assert proc.returncode != 0, "a converter image was built on a TensorFlow without TensorRT"
    assert "base image must ship TF 2.17 built with TensorRT, got 2.17.1" in proc.stdout + proc.stderr


def test_a_second_build_reuses_every_layer(images: dict[str, str]) -> None:
    """Cached builds: nothing changed since the fixture built it, so no step runs again (no pip at all)."""
    from edgeopt_dev.containers import cache_dir
    from edgeopt_dev.images import build_target

    result = build_target("converter-cpu")
    log = (cache_dir() / "images" / "build-converter-cpu.log").read_text()
    assert result.image == images["converter-cpu"]
    assert "Using cache" in log
    assert "Collecting" not in log and "Installing collected packages" not in log, "a step re-ran:\n" + log[-3000:]
