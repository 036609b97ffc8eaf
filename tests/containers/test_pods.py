"""Pods run as OCI containers by the podman runner (harness/edgeopt_dev/podrun.py), end to end.

A Pod dict goes in, as the node agent will hand it over once bound; the
claim folders stand in for PVCs (what the dev cluster binds), /tmp is an
emptyDir. The converter-cpu image writes the classic y = a + x sample and
converts it, with the exit code and the JSON termination message read back
as a kubelet reads them; the triton-cpu image then serves what it published
through the Python backend (TensorFlow inside Triton), and x = 1 gives 6.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeopt_dev.podrun import ContainerPlan, ContainerResult, plan_container, run_container, stop_container
from tests.fixtures.common import wait_for

pytestmark = pytest.mark.containers

LOCKED = {
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
PVC_ROOT = "/mnt/edgeopt/pvc"


def pod(
    name: str,
    image: str,
    *,
    command: list[str] | None = None,
    args: list[str] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    **container: Any,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": "main",
        "image": image,
        "securityContext": LOCKED,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(mounts or [])],
        **container,
    }
    if command:
        c["command"] = command
    if args:
        c["args"] = args
    return {
        "metadata": {"name": name, "namespace": "models", "uid": f"uid-{name}"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "fsGroup": 10001},
            "containers": [c],
        },
    }


@pytest.fixture()
def cluster_dirs(tmp_path: Path) -> dict[str, Path]:
    """Claim folders and a Pod dir, owned by 10001 as a provisioner honouring fsGroup would leave them."""
    dirs = {n: tmp_path / n for n in ("models", "triton-models", "pod", "tmp", "spec")}
    for d in dirs.values():
        d.mkdir()
        os.chown(d, 10001, 10001)
    return dirs


def run_pod(
    p: dict[str, Any], dirs: dict[str, Path], volumes: dict[str, tuple[Path, bool]], env: dict[str, str] | None = None
) -> tuple[ContainerResult, str]:
    term = dirs["pod"] / f"termination-{p['metadata']['name']}"
    term.write_bytes(b"")
    term.chmod(0o666)
    plan = plan_container(p, p["spec"]["containers"][0], env or {}, {"tmp": (dirs["tmp"], False), **volumes}, term)
    log = dirs["pod"] / f"{p['metadata']['name']}.log"
    result = run_container(plan, dirs["pod"], log, timeout=600)
    return result, log.read_text(errors="replace")


def manifest(name: str) -> dict[str, Any]:
    text = (Path(__file__).resolve().parents[2] / "examples" / "add-checkpoint-cpu.yaml").read_text()
    m = yaml.safe_load(text)
    m["metadata"]["name"] = name
    m["spec"]["target"]["modelName"] = name
    return dict(m)


def test_converter_pod_converts_and_reports_and_triton_pod_serves_it(
    images: dict[str, str], cluster_dirs: dict[str, Path]
) -> None:
    dirs = cluster_dirs
    claims = {"models": (dirs["models"], False), "triton-models": (dirs["triton-models"], False)}
    claim_mounts = [
        {"name": "models", "mountPath": f"{PVC_ROOT}/models"},
        {"name": "triton-models", "mountPath": f"{PVC_ROOT}/triton-models"},
    ]
    # The sample comes from the dev harness, which no image carries: written on the host, as a user copies a model.
    from edgeopt_dev.samples import write_add_checkpoint

    write_add_checkpoint(dirs["models"] / "add")
    assert (dirs["models"] / "add" / "my_graph.pb").is_file()
    no_harness, log = run_pod(
        pod(
            "sample",
            images["converter-cpu"],
            command=["edgeopt", "samples", "add"],
            args=["--dir", "/tmp/x"],
            mounts=[],
        ),
        dirs,
        claims,
    )
    # The old spelling names the harness's script that replaced it (issue 24), which the image does not carry.
    assert no_harness.exit_code == 2 and "`edgeopt-dev samples add --dir /tmp/x`" in log, log

    (dirs["spec"] / "model.yaml").write_text(yaml.safe_dump(manifest("add")))
    spec_mount = {"name": "spec", "mountPath": "/etc/edgeopt", "readOnly": True}
    converted, log = run_pod(
        pod(
            "convert",
            images["converter-cpu"],
            args=["-f", "/etc/edgeopt/model.yaml"],
            mounts=[*claim_mounts, spec_mount],
        ),
        dirs,
        {**claims, "spec": (dirs["spec"], True)},
    )
    assert converted.exit_code == 0 and converted.reason == "Completed", log
    summary = json.loads(converted.message)  # the termination message, as the operator reads it
    assert summary["ok"] is True and summary["reason"] == "Published" and summary["version"] == 1, summary
    assert (dirs["triton-models"] / "add" / "config.pbtxt").is_file()
    assert "model.py" in os.listdir(dirs["triton-models"] / "add" / "1")

    _serve_and_infer(images["triton-cpu"], dirs)


def _serve_and_infer(image: str, dirs: dict[str, Path]) -> None:
    import numpy as np
    import tritonclient.http as httpclient

    from edgeopt_dev.netutil import free_port

    http, grpc, metrics = free_port(), free_port(), free_port()
    p = pod(
        "triton",
        image,
        args=[
            "--model-repository=/models",
            "--model-control-mode=explicit",
            "--load-model=add",
            "--http-address=127.0.0.1",
            f"--http-port={http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics}",
            "--exit-timeout-secs=5",
        ],
        mounts=[{"name": "triton-models", "mountPath": "/models", "readOnly": True}],
    )
    done: list[ContainerResult] = []
    plan_box: list[ContainerPlan] = []
    thread = threading.Thread(target=lambda: done.append(_run_triton(p, dirs, plan_box)), daemon=True)
    thread.start()
    try:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        wait_for(lambda: done or client.is_model_ready("add"), timeout=240, what="Triton to load `add`")
        assert not done, f"tritonserver exited: {done} {(dirs['pod'] / 'triton.log').read_text()[-3000:]}"
        x = httpclient.InferInput("x", [1, 1], "FP32")
        x.set_data_from_numpy(np.array([[1.0]], dtype=np.float32))
        y = client.infer("add", [x]).as_numpy("y")
        assert y is not None and y.tolist() == [[6.0]]
    finally:
        if plan_box:
            stop_container(plan_box[0])
        thread.join(60)


def _run_triton(p: dict[str, Any], dirs: dict[str, Path], plan_box: list[ContainerPlan]) -> ContainerResult:
    term = dirs["pod"] / "termination-triton"
    term.write_bytes(b"")
    plan = plan_container(
        p,
        p["spec"]["containers"][0],
        {},
        {"tmp": (dirs["tmp"], False), "triton-models": (dirs["triton-models"], True)},
        term,
    )
    plan_box.append(plan)
    return run_container(plan, dirs["pod"], dirs["pod"] / "triton.log", timeout=600)


def test_a_pod_writing_to_its_read_only_root_fails_with_the_error_as_its_message(
    images: dict[str, str], cluster_dirs: dict[str, Path]
) -> None:
    p = pod(
        "writer",
        images["operator"],
        command=["sh", "-c", "echo x > /etc/edgeopt-was-here"],
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    result, log = run_pod(p, cluster_dirs, {})
    assert result.exit_code != 0 and result.reason == "Error"
    assert "Read-only file system" in result.message, (result, log)


def test_exit_code_and_termination_message_come_back(images: dict[str, str], cluster_dirs: dict[str, Path]) -> None:
    p = pod("ender", images["operator"], command=["sh", "-c", 'printf "%s" "$MSG" > /dev/termination-log; exit 3'])
    result, _ = run_pod(p, cluster_dirs, {}, env={"MSG": "bad input: model file missing"})
    assert (result.exit_code, result.reason, result.message) == (3, "Error", "bad input: model file missing")
