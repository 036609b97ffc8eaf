"""The node agent runs Job Pods (created by the real job controller) as OCI containers, reported like kubelet."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest
from kubernetes import client

from edgeopt_dev.podnet import POD_CIDR
from tests.fixtures.common import wait_for
from tests.k8s.jobs import TEST_IMAGE, containers_of, job_manifest, job_pods, wait_job_finished

pytestmark = pytest.mark.k8s

SCRIPT = r"""
import json, os, pathlib
data = pathlib.Path(os.environ["DATA"])
answer = int((data / "input.txt").read_text()) + int(pathlib.Path("/etc/edgeopt/model.yaml").read_text().split(":")[1])
(data / "output.txt").write_text(str(answer))
print("pod", os.environ["POD_NAME"], "in", os.environ["POD_NAMESPACE"], "says", os.environ["GREETING"], flush=True)
pathlib.Path("/dev/termination-log").write_text(json.dumps(
    {"ok": True, "answer": answer, "pid": os.getpid(), "files": sorted(os.listdir("/etc/edgeopt"))}))
"""

SLEEPER = "exec sleep 300"  # PID 1 of its container: SIGTERM does not end it, SIGKILL after the grace does
GRACE = {"terminationGracePeriodSeconds": 2}


@pytest.fixture
def core(k8s_client):
    return client.CoreV1Api(k8s_client)


@pytest.fixture
def batch(k8s_client):
    return client.BatchV1Api(k8s_client)


def make_claim(core, control_plane, namespace: str) -> tuple[str, Path]:
    """A PVC (kube-scheduler places a Pod once it is bound) and the folder of its hostPath volume."""
    claim = f"data-{namespace}"  # PVC folders are per cluster: keep tests apart
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    return claim, control_plane.pvc_dir(claim)


def pvc_volume(claim: str, mount: str) -> dict:
    return {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        "container": {"volumeMounts": [{"name": "data", "mountPath": mount}]},
    }


def test_labelled_job_runs_in_a_container_to_complete(control_plane, kubectl, core, batch, namespace):
    claim, folder = make_claim(core, control_plane, namespace)
    (folder / "input.txt").write_text("41")
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"model.yaml": "add: 1\n", "not-projected": "x"}}
    )
    mount = f"/mnt/edgeopt/pvc/{claim}"
    manifest = job_manifest(
        "convert",
        ["python", "-c", SCRIPT],
        securityContext={"fsGroup": 10001},  # the claim's folder is root's: the image user writes through its group
        volumes=[
            {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "model.yaml", "path": "model.yaml"}]}},
        ],
        container={
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "GREETING", "value": "hello-$(POD_NAME)"},
                {"name": "DATA", "value": mount},
            ],
            "volumeMounts": [
                {"name": "data", "mountPath": mount},
                {"name": "cfg", "mountPath": "/etc/edgeopt", "readOnly": True},
            ],
        },
    )
    job = batch.create_namespaced_job(namespace, manifest)

    cond = wait_job_finished(batch, "convert", namespace)
    assert cond == {
        "type": "Complete",
        "reason": "CompletionsReached",
        "message": "Reached expected number of succeeded pods",
    }
    status = batch.read_namespaced_job("convert", namespace).status
    assert status.succeeded == 1 and not status.failed and not status.active
    assert status.start_time and status.completion_time and status.completion_time >= status.start_time

    [pod] = job_pods(core, "convert", namespace)
    uid = job.metadata.uid
    assert pod.metadata.name.startswith("convert-")
    assert pod.metadata.labels["job-name"] == pod.metadata.labels["batch.kubernetes.io/job-name"] == "convert"
    assert pod.metadata.labels["controller-uid"] == pod.metadata.labels["batch.kubernetes.io/controller-uid"] == uid
    [owner] = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Job", "convert", uid, True)
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert terminated.started_at <= terminated.finished_at
    message = json.loads(terminated.message)
    assert message["answer"] == 42 and message["files"] == ["model.yaml"]  # items honoured
    assert (folder / "output.txt").read_text() == "42"
    log = (control_plane.dir / "logs" / f"{namespace}_{pod.metadata.name}.log").read_text()
    assert f"pod {pod.metadata.name} in {namespace} says hello-{pod.metadata.name}" in log
    # Bound to the dev node like a scheduler would, so kube-apiserver reaches its kubelet endpoint.
    assert pod.spec.node_name == "edgeopt-local" and pod.status.host_ip == "127.0.0.1"
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(POD_CIDR), "its own address"
    assert kubectl("logs", "-n", namespace, "job/convert").stdout == log
    assert message["pid"] == 1, "the command is the container's init, in its own PID namespace"
    assert not containers_of(pod.metadata.uid), "the container is removed once its status is written"
    assert not Path(mount).exists(), "the mount point must exist only inside the Pod's mount namespace"


def test_failing_command_ends_failed_after_backoff_limit_retries(core, batch, namespace):
    command = ["sh", "-c", "echo attempt failed > /dev/termination-log; echo oops >&2; exit 3"]
    batch.create_namespaced_job(namespace, job_manifest("fails", command, backoff_limit=2))

    cond = wait_job_finished(batch, "fails", namespace)
    assert (cond["type"], cond["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert batch.read_namespaced_job("fails", namespace).status.failed == 3
    pods = job_pods(core, "fails", namespace)
    assert len(pods) == 3, "backoffLimit 2 means one run and two retries, each a new Pod"
    for pod in pods:
        assert pod.status.phase == "Failed"
        terminated = pod.status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.reason, terminated.message) == (3, "Error", "attempt failed\n")


def test_pod_failure_policy_fail_job_stops_retries_at_once(core, batch, namespace):
    manifest = job_manifest(
        "permanent",
        ["sh", "-c", "exit 4"],
        backoff_limit=5,
        job_spec={
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [2, 4]}}
                ]
            }
        },
    )
    batch.create_namespaced_job(namespace, manifest)
    cond = wait_job_finished(batch, "permanent", namespace)
    assert (cond["type"], cond["reason"]) == ("Failed", "PodFailurePolicy")
    assert "failed with exit code 4 matching FailJob rule at index 0" in cond["message"]
    assert len(job_pods(core, "permanent", namespace)) == 1


def running_container(core, job: str, namespace: str) -> str:
    """The uid of the Job's Pod once its container runs."""

    def running() -> str | None:
        pods = job_pods(core, job, namespace)
        if pods and pods[0].status.phase == "Running" and containers_of(pods[0].metadata.uid):
            return str(pods[0].metadata.uid)
        return None

    return str(wait_for(running, timeout=60, what=f"the container of Job {job} to run"))


