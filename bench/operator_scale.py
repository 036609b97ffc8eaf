"""Operator on the dev control plane: reconcile latency at 1/10/100/500 resources, RSS, API cost, apply → Ready.

Reconcile latency is *apply → Job created*: from the moment the create call
for an OptimizedModel returns to the moment a watch on Jobs sees its Job.
100 and 500 resources are applied at once (8 client threads).  The baseline creates
the same objects directly with the kubernetes client (the OptimizedModel,
then the ConfigMap and Job from the operator's own pure builders, owned as
kopf would own them) and is measured the same way: the floor.  Baseline rounds
run before the operator starts, so it never reconciles them.

Jobs need not run for this: the node agent is stopped for the scale rounds
(the operator is started with MAX_CONCURRENT_CONVERSIONS=1000 so that no
resource waits for a slot).  It is started again for *apply → Ready* of the
toy model (y = a + x), which runs the whole path: Job, converter container,
publish, Triton load, smoke inference; its baseline is the same conversion
run directly (``edgeopt convert -f``) and the same Triton load + inference.

API requests per resource lifecycle (create → Job created → delete → gone)
come from the API server's audit log (:mod:`bench.audit`), by client: kopf,
the operator's own code, the controller manager, and this benchmark's create
and delete (the user's part); the benchmark's polling is left out.  The same
log gives each resource's timeline (create → kopf's first patch →
ConfigMap → Job → status), whose per-step medians say where the time goes.
The ``apiserver_request_total`` deltas are kept in the JSON as a cross-check.
A first unmeasured round warms the API server and the garbage collector (its
first sync takes tens of seconds).
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bench import audit, cluster
from bench.context import Context
from bench.report import AreaResult, Target
from bench.stats import percentile

AREA = "operator"
GROUP, VERSION, PLURAL = "edgeopt.io", "v1alpha1", "optimizedmodels"
APPLY_THREADS = 8
REPO_ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def om_body(name: str) -> dict[str, Any]:
    """A valid OptimizedModel whose conversion never has to run (the scale rounds stop at Job created)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OptimizedModel",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": "pvc://models/scale", "format": "SavedModel"},
            "tensorrt": {"enabled": False},
            "target": {"repository": "pvc://triton-models", "modelName": name},
        },
    }


