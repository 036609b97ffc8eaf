"""Kubernetes plumbing for the operator area: API request counts, a Job watch, the operator process.

Request counts come from the API server's own ``/metrics``
(``apiserver_request_total``, by verb and resource): the dev control plane
has no audit log flag to turn on, and the metric counts every client alike
(the operator, kopf inside it, the controller manager's garbage collector,
and this benchmark).  So the benchmark counts its own calls and subtracts
them, and subtracts the idle background rate measured just before.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

_LINE = re.compile(r"^apiserver_request_total\{([^}]*)\}\s+([0-9.eE+-]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_OPERATOR_LINE = re.compile(r"^edgeopt_operator_api_requests_total\{([^}]*)\}\s+([0-9.eE+-]+)$")


def parse_request_totals(text: str, pattern: re.Pattern[str] = _LINE) -> Counter[str]:
    """``verb resource[/subresource]`` -> count; non-resource URLs (/metrics, /readyz) left out."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(1)))
        resource = labels.get("resource", "")
        if not resource:
            continue
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        out[f"{labels.get('verb', '?').upper()} {resource}"] += int(float(m.group(2)))
    return out


def apiserver_requests(api: Any) -> Counter[str]:
    resp = api.call_api(
        "/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True
    )
    return parse_request_totals(resp.data.decode())


def operator_requests(metrics_url: str) -> Counter[str]:
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        return parse_request_totals(resp.read().decode(), _OPERATOR_LINE)


def delta(after: Mapping[str, int], before: Mapping[str, int]) -> Counter[str]:
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0})


class JobWatch:
    """Records when each managed Job of a namespace is first seen (ADDED), keyed by its model label."""

    def __init__(self, api: Any, namespace: str, selector: str, key_label: str) -> None:
        self.api = api
        self.namespace = namespace
        self.selector = selector
        self.key_label = key_label
        self.seen: dict[str, float] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"jobwatch-{namespace}", daemon=True)

    def start(self) -> JobWatch:
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"the Job watch in {self.namespace} did not start")
        return self

    def _record(self, obj: Any, when: float) -> None:
        key = (obj.metadata.labels or {}).get(self.key_label)
        if key:
            with self._cond:
                self.seen.setdefault(key, when)
                self._cond.notify_all()

    def _run(self) -> None:
        """List once, then watch on from the last resourceVersion seen.

        Re-listing at every watch timeout lost the Jobs created between two
        watch rounds (they are in the list, never in an ADDED event): a round
        with 100 resources waited for Jobs that existed. A re-list happens only
        when the server says the resourceVersion is too old (410), and then the
        listed Jobs count as seen at that moment (late, never early).
        """
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        batch = client.BatchV1Api(self.api)
        rv: str | None = None
        while not self._stop.is_set():
            if rv is None:
                listed = batch.list_namespaced_job(self.namespace, label_selector=self.selector)
                now = time.perf_counter()
                for item in listed.items:
                    self._record(item, now)
                rv = listed.metadata.resource_version
                self.ready.set()
            w = watch.Watch()
            try:
                for event in w.stream(
                    batch.list_namespaced_job,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=rv,
                    timeout_seconds=5,
                ):
                    now = time.perf_counter()
                    rv = event["object"].metadata.resource_version or rv
                    if event["type"] == "ADDED":
                        self._record(event["object"], now)
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise
                rv = None  # too old: list again
            finally:
                w.stop()

    def wait_for(self, keys: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not keys <= set(self.seen):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(keys - set(self.seen))
                    raise RuntimeError(f"{len(missing)} Job(s) not created after {timeout:.0f}s: {missing[:5]}")
                self._cond.wait(min(left, 1.0))

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


class Abort(Exception):
    """Raised by a poll condition to stop waiting at once (something failed for good)."""


def poll(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Abort:
            raise
        except Exception as exc:  # not yet
            last = exc
        time.sleep(interval)
    detail = f" (last error: {last})" if last else ""
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


class RssSampler:
    """Peak resident memory of one process, sampled every 0.2 s on a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _sample(self) -> None:
        try:
            self.peak = max(self.peak, self.process.memory_info().rss / (1024 * 1024))
        except Exception:  # the process is gone; the peak so far stands
            self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> RssSampler:
        self._sample()
        self.thread.start()
        return self

    def stop(self) -> float:
        self._sample()
        self._stop.set()
        self.thread.join(5)
        return round(self.peak, 1)