def test_active_deadline_seconds_kills_a_long_running_container(core, batch, namespace):
    manifest = job_manifest(
        "slow", ["sh", "-c", SLEEPER], backoff_limit=3, job_spec={"activeDeadlineSeconds": 6}, **GRACE
    )
    batch.create_namespaced_job(namespace, manifest)
    uid = running_container(core, "slow", namespace)
    t0 = time.monotonic()

    cond = wait_job_finished(batch, "slow", namespace, timeout=30)
    assert cond == {
        "type": "Failed",
        "reason": "DeadlineExceeded",
        "message": "Job was active longer than specified deadline",
    }
    wait_for(lambda: not containers_of(uid), timeout=15, what="the container to be stopped")
    assert time.monotonic() - t0 < 20
    # Like the job controller, the runner deletes the active Pods of a Job past its deadline.
    wait_for(lambda: not job_pods(core, "slow", namespace), timeout=10, what="the Pod to be deleted")


def test_deleting_the_job_stops_its_container(kubectl, core, batch, namespace):
    batch.create_namespaced_job(namespace, job_manifest("doomed", ["sh", "-c", SLEEPER], **GRACE))
    uid = running_container(core, "doomed", namespace)

    kubectl("delete", "job", "doomed", "-n", namespace)  # background propagation: the GC deletes the Pod
    wait_for(lambda: not containers_of(uid), timeout=45, what="the container to be stopped")
    wait_for(lambda: not job_pods(core, "doomed", namespace), timeout=10, what="the Pod to be deleted")


