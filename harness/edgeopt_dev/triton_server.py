"""Run the real ``tritonserver`` that ships inside the nvidia-pytriton wheel.

The wheel carries Triton 2.51 (``pytriton/tritonserver/bin/tritonserver``),
the Python backend, one backend stub per Python version and the shared
libraries in ``nvidia_pytriton.libs/``.  Three things make it run here:

* ``LD_LIBRARY_PATH`` must include ``nvidia_pytriton.libs/``;
* the stub for the running Python (``python_backend_stubs/3.11/...``) must sit
  in ``backends/python/``.  Instead of writing into site-packages we assemble a
  private backend directory under ``~/.cache/edgeopt/triton/`` (atomically,
  so two servers starting at once do not trip over each other);
* the stub is an embedded CPython in isolated mode (``sys.flags.isolated``:
  PYTHONPATH and every other PYTHON* variable are ignored) that finds its
  prefix through ``python3`` on ``PATH``: putting this interpreter's bin dir
  first on PATH makes it pick up the venv's ``pyvenv.cfg`` and so its
  site-packages (TensorFlow, numpy).

The server binds to 127.0.0.1 on free ports in explicit model-control mode:
nothing loads until someone asks, which is how the operator drives it.
``edgeopt-dev serve`` (``configure``/``run`` at the end) runs it from the
command line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

from edgeopt.errors import ServingError
from edgeopt_dev import cache
from edgeopt_dev.netutil import free_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TritonDistribution:
    """Where the wheel keeps each piece Triton needs."""

    root: Path  # .../site-packages/pytriton/tritonserver
    binary: Path
    backends: Path
    libs: Path  # .../site-packages/nvidia_pytriton.libs
    stubs: Path

    def stub_for(self, python_version: str) -> Path:
        stub = self.stubs / python_version / "triton_python_backend_stub"
        if not stub.is_file():
            have = sorted(p.name for p in self.stubs.iterdir()) if self.stubs.is_dir() else []
            raise ServingError(
                f"no Triton Python backend stub for Python {python_version} in {self.stubs} (have: {have})"
            )
        return stub


def find_distribution() -> TritonDistribution:
    """Locate the tritonserver inside the installed nvidia-pytriton wheel without importing pytriton."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServingError(
            "the nvidia-pytriton wheel is not installed; it carries the tritonserver binary "
            "(pip install --no-deps nvidia-pytriton==0.7.0, or make setup)"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    dist = TritonDistribution(
        root=root,
        binary=root / "bin" / "tritonserver",
        backends=root / "backends",
        libs=package.parent / "nvidia_pytriton.libs",
        stubs=root / "python_backend_stubs",
    )
    for path in (dist.binary, dist.backends / "python" / "libtriton_python.so"):
        if not path.exists():
            raise ServingError(f"the nvidia-pytriton wheel at {package} is incomplete: {path} is missing")
    return dist


