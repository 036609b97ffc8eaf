"""Locating the wheel's tritonserver and assembling its private backend dir (no server started)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edgeopt_dev.triton_server import build_command, find_distribution, prepare_backend_dir, server_env


def test_distribution_and_private_backend_dir(tmp_path: Path) -> None:
    dist = find_distribution()
    assert dist.binary.name == "tritonserver" and os.access(dist.binary, os.X_OK)
    backends = prepare_backend_dir(dist, base=tmp_path)
    stub = backends / "python" / "triton_python_backend_stub"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert stub.read_bytes() == (dist.stubs / py / "triton_python_backend_stub").read_bytes()
    assert os.access(stub, os.X_OK)
    assert (backends / "python" / "libtriton_python.so").is_file()
    assert not (dist.backends / "python" / "triton_python_backend_stub").exists()  # site-packages untouched
    assert prepare_backend_dir(dist, base=tmp_path) == backends  # cached
    assert [p.name for p in backends.parent.parent.iterdir()] == [backends.parent.name]  # no temp leftovers


def test_env_and_command() -> None:
    dist = find_distribution()
    env = server_env(dist, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x"})
    assert env["LD_LIBRARY_PATH"].split(":") == [str(dist.libs), "/opt/x"]
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    cmd = build_command(
        dist,
        Path("/b"),
        Path("/r"),
        host="127.0.0.1",
        http_port=1,
        grpc_port=2,
        metrics_port=3,
        shm_prefix="p_",
        load_models=["m"],
    )
    assert "--model-control-mode=explicit" in cmd and "--http-address=127.0.0.1" in cmd
    assert "--grpc-address=127.0.0.1" in cmd and "--metrics-address=127.0.0.1" in cmd
    assert "--load-model=m" in cmd and "--backend-config=python,shm-region-prefix-name=p_" in cmd