def test_what_it_cannot_emulate_fails_the_pod_with_a_message(core, batch, namespace):
    manifest = job_manifest("two", ["true"])
    manifest["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "edgeopt/test:local", "command": ["true"]}
    )
    batch.create_namespaced_job(namespace, manifest)
    cond = wait_job_finished(batch, "two", namespace)
    assert cond["type"] == "Failed"
    [pod] = job_pods(core, "two", namespace)
    assert pod.status.phase == "Failed"
    assert "cannot emulate" in pod.status.message and "2 containers" in pod.status.message
    assert "cannot emulate" in pod.status.container_statuses[0].state.terminated.message


def test_security_context_user_groups_and_read_only_root(core, batch, namespace):
    report = (
        'printf "%s|%s|%s|%s|%s" "$(id -u)" "$(id -g)" "$(id -G)" '
        '"$(touch /usr/x 2>/dev/null && echo rw || echo ro)" "$(touch /tmp/x && echo tmp-ok)" '
        "> /dev/termination-log"
    )
    manifest = job_manifest(
        "locked",
        ["sh", "-c", report],
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 3000,
            "fsGroup": 2000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        volumes=[{"name": "tmp", "emptyDir": {}}],
        container={
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
    )
    batch.create_namespaced_job(namespace, manifest)
    cond = wait_job_finished(batch, "locked", namespace)
    [pod] = job_pods(core, "locked", namespace)
    terminated = pod.status.container_statuses[0].state.terminated
    assert cond["type"] == "Complete", terminated
    assert terminated.message == "1000|3000|3000 2000|ro|tmp-ok"


def test_read_only_root_covers_host_files_bound_into_the_pod(core, batch, namespace):
    """As root, with a ConfigMap mounted in /etc, the image's /etc must stay read-only, volumes writable."""
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    report = (
        'printf "%s|%s|%s|%s" "$(cat /etc/edgeopt/a)" "$(touch /etc/hostname 2>&1 || echo denied)" '
        '"$(touch /etc/new 2>/dev/null && echo rw || echo ro)" "$(touch /mnt/nested/inner/x && echo vol-rw)" '
        "> /dev/termination-log"
    )
    manifest = job_manifest(
        "sealed",
        ["sh", "-c", report],
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "outer", "emptyDir": {}},
            {"name": "inner", "emptyDir": {}},
        ],
        container={
            "securityContext": {"readOnlyRootFilesystem": True, "runAsUser": 0},
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/edgeopt"},
                {"name": "outer", "mountPath": "/mnt/nested"},
                {"name": "inner", "mountPath": "/mnt/nested/inner"},
            ],
        },
    )
    batch.create_namespaced_job(namespace, manifest)
    cond = wait_job_finished(batch, "sealed", namespace)
    [pod] = job_pods(core, "sealed", namespace)
    terminated = pod.status.container_statuses[0].state.terminated
    assert cond["type"] == "Complete", terminated
    value, hostname, new, volume = terminated.message.split("|")
    assert value == "1" and "Read-only file system" in hostname and new == "ro" and volume == "vol-rw"


def test_service_account_token_is_real_and_rbac_applies_in_the_pod(core, batch, namespace):
    script = (
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "try:\n"
        "    client.CoreV1Api().list_namespaced_pod(open('/var/run/secrets/kubernetes.io/serviceaccount/namespace')"
        ".read())\n"
        "    message = 'allowed'\n"
        "except client.ApiException as exc:\n"
        "    message = f'{exc.status} {exc.body}'\n"
        "open('/dev/termination-log', 'w').write(message[:300])\n"
    )
    batch.create_namespaced_job(namespace, job_manifest("whoami", ["python", "-c", script]))
    assert wait_job_finished(batch, "whoami", namespace)["type"] == "Complete"
    [pod] = job_pods(core, "whoami", namespace)
    message = pod.status.container_statuses[0].state.terminated.message
    assert message.startswith("403 ") and f"system:serviceaccount:{namespace}:default" in message