def cache_dir() -> Path:
    return cache.cache_dir() / "triton"


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def prepare_backend_dir(dist: TritonDistribution | None = None, *, base: Path | None = None) -> Path:
    """A backends/ dir with the Python backend and the stub for this interpreter, built once.

    Built in a temp dir and renamed into place, so a concurrent start either
    sees the whole dir or builds its own and loses the rename race harmlessly.
    """
    dist = dist or find_distribution()
    version = python_version()
    stub = dist.stub_for(version)
    key = f"py{version}-{int(dist.binary.stat().st_mtime)}-{dist.binary.stat().st_size}"
    target = (base or cache_dir()) / key / "backends"
    if (target / "python" / "triton_python_backend_stub").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".backends-{uuid.uuid4().hex}"
    try:
        shutil.copytree(dist.backends, tmp, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
        os.chmod(tmp / "python" / "triton_python_backend_stub", 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "python" / "triton_python_backend_stub").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def server_env(dist: TritonDistribution, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and, through inheritance, for the Python backend stubs."""
    env = dict(os.environ if base is None else base)
    libs = [str(dist.libs)]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    # The stub resolves its Python prefix from `python3` on PATH: make that this (venv) interpreter.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of the server log
    return env


def build_command(
    dist: TritonDistribution,
    backends: Path,
    repository: Path,
    *,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    shm_prefix: str,
    load_models: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> list[str]:
    cmd = [
        str(dist.binary),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--cache-directory={dist.root / 'caches'}",
        "--model-control-mode=explicit",
        f"--http-address={host}",
        f"--http-port={http_port}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={host}",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=true",
        "--exit-timeout-secs=10",
        # Two servers on one machine must not share Python-backend shared-memory regions.
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--log-verbose=0",
    ]
    cmd += [f"--load-model={m}" for m in load_models]
    cmd += list(extra_args)
    return cmd


class TritonServer:
    """The real tritonserver as a context manager: ``with TritonServer(repo) as s: s.http_url``."""

    def __init__(
        self,
        repository: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_path: Path | None = None,
        load_models: Sequence[str] = (),
        startup_timeout: float = 120.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self._ports = (http_port, grpc_port, metrics_port)
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.log_path = log_path
        self.load_models = list(load_models)
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self._log_file: IO[bytes] | None = None

    # ------------------------------------------------------------------ urls

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TritonServer:
        if not self.repository.is_dir():
            raise ServingError(f"model repository {self.repository} does not exist")
        dist = find_distribution()
        backends = prepare_backend_dir(dist)
        attempts = 1 if all(self._ports) else 3  # a free port can be taken between probe and bind
        for attempt in range(1, attempts + 1):
            http, grpc, metrics = (p or free_port(self.host) for p in self._ports)
            self.http_port, self.grpc_port, self.metrics_port = http, grpc, metrics
            cmd = build_command(
                dist,
                backends,
                self.repository,
                host=self.host,
                http_port=http,
                grpc_port=grpc,
                metrics_port=metrics,
                shm_prefix=f"edgeopt{os.getpid()}x{uuid.uuid4().hex[:8]}_",
                load_models=self.load_models,
                extra_args=self.extra_args,
            )
            started = time.monotonic()
            self._spawn(cmd, server_env(dist))
            try:
                self._wait_live()
            except ServingError:
                tail = self.log_tail()
                self.stop()
                if attempt < attempts and "address already in use" in tail.lower():
                    continue
                raise
            self.startup_seconds = time.monotonic() - started
            log.info("tritonserver live at %s after %.2fs", self.http_url, self.startup_seconds)
            return self
        raise AssertionError("unreachable")

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> None:
        stdout: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
            stdout = self._log_file
        log.debug("starting %s", " ".join(cmd))
        self.process = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            start_new_session=True,  # its own process group: stop() can reach the backend stubs too
        )

    def _wait_live(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.http_url}/v2/health/live"
        while time.monotonic() < deadline:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise ServingError(
                    f"tritonserver exited with code {code} during start-up; last log lines:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise ServingError(f"tritonserver was not live at {url} after {self.startup_timeout:.0f}s")

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (Triton unloads models and stops its stubs), then SIGKILL to its process group."""
        proc = self.process
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            code = proc.returncode
            # Stubs are in the server's own session; make sure none outlive it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log file)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_triton(repository: Path, **kwargs: object) -> Iterator[TritonServer]:
    server = TritonServer(repository, **kwargs)  # type: ignore[arg-type]
    with server:
        yield server


# --------------------------------------------------------------------------- command


def configure(parser: argparse.ArgumentParser) -> None:
    """``edgeopt-dev serve``: this Triton in the foreground, for the demo and for humans.

    Loading, unloading and listing models stay product commands (``edgeopt
    triton load|unload|index``): they work against any Triton, this one included.
    """
    parser.description = (
        "Run tritonserver (explicit model control) on a model repository in the foreground; "
        "then `edgeopt triton load NAME --url URL` loads a model."
    )
    parser.add_argument("--repository", required=True, type=Path, help="model repository directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--http-port", type=int, default=None, help="HTTP port (default: a free one)")
    parser.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: a free one)")
    parser.add_argument("--metrics-port", type=int, default=None, help="metrics port (default: a free one)")
    parser.add_argument(
        "--load-model", action="append", default=[], metavar="NAME", help="load this model at start (repeatable)"
    )
    parser.add_argument("--log-file", type=Path, default=None, help="write the server log here instead of stderr")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for /v2/health/live")


def run(args: argparse.Namespace) -> int:
    repo = args.repository.resolve()
    repo.mkdir(parents=True, exist_ok=True)
    server = TritonServer(
        repo,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_path=args.log_file,
        load_models=args.load_model,
        startup_timeout=args.startup_timeout,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server.start()
    try:
        print(f"tritonserver ready in {server.startup_seconds:.1f}s", file=sys.stderr)
        print(f"HTTP    {server.http_url}", flush=True)
        print(f"gRPC    {server.grpc_url}")
        print(f"metrics {server.metrics_url}")
        print(f"repository {repo} (explicit model control: POST {server.http_url}/v2/repository/models/NAME/load)")
        sys.stdout.flush()
        while server.is_running():
            time.sleep(0.5)
        code = server.wait()
        print(f"tritonserver exited with code {code}", file=sys.stderr)
        return 1 if code else 0
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