class Bench:
    def __init__(self, ctx: Context, cluster: str = "cluster") -> None:
        """``cluster``: the folder under the bench's workdir; an area of its own needs its own (one per up)."""
        from kubernetes import client, config

        from edgeopt_dev import controlplane

        self.ctx = ctx
        self.root = ctx.dir(cluster)
        self.cp = controlplane.up(self.root, die_with_parent=True, audit=True)
        ctx.cleanups.append(lambda: self._down())
        self.audit_log = self.root / "logs" / "audit.log"
        self.api = config.new_client_from_config(config_file=str(self.cp.kubeconfig))
        self.api.user_agent = audit.BENCH_USER_AGENT  # tells this benchmark's requests from the operator's
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.batch = client.BatchV1Api(self.api)
        #: This benchmark's polling, which is measurement and not lifecycle: subtracted from the counts.
        self.own_calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.operator: Any = None
        self.job_runner_cmd: list[str] = []
        self.metrics_url = ""
        #: The toy model's Triton port, chosen before the operator starts so its allow-list can name it.
        self.triton_port = 0

    def _down(self) -> None:
        from edgeopt_dev import controlplane

        controlplane.down(self.root)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.own_calls[key] += n

    # ------------------------------------------------------------------ setup

    def install_crd(self) -> None:
        from edgeopt_dev.binaries import ensure_binaries

        kubectl = str(ensure_binaries(["kubectl"])["kubectl"])
        env = {**os.environ, "KUBECONFIG": str(self.cp.kubeconfig)}
        crd = REPO_ROOT / "crds" / "optimizedmodels.edgeopt.io.yaml"
        import subprocess

        for args in (
            ["apply", "-f", str(crd)],
            ["wait", "--for=condition=Established", "crd/optimizedmodels.edgeopt.io", "--timeout=60s"],
        ):
            subprocess.run([kubectl, *args], env=env, check=True, capture_output=True, timeout=120)

    def stop_job_runner(self) -> None:
        """Stop the node agent ``up`` started, remembering its exact command line to start it again later."""
        import psutil

        from edgeopt_dev import processes

        pidfile = self.root / "run" / "nodeagent.pid"
        entry = processes.read_pidfile(pidfile)
        if entry is None:
            raise RuntimeError(f"no node agent recorded in {pidfile}")
        self.job_runner_cmd = psutil.Process(entry[0]).cmdline()
        processes.stop_pidfile(pidfile, grace=10.0)
        (self.root / "run" / "nodeagent.ready").unlink(missing_ok=True)

    def start_job_runner(self) -> None:
        from edgeopt_dev import processes

        processes.spawn(
            self.job_runner_cmd,
            log=self.root / "logs" / "nodeagent.log",
            pidfile=self.root / "run" / "nodeagent.pid",
            cwd=self.root,
            die_with_parent=True,
        )
        cluster.poll("the node agent", lambda: (self.root / "run" / "nodeagent.ready").exists(), 60)

    def start_operator(self, **extra_env: str) -> None:
        from edgeopt_dev import processes
        from edgeopt_dev.images import image_name
        from edgeopt_dev.netutil import free_port

        liveness, metrics = free_port(), free_port()
        self.triton_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cp.kubeconfig),
            "EDGEOPT_MAX_CONCURRENT_CONVERSIONS": "1000",  # measure reconciling, not the capacity queue
            "EDGEOPT_MAX_CONCURRENT_CPU_CONVERSIONS": "1000",
            "EDGEOPT_CONVERTER_RESOURCES": "{}",  # CPU-only: the node agent has no GPU to give the toy model
            "EDGEOPT_CONVERTER_IMAGE": image_name("converter-cpu"),  # the node agent runs Pods from local images
            "EDGEOPT_LIVENESS_PORT": str(liveness),
            "EDGEOPT_METRICS_PORT": str(metrics),
            # spec.serving.tritonURL must be on the operator's allow-list (issue 10): the bench's own Triton.
            "EDGEOPT_ALLOWED_TRITON_URLS": f"http://127.0.0.1:{self.triton_port}",
            **extra_env,
        }
        pidfile = self.root / "run" / "bench-operator.pid"
        self.operator = processes.spawn(
            [
                sys.executable,
                "-m",
                "edgeopt.cli",
                "operator",
                "--standalone",
                "-q",
                "--liveness",
                f"http://127.0.0.1:{liveness}/healthz",
            ],
            log=self.root / "logs" / "operator.log",
            pidfile=pidfile,
            env=env,
            cwd=self.root,
            die_with_parent=True,
        )
        self.ctx.cleanups.append(lambda: processes.stop_pidfile(pidfile, grace=10.0))
        self.metrics_url = f"http://127.0.0.1:{metrics}/metrics"

        def live() -> bool:
            if self.operator.poll() is not None:
                raise cluster.Abort(f"the operator exited with {self.operator.returncode}; see {self.root}/logs")
            from edgeopt_dev.demo import http_ok

            return http_ok(f"http://127.0.0.1:{liveness}/healthz")

        cluster.poll("the operator's liveness endpoint", live, 90, interval=0.3)

    def operator_rss_mib(self) -> float:
        import psutil

        return float(psutil.Process(self.operator.pid).memory_info().rss) / MIB

    def operator_cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the operator process has used so far."""
        import psutil

        t = psutil.Process(self.operator.pid).cpu_times()
        return float(t.user + t.system)

    def namespace(self, name: str) -> str:
        self.core.create_namespace({"metadata": {"name": name}})
        cluster.poll(
            f"the default ServiceAccount in {name}",
            lambda: self.core.read_namespaced_service_account("default", name),
            30,
        )
        return name

    # ------------------------------------------------------------------ one round

    def apply_round(self, ns: str, n: int, *, direct: bool) -> dict[str, Any]:
        """Apply ``n`` resources at once; per-resource apply → Job created, and API requests per lifecycle."""
        from kubernetes.client.exceptions import ApiException

        from edgeopt.operator import resources

        names = [f"m{i:03d}" for i in range(n)]
        watch = cluster.JobWatch(self.api, ns, resources.managed_selector(), resources.MODEL_LABEL).start()
        idle_before = cluster.apiserver_requests(self.api)
        time.sleep(3.0)
        idle_after = cluster.apiserver_requests(self.api)
        background_per_s = sum(cluster.delta(idle_after, idle_before).values()) / 3.0
        op_before = cluster.operator_requests(self.metrics_url) if not direct else Counter()
        sampler = cluster.RssSampler(self.operator.pid).start() if not direct else None
        before = cluster.apiserver_requests(self.api)
        cpu_begin = self.operator_cpu_s() if not direct else 0.0
        t_begin, wall_begin = time.monotonic(), time.time()
        created: dict[str, float] = {}

        def apply(name: str) -> None:
            body = self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, om_body(name))
            created[name] = time.perf_counter()
            if direct:
                self.create_directly(ns, body)

        with ThreadPoolExecutor(APPLY_THREADS) as pool:
            list(pool.map(apply, names))
        watch.wait_for(set(names), timeout=120 + 3 * n)
        window_s = time.monotonic() - t_begin
        cpu_window = self.operator_cpu_s() - cpu_begin if not direct else 0.0
        latencies = [(watch.seen[k] - created[k]) * 1000 for k in names]
        rss_loaded = None
        if not direct:
            # Let the operator finish its status writes before counting and before reading its RSS.
            def settled() -> bool:
                self.count("LIST optimizedmodels")
                items = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
                return all((i.get("status") or {}).get("jobName") for i in items)

            cluster.poll("every status to name its Job", settled, 120, interval=1.0)
            time.sleep(2.0)
            rss_loaded = self.operator_rss_mib()
        # The rest of the lifecycle: delete, and wait until the resources and their Jobs are gone.
        for name in names:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

        def gone() -> bool:
            self.count("LIST optimizedmodels")
            self.count("LIST jobs")
            left = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
            jobs = self.batch.list_namespaced_job(ns).items
            return not left and not jobs

        cluster.poll("the resources and their Jobs to be gone", gone, 120 + n, interval=1.0)
        seconds = time.monotonic() - t_begin
        wall_end = time.time()
        after = cluster.apiserver_requests(self.api)
        watch.stop()
        peak = sampler.stop() if sampler else None
        raw = cluster.delta(after, before)
        total = sum(raw.values()) - sum(self.own_calls.values()) - background_per_s * seconds
        self.own_calls.clear()
        out: dict[str, Any] = {
            "n": n,
            "latencyMs": {
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "max": max(latencies),
                "all": [round(x, 2) for x in latencies],
            },
            **self.audit_round(ns, names, wall_begin, wall_end),
            "requestsPerResourceMetrics": round(total / n, 1),
            "requestsRaw": dict(raw),
            "backgroundPerSecond": round(background_per_s, 2),
            "seconds": round(seconds, 1),
        }
        if not direct:
            out["operatorOwnCallsPerResource"] = round(
                sum(cluster.delta(cluster.operator_requests(self.metrics_url), op_before).values()) / n, 1
            )
            # From the first create to the last Job seen: is the operator's one process the bottleneck?
            out["operatorCpu"] = {
                "msPerResource": round(cpu_window * 1000 / n, 2),
                "coreShare": round(cpu_window / window_s, 2),
                "windowS": round(window_s, 2),
            }
            out["rssMiBLoaded"] = rss_loaded
            out["rssMiBPeak"] = peak
        self.core.delete_namespace(ns)

        def ns_gone() -> bool:
            try:
                self.core.read_namespace(ns)
            except ApiException as exc:
                return exc.status == 404
            return False

        # The namespace controller's clean-up must not run into the next round's counts.
        cluster.poll(f"namespace {ns} to be deleted", ns_gone, 120, interval=0.5)
        return out

    def audit_round(self, ns: str, names: list[str], since: float, until: float) -> dict[str, Any]:
        """Requests per resource by client, and where each resource's time went, from the audit log."""
        time.sleep(2.5)  # the API server writes the audit log in batches of up to 1 s
        requests = list(audit.read(self.audit_log, since=since - 1.0, until=until + 1.0))
        by_client = audit.counts(requests, ns)
        polling = ("list ", "watch ", "get ")  # the benchmark's own waiting, not the lifecycle's
        lifecycle = {
            client: sum(v for k, v in calls.items() if client != "bench" or not k.startswith(polling))
            for client, calls in by_client.items()
        }
        lines = audit.timelines(requests, ns, names)
        n = len(names)
        return {
            "requestsPerResource": round(sum(lifecycle.values()) / n, 2),
            "requestsPerResourceByClient": {k: round(v / n, 2) for k, v in sorted(lifecycle.items())},
            "requestsByClient": {k: dict(v) for k, v in by_client.items()},
            "phasesMs": audit.phase_summary(lines),
            "timelinesMs": lines,
        }

    def create_directly(self, ns: str, body: dict[str, Any]) -> None:
        """What the operator would create for ``body``, created straight away with the client."""
        import kopf

        from edgeopt.operator import resources
        from edgeopt.operator.runtime import model_from_body

        meta = body["metadata"]
        model = model_from_body(body)
        gen, uid = int(meta["generation"]), meta["uid"]
        job = resources.job_name(meta["name"], gen, uid)
        cm = resources.manifest_configmap(model, dict(body["spec"]), name=job, generation=gen, uid=uid)
        job_body = resources.conversion_job(model, self.settings, name=job, generation=gen, uid=uid, configmap=job)
        owner: Any = copy.deepcopy(body)  # kopf types it as Body; any mapping with metadata works
        kopf.adopt([cm, job_body], owner=owner)
        self.core.create_namespaced_config_map(ns, cm)
        self.batch.create_namespaced_job(ns, job_body)

    @property
    def settings(self) -> Any:
        from edgeopt.operator.settings import OperatorSettings

        return OperatorSettings(converter_resources={})