def test_new_top_level_mount_paths_exist_only_inside_the_pod(core, batch, namespace):
    top = f"/edgeopt-test-{namespace[-6:]}"  # does not exist on this machine
    # Mount points the Pod gets here, which must never be made on the host (the SA token volume included).
    host_paths = [Path(top), Path("/dev/termination-log"), Path("/var/run/secrets/kubernetes.io")]
    absent = [p for p in host_paths if not p.exists()]
    assert Path(top) in absent
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    report = (
        f'echo hi > {top}/work/f && printf "%s|%s|%s" "$(cat {top}/work/f)" "$(cat {top}/cfg/a)" '
        '"$(touch /usr/x 2>/dev/null && echo rw || echo ro)" > /dev/termination-log'
    )
    manifest = job_manifest(
        "toplevel",
        ["sh", "-c", report],
        volumes=[{"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}],
        container={
            "securityContext": {"readOnlyRootFilesystem": True},
            "volumeMounts": [{"name": "work", "mountPath": f"{top}/work"}, {"name": "cfg", "mountPath": f"{top}/cfg"}],
        },
    )
    batch.create_namespaced_job(namespace, manifest)
    cond = wait_job_finished(batch, "toplevel", namespace)
    [pod] = job_pods(core, "toplevel", namespace)
    terminated = pod.status.container_statuses[0].state.terminated
    assert cond["type"] == "Complete", terminated
    assert terminated.message == "hi|1|ro"
    assert [p for p in absent if p.exists()] == [], "mount points must not appear on the host"


def test_run_as_non_root_against_a_root_image_waits_as_a_kubelet_refuses_it(core, batch, namespace):
    from edgeopt_dev.images import BASE_IMAGE  # USER unset: root, as in most public images

    manifest = job_manifest("rooted", ["true"], securityContext={"runAsNonRoot": True}, container={"image": BASE_IMAGE})
    batch.create_namespaced_job(namespace, manifest)

    def waiting() -> tuple[str, str] | None:
        pods = job_pods(core, "rooted", namespace)
        statuses = pods[0].status.container_statuses if pods else None
        state = statuses[0].state.waiting if statuses else None
        return (state.reason, state.message) if state else None

    reason, message = wait_for(waiting, timeout=30, what="the container to wait")
    assert reason == "CreateContainerConfigError"
    assert message.startswith("container has runAsNonRoot and image will run as root (pod: ")
    assert job_pods(core, "rooted", namespace)[0].status.phase == "Pending"


def test_a_deployment_pod_restarts_in_place_and_its_readiness_probe_sets_ready(core, k8s_client, namespace):
    """restartPolicy Always, as for the chart's operator and Triton: a crash restarts the container, not the Pod."""
    from edgeopt_dev.netutil import free_port

    port = free_port("0.0.0.0")
    # Serves (at its Pod IP, where the probe goes) until a second start; then it stays up. The claimless
    # state lives in an emptyDir of the Pod.
    script = (
        f"if [ -e /state/first ]; then exec python -m http.server {port} --bind $POD_IP; fi; "
        "touch /state/first; echo crash > /dev/termination-log; exit 7"
    )
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "volumes": [{"name": "state", "emptyDir": {}}],
                    "containers": [
                        {
                            "name": "web",
                            "image": TEST_IMAGE,
                            "command": ["sh", "-c", script],
                            "ports": [{"name": "http", "containerPort": port}],
                            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                            "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        },
    }
    client.AppsV1Api(k8s_client).create_namespaced_deployment(namespace, body)

    def ready_pod():
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        if len(pods) == 1 and pods[0].status.container_statuses:
            cs = pods[0].status.container_statuses[0]
            if cs.ready and cs.restart_count == 1:
                return pods[0]
        return None

    # The kubelet's back-off before the first restart is 10 s.
    pod = wait_for(ready_pod, timeout=60, what="the Deployment's Pod to restart once and turn Ready")
    cs = pod.status.container_statuses[0]
    assert pod.status.phase == "Running"
    assert (cs.last_state.terminated.exit_code, cs.last_state.terminated.message) == (7, "crash\n")
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    deployment = wait_for(
        lambda: (
            d := client.AppsV1Api(k8s_client).read_namespaced_deployment("web", namespace)
        ).status.available_replicas
        == 1
        and d,
        timeout=30,
        what="the Deployment to be available",
    )
    assert deployment.status.ready_replicas == 1
