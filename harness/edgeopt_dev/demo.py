"""``edgeopt-dev demo`` (``make demo``): the whole path on this machine, real parts only.

A newcomer should see edgeopt work end to end before reading any code, and
CI should prove the same path on every change. So this builds the
Dockerfile's images (cached), starts the dev control plane (real etcd,
kube-apiserver with RBAC, kube-controller-manager's job, deployment and
replicaset controllers, and the node agent that runs Pods as OCI
containers), and ``helm install``s the chart the way a cluster admin would:
the operator runs from the ``operator`` image as a Pod of the chart's
Deployment, with the chart's ServiceAccount token projected into it (so the
chart's RBAC is exactly what it has), Triton runs from the ``triton-cpu``
image as the chart's Triton Deployment, and the conversion Job's Pod runs in
``converter-cpu``.  Then it applies ``examples/add-checkpoint-cpu.yaml`` with
kubectl, waits for ``Ready``, shows ``kubectl logs`` of the converter Pod and
asks Triton for an answer with tritonclient, over HTTP and over gRPC.

The dev node shares the host's network, each Pod at an address of its own
(podnet.py): the chart's Triton binds its Pod IP (``triton.bindPodIP``), the
demo reaches it at the ready endpoint the EndpointSlice of the chart's Triton
Service lists, and the Service's name resolves to that endpoint in the Pods.  Each step
prints its time; a broken step stops the demo with its name and a non-zero
exit; everything started is stopped in ``finally``.

Standard library and edgeopt.errors only at the top (the CLI contract).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeopt.errors import EdgeoptError

RELEASE = "edgeopt"
NAMESPACE = "edgeopt"
EXAMPLE = Path("examples") / "add-checkpoint-cpu.yaml"
MODEL = "add"  # metadata.name and target.modelName of the example
EXPECTED = 6.0  # y = a + x with a = 5, for x = 1
STEPS = 10


class DemoError(EdgeoptError):
    """A demo step failed; the message names the step and where to look."""

    exit_code = 10
    reason = "DemoFailed"


# --------------------------------------------------------------------------- output


class Steps:
    """Numbered, timed steps; an exception inside one becomes a DemoError naming it.

    Besides printing, each step is recorded (``record``: number, title,
    status, seconds, error) and the steps put what they found in ``facts``;
    ``results()`` is both, which ``--results`` writes as JSON for CI to read.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.t0 = time.monotonic()
        self.record: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}

    def say(self, text: str) -> None:
        print(f"[demo {time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.n += 1
        label = f"{self.n}/{self.total} {title}"
        self.say(f"▶ {label}")
        start = time.monotonic()
        entry: dict[str, Any] = {"n": self.n, "title": title, "status": "running"}
        self.record.append(entry)
        try:
            yield
        except Exception as exc:
            took = time.monotonic() - start
            entry.update(status="failed", seconds=round(took, 3), error=str(exc))
            self.say(f"✗ {label} FAILED after {took:.1f}s")
            raise DemoError(f"step {self.n}/{self.total} '{title}' failed: {exc}") from exc
        took = time.monotonic() - start
        entry.update(status="ok", seconds=round(took, 3))
        self.say(f"✓ {label} ({took:.1f}s)")

    def results(self, error: str | None) -> dict[str, Any]:
        ok = error is None and len(self.record) == self.total and all(s["status"] == "ok" for s in self.record)
        return {
            "ok": ok,
            "error": error,
            "steps": self.record,
            "seconds": round(time.monotonic() - self.t0, 3),
            **self.facts,
        }


# --------------------------------------------------------------------------- helpers


def source_root() -> Path:
    """The checkout the demo runs from: it needs the chart and the example, not just the package."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / "charts" / "edgeopt" / "Chart.yaml").exists() and (candidate / EXAMPLE).exists():
            return candidate
    raise DemoError(
        "edgeopt-dev demo needs a source checkout (charts/edgeopt and examples/); run `make demo` from the repository"
    )


def run_tool(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run a command; on failure raise with its stderr (never echoing stdin or tokens)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"`{' '.join(cmd[:3])} ...` did not finish in {timeout:.0f}s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise RuntimeError(f"`{Path(cmd[0]).name} {' '.join(cmd[1:3])} ...` exited {proc.returncode}: {detail}")
    return proc.stdout


def wait_until(what: str, check: Any, timeout: float, *, alive: Any = None, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last = exc
        time.sleep(interval)
    detail = f" (last error: {last})" if last else ""
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as rsp:
        return bool(rsp.status == 200)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def token_kubeconfig(path: Path, server: str, ca_file: Path, token: str, user: str) -> None:
    """A kubeconfig that authenticates with a bearer token only (no admin certificates)."""
    import base64

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "dev",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "dev", "user": user, "namespace": NAMESPACE}}],
        "current-context": user,
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(config))


# --------------------------------------------------------------------------- the demo


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Run the whole path locally: control plane, chart, operator, conversion, Triton, inference."
    parser.add_argument("--dir", type=Path, help="working directory (default: a fresh temporary one, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, PVC folders) after")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the model to be Ready")
    parser.add_argument(
        "--example", type=Path, default=None, help=f"OptimizedModel to apply (default: {EXAMPLE}, the y = a + x model)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="write what the demo did as JSON: each step's status and seconds, the Pods, the answers, the report",
    )


def run(args: argparse.Namespace) -> int:
    root = source_root()
    example = (args.example or root / EXAMPLE).resolve()
    work = (args.dir or Path(tempfile.mkdtemp(prefix="edgeopt-demo-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cluster_dir = work / "cluster"
    steps = Steps(total=STEPS)
    steps.say(f"edgeopt-dev demo in {work}")
    error: str | None = "the demo stopped before its end (see its output)"
    try:
        report = _demo(steps, root, example, cluster_dir, args.timeout)
        error = None
        _print_report(steps, report)
        return 0
    except DemoError as exc:
        error = str(exc)
        _print_logs(steps, cluster_dir)
        raise DemoError(f"{exc}\n(logs kept in {cluster_dir / 'logs'})") from exc
    finally:
        _tear_down(steps, cluster_dir)
        if not args.keep and not args.dir and error is None:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep or error is not None:
            steps.say(f"kept {work}")
        if args.results:
            _write_results(args.results, steps.results(error))


def _tear_down(steps: Steps, cluster_dir: Path) -> None:
    from edgeopt_dev import controlplane

    t = time.monotonic()
    left: list[str] = []
    if cluster_dir.exists():  # safe on a half-started or dead control plane
        controlplane.down(cluster_dir)
        left = sorted(controlplane.running(cluster_dir))
    steps.facts["tornDown"] = {"seconds": round(time.monotonic() - t, 3), "stillRunning": left}
    steps.say(f"torn down in {time.monotonic() - t:.1f}s")


def _write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, path)


@dataclass
class Cluster:
    """What the steps share once the control plane runs: its tools, its admin env, Triton's host ports."""

    cp: Any
    tools: dict[str, Path]
    admin: dict[str, str]
    ports: tuple[int, int, int]
    #: Triton's Pod IP, a ready endpoint of its Service's EndpointSlice (known once its Pod is Ready).
    triton_host: str = "127.0.0.1"

    def kubectl(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
        return run_tool([str(self.tools["kubectl"]), *args], env=env or self.admin, timeout=timeout)

    def helm(self, *args: str, timeout: float = 120.0) -> str:
        return run_tool([str(self.tools["helm"]), *args], env=self.admin, timeout=timeout)

    @property
    def triton_url(self) -> str:
        return f"http://{self.triton_host}:{self.ports[0]}"

    @property
    def grpc_url(self) -> str:
        return f"{self.triton_host}:{self.ports[1]}"


def _demo(steps: Steps, root: Path, example: Path, cluster_dir: Path, timeout: float) -> dict[str, Any]:
    cluster = _start(steps, cluster_dir)
    _install(steps, cluster, root)
    _pods_ready(steps, cluster)
    status = _convert(steps, cluster, root, example, timeout)
    return _infer_both(steps, cluster, status)


def _start(steps: Steps, cluster_dir: Path) -> Cluster:
    from edgeopt_dev import controlplane
    from edgeopt_dev.binaries import ensure_binaries
    from edgeopt_dev.containers import image_size
    from edgeopt_dev.images import build_images
    from edgeopt_dev.netutil import free_port

    with steps.step("build the images from the Dockerfile: operator, converter-cpu, triton-cpu (cached)"):
        images = {}
        for built in build_images():
            images[built.image] = {"bytes": image_size(built.image), "seconds": round(built.seconds, 3)}
            steps.say(f"  {built.image} ({images[built.image]['bytes'] / 1e6:.0f} MB) in {built.seconds:.1f}s")
        steps.facts["images"] = images

    with steps.step("start the dev control plane (etcd, kube-apiserver with RBAC, controllers, node agent)"):
        tools = ensure_binaries(["kubectl", "helm"])
        cp = controlplane.up(cluster_dir, die_with_parent=True)
        admin = {**os.environ, "KUBECONFIG": str(cp.kubeconfig)}
    return Cluster(cp, tools, admin, (free_port(), free_port(), free_port()))


#: What the operator's ServiceAccount must and must not be allowed: (verb, resource, answer).
CAN_I = (
    ("list", "optimizedmodels.edgeopt.io", "yes"),
    ("create", "jobs", "yes"),
    ("get", "secrets", "no"),
    ("create", "pods", "no"),
)


def _install(steps: Steps, cluster: Cluster, root: Path) -> None:
    from edgeopt_dev.images import image_name

    with steps.step("helm install the chart: operator and Triton Deployments from the images, claims, RBAC"):
        cluster.helm(
            "install",
            RELEASE,
            str(root / "charts" / "edgeopt"),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            *chart_values(image_name, cluster.ports),
        )
        cluster.kubectl("wait", "--for=condition=Established", "crd/optimizedmodels.edgeopt.io", "--timeout=60s")

    with steps.step("check the operator's ServiceAccount: the chart's RBAC, nothing more"):
        sa = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
        answers = steps.facts.setdefault("canI", {})
        for verb, resource, want in CAN_I:
            cmd = [str(cluster.tools["kubectl"]), "auth", "can-i", verb, resource, "-A", f"--as={sa}"]
            can = subprocess.run(cmd, env=cluster.admin, capture_output=True, text=True, check=False).stdout.strip()
            answers[f"{verb} {resource}"] = can
            if can != want:
                raise RuntimeError(f"the operator's ServiceAccount: can-i {verb} {resource} is {can!r}, not {want}")
        steps.say("  it can reconcile OptimizedModels and create Jobs, and cannot read Secrets or create Pods")

    with steps.step("write the sample model (y = a + x checkpoint) into the `models` claim"):
        target = cluster.cp.pvc_dir("models") / MODEL
        run_tool([sys.executable, "-m", "edgeopt_dev.cli", "samples", "add", "--dir", str(target)], timeout=300)


def _pods_ready(steps: Steps, cluster: Cluster) -> None:
    with steps.step("wait for the operator and Triton Pods: running in their containers, Ready"):
        for deployment in (RELEASE, f"{RELEASE}-triton"):
            cluster.kubectl(
                "rollout", "status", f"deployment/{deployment}", "-n", NAMESPACE, "--timeout=300s", timeout=320
            )
        for line in cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").splitlines():
            steps.say(f"  $ kubectl get pods | {line}")
        steps.facts["pods"] = pod_facts(json.loads(cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json")))
        token = cluster.kubectl(
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/component=operator",
            "-o",
            "jsonpath={.items[0].spec.volumes[*].projected.sources[*].serviceAccountToken.path}",
        )
        if "token" not in token:
            raise RuntimeError("the operator Pod has no projected ServiceAccount token volume")
        # Where kube-proxy would send a client of the Service: a ready endpoint of its EndpointSlice.
        endpoint = cluster.kubectl(
            "get",
            "endpointslices",
            "-n",
            NAMESPACE,
            "-l",
            f"kubernetes.io/service-name={RELEASE}-triton",
            "-o",
            "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
        ).split()
        if not endpoint:
            raise RuntimeError(f"the EndpointSlice of Service {RELEASE}-triton lists no ready endpoint")
        cluster.triton_host = endpoint[0]
        wait_until("Triton /v2/health/ready", lambda: http_ok(f"{cluster.triton_url}/v2/health/ready"), 60)
        steps.say(f"  Triton HTTP {cluster.triton_url}, gRPC {cluster.grpc_url}")
        # The chart's own check, a Pod of the operator image that calls both Services by name.
        out = cluster.helm("test", RELEASE, "--namespace", NAMESPACE, "--timeout", "120s", timeout=150)
        steps.facts["helmTest"] = helm_test_phases(out)
        steps.say("  helm test: the operator's and Triton's Services answer (Pod edgeopt-test-endpoints Succeeded)")


def pod_facts(pods: dict[str, Any]) -> list[dict[str, Any]]:
    """Name, component label, phase and ready containers of each Pod in ``kubectl get pods -o json``."""
    facts = []
    for pod in pods.get("items") or []:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        facts.append(
            {
                "name": pod["metadata"]["name"],
                "component": (pod["metadata"].get("labels") or {}).get("app.kubernetes.io/component"),
                "phase": (pod.get("status") or {}).get("phase"),
                "ready": f"{sum(1 for s in statuses if s.get('ready'))}/{len(statuses)}",
            }
        )
    return facts


def helm_test_phases(out: str) -> dict[str, str]:
    """``helm test``'s summary as {test Pod: phase} (its ``TEST SUITE:`` and ``Phase:`` lines)."""
    phases, suite = {}, None
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "TEST SUITE":
            suite = value.strip()
        elif key.strip() == "Phase" and suite:
            phases[suite] = value.strip()
    return phases


def _convert(steps: Steps, cluster: Cluster, root: Path, example: Path, timeout: float) -> dict[str, Any]:
    with steps.step(f"kubectl apply -f {example.relative_to(root) if example.is_relative_to(root) else example}"):
        cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(example))

    with steps.step("wait for Ready: conversion Job → publish → Triton loads the version"):
        status = _wait_ready(steps, cluster.kubectl, timeout)
        cluster.kubectl("wait", "-n", NAMESPACE, f"om/{MODEL}", "--for=condition=Ready", "--timeout=10s")
        for line in cluster.kubectl("get", "-n", NAMESPACE, "optimizedmodels").splitlines():
            steps.say(f"  $ kubectl get om | {line}")
        steps.facts["status"] = status

    with steps.step("kubectl logs of the conversion Pod (it ran in the converter-cpu image)"):
        job = status.get("jobName") or ""
        logs = cluster.kubectl("logs", "-n", NAMESPACE, f"job/{job}")
        progress = [line for line in logs.splitlines() if line.strip()]
        if not progress:
            raise RuntimeError(f"kubectl logs job/{job} printed nothing")
        for line in progress[-6:]:
            steps.say(f"  $ kubectl logs job/{job} | {line[:150]}")
        steps.facts["convertLog"] = progress
    return status


def _infer_both(steps: Steps, cluster: Cluster, status: dict[str, Any]) -> dict[str, Any]:
    with steps.step("infer through Triton over HTTP and gRPC with tritonclient (x = 1 must give 6)"):
        answer, latency_ms = _infer(cluster.triton_url)
        steps.say(f"  Triton answered y = {answer:g} over HTTP (mean {latency_ms:.2f} ms per request)")
        grpc_answer, grpc_ms = _infer_grpc(cluster.grpc_url)
        steps.say(f"  Triton answered y = {grpc_answer:g} over gRPC (mean {grpc_ms:.2f} ms per request)")
        steps.facts["answers"] = {"x": 1.0, "http": answer, "grpc": grpc_answer}
        steps.facts["latencyMs"] = {"http": latency_ms, "grpc": grpc_ms}
    return {
        "status": status,
        "answer": answer,
        "tritonLatencyMs": latency_ms,
        "grpcAnswer": grpc_answer,
        "grpcLatencyMs": grpc_ms,
        "grpcURL": cluster.grpc_url,
    }


def chart_values(image_name: Any, triton_ports: tuple[int, int, int]) -> list[str]:
    """``helm install`` flags for the dev cluster: the images built here, no GPU, Triton at its Pod IP.

    Everything else is the chart's default: its security contexts, probes,
    RBAC, the converter's resources (a CPU conversion drops the GPU itself)
    and the Triton URL the operator derives from the chart's Service.
    """
    from edgeopt_dev.netutil import free_port

    http, grpc, metrics = triton_ports

    def image(key: str, target: str) -> list[str]:
        repository, tag = image_name(target).rsplit(":", 1)
        return [
            "--set",
            f"{key}.image.repository={repository}",
            "--set",
            f"{key}.image.tag={tag}",
            "--set",
            f"{key}.image.pullPolicy=Never",
        ]

    return [
        *image("operator", "operator"),
        *image("converter", "converter-cpu"),
        *image("triton", "triton-cpu"),
        "--set",
        f"operator.livenessPort={free_port()}",
        "--set",
        f"operator.metricsPort={free_port()}",
        "--set",
        "triton.enabled=true",
        "--set",
        "triton.bindPodIP=true",
        "--set",
        f"triton.service.httpPort={http}",
        "--set",
        f"triton.service.grpcPort={grpc}",
        "--set",
        f"triton.service.metricsPort={metrics}",
        # The chart's Triton asks for a GPU; the dev node has none (null removes the key from the defaults).
        "--set",
        "triton.resources.limits.nvidia\\.com/gpu=null",
        "--set",
        "triton.resources.requests.cpu=500m",
        "--set",
        "persistence.modelRepository.create=true",
        "--set",
        "persistence.modelSource.create=true",
    ]


def _wait_ready(steps: Steps, kubectl: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        obj = json.loads(kubectl("get", "-n", NAMESPACE, f"om/{MODEL}", "-o", "json"))
        status = obj.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        phase = status.get("phase")
        ready = conditions.get("Ready") or {}
        seen = (phase, ready.get("reason"))
        if seen != last:
            steps.say(f"  phase={phase or '-'} Ready={ready.get('status', '-')} ({ready.get('reason', '-')})")
            last = seen
        if ready.get("status") == "True" and ready.get("reason") == "Serving":
            return dict(status)
        if phase == "Failed":
            message = ready.get("message") or json.dumps(status)[:1000]
            raise RuntimeError(f"the OptimizedModel failed ({ready.get('reason')}): {message}")
        time.sleep(1.0)
    raise RuntimeError(f"not Ready after {timeout:.0f}s (last phase {last})")


def _infer(triton_url: str) -> tuple[float, float]:
    import numpy as np
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=triton_url.removeprefix("http://"), network_timeout=30.0)
    meta = client.get_model_metadata(MODEL)
    (inp,) = meta["inputs"]
    out = meta["outputs"][0]["name"]
    x = np.array([[1.0]], dtype=np.float32)
    tensor = httpclient.InferInput(inp["name"], list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    answer = float(client.infer(MODEL, [tensor]).as_numpy(out).reshape(-1)[0])
    if abs(answer - EXPECTED) > 1e-6:
        raise RuntimeError(f"Triton answered {answer} for x = 1; expected {EXPECTED}")
    n = 20
    t = time.perf_counter()
    for _ in range(n):
        client.infer(MODEL, [tensor])
    return answer, (time.perf_counter() - t) * 1000 / n


def _infer_grpc(grpc_url: str) -> tuple[float, float]:
    """The same request through Triton's gRPC endpoint (tritonclient 2.51's grpc client runs on protobuf 4)."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=grpc_url)
    try:
        meta = client.get_model_metadata(MODEL, as_json=True)
        (inp,) = meta["inputs"]
        out = meta["outputs"][0]["name"]
        tensor = grpcclient.InferInput(inp["name"], [1, 1], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0]], dtype=np.float32))
        answer = float(client.infer(MODEL, [tensor], client_timeout=30.0).as_numpy(out).reshape(-1)[0])
        if abs(answer - EXPECTED) > 1e-6:
            raise RuntimeError(f"Triton answered {answer} over gRPC for x = 1; expected {EXPECTED}")
        n = 20
        t = time.perf_counter()
        for _ in range(n):
            client.infer(MODEL, [tensor], client_timeout=30.0)
        return answer, (time.perf_counter() - t) * 1000 / n
    finally:
        client.close()


def _print_report(steps: Steps, result: dict[str, Any]) -> None:
    status = result["status"]
    report = status.get("report") or {}

    def fmt(key: str, unit: str = "") -> str:
        value = report.get(key)
        if value is None:
            return "-"
        return f"{value:.3g}{unit}" if isinstance(value, float) else f"{value}{unit}"

    print("\n" + "=" * 64)
    print(f"edgeopt-dev demo: OptimizedModel {NAMESPACE}/{MODEL} is Ready and serving")
    print(f"  model version      {status.get('modelVersion', '-')}   (Job {status.get('jobName', '-')})")
    print(f"  graph ops          {fmt('opsBefore')} before → {fmt('opsAfter')} after")
    print(f"  TF latency         {fmt('latencyMsBefore', ' ms')} before → {fmt('latencyMsAfter', ' ms')} after")
    print(f"  precision / TRT    {fmt('precision')} / {fmt('trtEngines')} TensorRT engines (TF-TRT off on CPU)")
    print(f"  max abs error      {fmt('maxAbsError')}")
    print(f"  conversion         {fmt('conversionSeconds', ' s')} (TensorFlow {fmt('tensorflow')})")
    print(
        f"  Triton answer      y = {result['answer']:g} for x = 1 over HTTP "
        f"({result['tritonLatencyMs']:.2f} ms/request)"
    )
    print(
        f"                     y = {result['grpcAnswer']:g} over gRPC at {result['grpcURL']} "
        f"({result['grpcLatencyMs']:.2f} ms/request)"
    )
    print("  step times         " + ", ".join(f"{s['n']}: {s['seconds']:.1f}s" for s in steps.record))
    print(f"  total              {time.monotonic() - steps.t0:.1f}s")
    print("=" * 64, flush=True)


def _print_logs(steps: Steps, cluster_dir: Path) -> None:
    logs = [*sorted((cluster_dir / "logs").glob(f"{NAMESPACE}_*.log")), cluster_dir / "logs" / "nodeagent.log"]
    for log in logs:
        if log.exists():
            steps.say(f"--- {log.name} (last lines) ---\n{tail(log)}")