#: Targets at 100 resources (issue 15): reconcile within 3× (p50) and 5× (p99) of the direct-client floor.
P50_TARGET, P99_TARGET, RSS_TARGET_MIB = 3.0, 5.0, 150.0


def sizes_for(quick: bool, override: str = "") -> tuple[int, ...]:
    """Resources applied at once per round; ``BENCH_OPERATOR_SIZES=100,500`` picks others (profiling)."""
    if override.strip():
        return tuple(sorted({int(x) for x in override.split(",") if x.strip()}))
    return (1, 10) if quick else (1, 10, 100, 500)


def run(ctx: Context) -> AreaResult:
    sizes = sizes_for(ctx.quick, os.environ.get("BENCH_OPERATOR_SIZES", ""))
    result = AreaResult(AREA)
    bench = Bench(ctx)
    bench.install_crd()
    bench.stop_job_runner()
    ctx.log("operator: control plane up (audit log on), CRD installed, node agent stopped for the scale rounds")
    # Unmeasured: the API server's first Job create and the garbage collector's first sync take seconds.
    bench.apply_round(bench.namespace("warm-up"), 2, direct=True)
    direct: dict[int, dict[str, Any]] = {}
    for n in sizes:
        direct[n] = bench.apply_round(bench.namespace(f"direct-{n}"), n, direct=True)
        ctx.log(
            f"operator: direct n={n}: {direct[n]['latencyMs']['p50']:.1f} ms p50, "
            f"{direct[n]['requestsPerResource']} requests/resource"
        )
    bench.start_operator()
    time.sleep(5.0)
    rss_idle = bench.operator_rss_mib()
    ctx.log(f"operator: started, RSS {rss_idle:.0f} MiB at 0 resources")
    bench.apply_round(bench.namespace("warm-up-operator"), 2, direct=False)  # unmeasured, like the direct one
    via: dict[int, dict[str, Any]] = {}
    for n in sizes:
        via[n] = bench.apply_round(bench.namespace(f"operator-{n}"), n, direct=False)
        ctx.log(
            f"operator: n={n}: {via[n]['latencyMs']['p50']:.1f} ms p50, {via[n]['latencyMs']['p99']:.1f} ms p99, "
            f"{via[n]['requestsPerResource']} requests/resource, RSS {via[n]['rssMiBLoaded']:.0f} MiB"
        )
    result.details = {"direct": direct, "operator": via, "rssMiBIdle": rss_idle}
    scale_rows(result, sizes, direct, via, rss_idle)
    try:
        ready_rows(ctx, bench, result)
    except Exception as exc:
        ctx.log(f"operator: apply → Ready failed: {exc}")
        result.details["readyError"] = str(exc)
        result.row(f"apply → Ready, toy model (failed: {str(exc)[:120]})", None)
    return result


def scale_rows(
    result: AreaResult, sizes: tuple[int, ...], direct: dict[int, Any], via: dict[int, Any], rss_idle: float
) -> None:
    """Reconcile p50/p99 against the floor per size; requests per resource and RSS at the big sizes."""
    for n in sizes:
        o, d = via[n]["latencyMs"], direct[n]["latencyMs"]
        steps = ", ".join(f"{k} {v['p50']:.0f}" for k, v in (via[n].get("phasesMs") or {}).items())
        cpu = via[n].get("operatorCpu")
        if cpu:
            steps += (
                f"; operator CPU {cpu['msPerResource']:.1f} ms per resource, "
                f"{cpu['coreShare']:.0%} of one core over the {cpu['windowS']:.1f} s to the last Job"
            )
        result.row(
            f"reconcile apply → Job created p50, {n} at once",
            o["p50"],
            d["p50"],
            "ms",
            target=Target(P50_TARGET) if n == 100 else None,
            baseline_name="direct client",
            note=f"median ms per step: {steps}" if steps and n >= 100 else "",
        )
        result.row(
            f"reconcile apply → Job created p99, {n} at once",
            o["p99"],
            d["p99"],
            "ms",
            target=Target(P99_TARGET) if n == 100 else None,
            baseline_name="direct client",
        )
    for n in [s for s in sizes if s >= 10]:
        by = via[n]["requestsPerResourceByClient"]
        result.row(
            f"API requests per resource lifecycle, {n} resources (audit log)",
            via[n]["requestsPerResource"],
            direct[n]["requestsPerResource"],
            "req",
            baseline_name="direct client",
            note=", ".join(f"{k} {v:g}" for k, v in by.items()),
        )
    result.row("operator RSS at 0 resources", rss_idle, None, "MiB")
    for n in [s for s in sizes if s >= 100] or [max(sizes)]:
        result.row(
            f"operator RSS at {n} resources",
            via[n]["rssMiBLoaded"],
            rss_idle,
            "MiB",
            target=Target(RSS_TARGET_MIB, "value") if n == 500 else None,
            baseline_name="idle",
            note=f"peak during the round {via[n]['rssMiBPeak']:.0f} MiB",
        )


def ready_rows(ctx: Context, bench: Bench, result: AreaResult) -> None:
    """apply → Ready of examples/add-checkpoint-cpu.yaml vs the same conversion + load done directly."""
    from bench.models import cli, samples
    from edgeopt.triton.client import TritonClient
    from edgeopt_dev.triton_server import TritonServer

    bench.start_job_runner()
    ns = bench.namespace("toy")
    for claim in ("models", "triton-models"):
        bench.core.create_namespaced_persistent_volume_claim(
            ns,
            {
                "metadata": {"name": claim},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
    pvc = bench.root / "pvc"
    samples("add", "--dir", str(bench.cp.pvc_dir("models") / "add"), log=ctx.dir("logs") / "samples-toy.log")
    repo = bench.cp.pvc_dir("triton-models")
    log = ctx.dir("logs") / "tritonserver-operator.log"
    server = TritonServer(repo, http_port=bench.triton_port or None, log_path=log)
    server.start()
    try:
        client = TritonClient(server.http_url, timeout=120.0)
        example = yaml.safe_load((REPO_ROOT / "examples" / "add-checkpoint-cpu.yaml").read_text())
        rounds = 1 if ctx.quick else 2
        times: dict[str, list[float]] = {"operator": [], "direct": []}
        for r in range(rounds):
            for side in ("direct", "operator") if r % 2 == 0 else ("operator", "direct"):
                name = f"add-{side}-{r}"
                doc = copy.deepcopy(example)
                doc["metadata"] = {"name": name}
                doc["spec"]["target"]["modelName"] = name
                doc["spec"]["serving"] = {"tritonURL": server.http_url}
                if side == "direct":
                    spec_file = ctx.dir("toy") / f"{name}.yaml"
                    spec_file.write_text(yaml.safe_dump(doc))
                    t0 = time.monotonic()
                    cli(
                        "convert",
                        "-f",
                        str(spec_file),
                        "--termination-log",
                        str(spec_file) + ".summary",
                        "--workdir",
                        str(ctx.dir("toy-work")),
                        log=ctx.dir("logs") / f"{name}.log",
                        env={**os.environ, "EDGEOPT_PVC_ROOT": str(pvc)},
                    )
                    client.load(name)
                    client.smoke_infer(name)
                    took = time.monotonic() - t0
                else:
                    t0 = time.monotonic()
                    bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc)
                    took = wait_ready(bench, ns, name, t0)
                times[side].append(took)
                ctx.log(f"operator: {name} Ready after {took:.1f}s")
        result.details["applyToReadySeconds"] = times
        med = {k: percentile(v, 50) for k, v in times.items()}
        result.row(
            f"apply → Ready, toy model y=a+x (median of {rounds})",
            med["operator"],
            med["direct"],
            "s",
            baseline_name="convert + load directly",
        )
    finally:
        server.stop()


def wait_ready(bench: Bench, ns: str, name: str, t0: float, timeout: float = 600.0) -> float:
    def ready() -> float | None:
        obj = bench.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        st = obj.get("status") or {}
        if st.get("phase") == "Failed":
            ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
            raise cluster.Abort(f"{name} Failed ({ready.get('reason')}): {ready.get('message')}")
        for c in st.get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") == "True":
                return time.monotonic() - t0
        return None

    took: float = cluster.poll(f"{name} to be Ready", ready, timeout, interval=0.2)
    return took
