"""The serving reconcile's decisions, table by table: no API server, no Triton, no clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from edgeopt.errors import SpecError
from edgeopt.operator import serving, status
from edgeopt.operator import serving_plan as plan
from edgeopt.operator.endpoints import Endpoint, bare, from_slices, parse_service
from edgeopt.triton.client import TritonRefused, TritonUnavailable

A = Endpoint("triton-a", "http://127.0.0.2:8000", "triton-a", "inference", True)
B = Endpoint("triton-b", "http://127.0.0.3:8000", "triton-b", "inference", False)
NOW = dt.datetime(2026, 12, 4, 22, 0, 0, tzinfo=dt.timezone.utc)


def ts(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- endpoints


def slice_(endpoints: list[dict[str, Any]], ports: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "ports": ports if ports is not None else [{"name": "grpc", "port": 8001}, {"name": "http", "port": 8000}],
        "endpoints": endpoints,
        **kw,
    }


def ep(ip: str, pod: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions, "targetRef": {"kind": "Pod", "name": pod, "namespace": "ns"}}


@pytest.mark.parametrize(
    ("slices", "expected"),
    [
        ([], []),
        # sorted by Pod name; the http port; not-ready endpoints are listed (they need their models)
        (
            [slice_([ep("10.0.0.9", "t-b", ready=False), ep("10.0.0.8", "t-a", ready=True)])],
            [("t-a", "http://10.0.0.8:8000", True), ("t-b", "http://10.0.0.9:8000", False)],
        ),
        # terminating endpoints are left out; unset ready means ready
        (
            [slice_([ep("10.0.0.8", "t-a", terminating=True), ep("10.0.0.7", "t-c")])],
            [("t-c", "http://10.0.0.7:8000", True)],
        ),
        # one unnamed port is the port; two slices of one Service are merged; IPv6 in brackets
        (
            [
                slice_([ep("fd00::1", "t-6")], ports=[{"port": 9000}], addressType="IPv6"),
                slice_([ep("10.0.0.1", "t-4")]),
            ],
            [("t-4", "http://10.0.0.1:8000", True), ("t-6", "http://[fd00::1]:9000", True)],
        ),
        # no http port among several, or FQDN slices: nothing to talk to
        ([slice_([ep("10.0.0.1", "t")], ports=[{"name": "grpc", "port": 1}, {"name": "m", "port": 2}])], []),
        ([slice_([ep("triton.example", "t")], addressType="FQDN")], []),
    ],
)
def test_endpoints_from_slices(slices: list[dict[str, Any]], expected: list[tuple[str, str, bool]]) -> None:
    assert [(e.name, e.url, e.ready) for e in from_slices(slices)] == expected


@pytest.mark.parametrize("text", ["inference/edgeopt-triton", " a/b "])
def test_service_names_parse(text: str) -> None:
    assert parse_service(text) == tuple(text.strip().split("/"))


@pytest.mark.parametrize("text", ["edgeopt-triton", "a/b/c", "A/b", "a/", "/b", "a/b_c"])
def test_bad_service_names_say_the_shape(text: str) -> None:
    with pytest.raises(SpecError, match="NAMESPACE/NAME"):
        parse_service(text)


def test_a_bare_url_is_one_endpoint_with_no_pod() -> None:
    assert bare("http://triton:8000/") == [Endpoint("http://triton:8000", "http://triton:8000")]


# --------------------------------------------------------------------------- wants


def body(phase: str = "Ready", **st: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "om"}, "status": {"phase": phase, "modelName": "add", **st}}


@pytest.mark.parametrize(
    ("obj", "url", "via", "expected"),
    [
        (body(servingVersions=[2, 1]), None, True, plan.Want("ns", "om", "add", (1, 2))),
        (body(modelVersion=3), "http://t:8000", False, plan.Want("ns", "om", "add", (3,), url="http://t:8000")),
        (
            body("Publishing", modelVersion=4, servingVersions=[3]),
            None,
            True,
            plan.Want("ns", "om", "add", (3,), switching=True),
        ),
        (body("Publishing", modelVersion=1), None, True, None),  # a first publish: nothing served yet
        (body("Failed", servingVersions=[2]), None, True, plan.Want("ns", "om", "add", (2,))),  # v2 serves on
        (body(servingVersions=[1]), None, False, None),  # no Triton
        ({**body(servingVersions=[1]), "metadata": {"deletionTimestamp": "x"}}, None, True, None),
        ({"metadata": {}, "status": {"phase": "Ready", "servingVersions": [1]}}, None, True, None),
    ],
)
def test_what_a_resource_wants_served(obj: dict[str, Any], url: str | None, via: bool, expected: Any) -> None:
    assert plan.want_from_body(obj, url, via_service=via) == expected


def test_triton_index_gives_ready_versions_and_its_own_words() -> None:
    index = [
        {"name": "add", "version": "2", "state": "READY"},
        {"name": "add", "version": "1", "state": "READY"},
        {"name": "mul", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "bad", "state": "UNAVAILABLE", "reason": "failed to load 'bad': no version is available"},
        {"name": "new"},
    ]
    obs = plan.from_index(A, index, gated=True, gate="False")
    assert obs.ready == {"add": (1, 2)}
    assert obs.words == {
        "mul": "UNAVAILABLE: unloaded",
        "bad": "UNAVAILABLE: failed to load 'bad': no version is available",
    }
    assert (obs.gated, obs.gate) == (True, "False")


# --------------------------------------------------------------------------- loads and gates

ADD = plan.Want("ns", "add-om", "add", (2,))
MUL = plan.Want("ns", "mul-om", "mul", (1,))
SWITCHING = plan.Want("ns", "sw-om", "sw", (1,), switching=True)


def snap(
    wants: tuple[plan.Want, ...],
    a: Any,
    b: Any,
    *,
    gate_a: str | None = None,
    gate_b: str | None = None,
) -> plan.Snapshot:
    """``a``/``b``: ready models of each endpoint, or None when its Triton did not answer."""
    obs = {
        A.url: plan.Observed(A, a, error="" if a is not None else "refused", gated=True, gate=gate_a),
        B.url: plan.Observed(B, b, error="" if b is not None else "refused", gated=True, gate=gate_b),
    }
    return plan.Snapshot(wants, (A, B), obs)


@pytest.mark.parametrize(
    ("wants", "a", "b", "expected"),
    [
        # a restarted replica (b) gets every model, in name order, with a's config
        (
            (MUL, ADD),
            {"add": (2,), "mul": (1,)},
            {},
            [("add", "triton-b", "triton-a"), ("mul", "triton-b", "triton-a")],
        ),
        # both restarted: the repository's config (no peer)
        ((ADD,), {}, {}, [("add", "triton-a", None), ("add", "triton-b", None)]),
        # the wrong version on b (it missed a switch): loaded, from a's config
        ((ADD,), {"add": (2,)}, {"add": (1,)}, [("add", "triton-b", "triton-a")]),
        # extra versions are not "missing"; a silent Triton gets nothing (its round comes when it answers)
        ((ADD,), {"add": (1, 2)}, None, []),
        # a switch in progress owns its loads
        ((SWITCHING,), {}, {}, []),
    ],
)
def test_loads(wants: Any, a: Any, b: Any, expected: list[tuple[str, str, str | None]]) -> None:
    loads = plan.decide_loads(snap(wants, a, b))
    assert [(x.want.model, x.endpoint.name, x.peer.name if x.peer else None) for x in loads] == expected


def test_after_loads_records_success_and_triton_words() -> None:
    s = snap((ADD, MUL), {}, {"add": (2,)})
    loads = plan.decide_loads(s)
    after = plan.after_loads(s, [(loads[0], None), (loads[1], "Triton at x: load failed: bad config")])
    assert after.observed[A.url].ready == {"add": (2,)}
    assert after.observed[A.url].words == {"mul": "Triton at x: load failed: bad config"}
    assert s.observed[A.url].ready == {}, "the observation it came from is not changed"


@pytest.mark.parametrize(
    ("wants", "a", "gate_a", "expected"),
    [
        ((ADD, MUL), {"add": (2,), "mul": (1,)}, None, ("True", "ModelsLoaded")),
        ((ADD, MUL), {"add": (2,), "mul": (1,)}, "True", None),  # already so: no patch
        ((ADD, MUL), {"add": (2,)}, "True", ("False", "ModelsMissing")),
        ((ADD,), None, "True", ("False", "TritonUnavailable")),
        ((), {}, None, ("True", "ModelsLoaded")),  # nothing to serve: a fresh replica may join at once
        ((SWITCHING,), {"sw": (2,)}, None, ("True", "ModelsLoaded")),  # mid-switch, another version serves
        ((SWITCHING,), {}, None, ("False", "ModelsMissing")),
        ((plan.Want("ns", "x", "x", (1,), url="http://other:8000"),), {}, None, ("True", "ModelsLoaded")),
    ],
)
def test_gates(wants: Any, a: Any, gate_a: str | None, expected: tuple[str, str] | None) -> None:
    patches = [p for p in plan.decide_gates(snap(wants, a, {}, gate_a=gate_a, gate_b="False")) if p.pod == "triton-a"]
    assert [(p.status, p.reason) for p in patches] == ([expected] if expected else [])


def test_an_ungated_pod_or_a_bare_url_gets_no_gate() -> None:
    s = snap((ADD,), {}, {})
    s = plan.Snapshot(s.wants, s.service, {k: plan.Observed(o.endpoint, o.ready) for k, o in s.observed.items()})
    assert plan.decide_gates(s) == []


# --------------------------------------------------------------------------- status


def st(cond: tuple[str, str] = ("True", "Serving"), phase: str = "Ready", **serving: Any) -> dict[str, Any]:
    conds = status.merge_conditions([], [status.Condition("Ready", cond[0], cond[1], "m")], generation=1)
    return {"phase": phase, "observedGeneration": 1, "conditions": conds, **({"serving": serving} if serving else {})}


@pytest.mark.parametrize(
    ("old", "a", "b", "serving_block", "ready", "event"),
    [
        # all served, as recorded: nothing to write
        (st(endpoints=2, ready=2, version=2), {"add": (2,)}, {"add": (2,)}, None, None, None),
        # first seen missing: recorded with its time, Ready untouched (it may heal within the audit period)
        (
            st(endpoints=2, ready=2, version=2),
            {"add": (2,)},
            {},
            {"endpoints": 2, "ready": 1, "version": 2, "notServedSince": ts(0)},
            None,
            None,
        ),
        # missing for longer than the audit period: Ready False NotServed, one Warning
        (
            st(endpoints=2, ready=1, version=2, notServedSince=ts(31)),
            {"add": (2,)},
            {},
            None,
            ("False", "NotServed"),
            ("NotServed", True),
        ),
        # healed: True again, one Normal Event, the time dropped
        (
            st(("False", "NotServed"), endpoints=2, ready=1, version=2, notServedSince=ts(90)),
            {"add": (2,)},
            {"add": (2,)},
            {"endpoints": 2, "ready": 2, "version": 2, "notServedSince": None},
            ("True", "Serving"),
            ("Served", False),
        ),
        # a phase other than Ready (a conversion under way): counts only
        (
            st(("False", "Converting"), "Converting", endpoints=2, ready=2, version=2, notServedSince=ts(90)),
            {"add": (2,)},
            {},
            {"endpoints": 2, "ready": 1, "version": 2, "notServedSince": ts(90)},
            None,
            None,
        ),
    ],
)
def test_serving_status(old: dict[str, Any], a: Any, b: Any, serving_block: Any, ready: Any, event: Any) -> None:
    s = snap((ADD,), a, b)
    served = plan.decide_serving(s, ADD)
    decision = plan.serving_patch(old, ADD, served, NOW, audit_seconds=30)
    patch = decision.patch if decision else {}
    assert patch.get("serving") == serving_block
    if ready is None:
        assert "conditions" not in patch
    else:
        got = status.condition(patch, "Ready")
        assert got is not None and (got["status"], got["reason"]) == ready
        assert (status.condition(patch, "ServingReady") or {}).get("status") == ready[0]
    assert ((decision.event[0], decision.event[2]) if decision and decision.event else None) == event


def test_not_served_is_said_once() -> None:
    s = snap((ADD,), {"add": (2,)}, {})
    served = plan.decide_serving(s, ADD)
    old = st(endpoints=2, ready=1, version=2, notServedSince=ts(31))
    first = plan.serving_patch(old, ADD, served, NOW, 30)
    assert first and first.event
    later = NOW + dt.timedelta(seconds=30)
    assert plan.serving_patch({**old, **first.patch}, ADD, served, later, 30) is None, "no second write or Event"


def test_not_served_names_the_endpoint_and_triton_words() -> None:
    s = plan.after_loads(
        snap((ADD,), {"add": (2,)}, {}),
        [(plan.decide_loads(snap((ADD,), {"add": (2,)}, {}))[0], "failed to load 'add': out of memory")],
    )
    served = plan.decide_serving(s, ADD)
    old = st(endpoints=2, ready=1, version=2, notServedSince=ts(60))
    decision = plan.serving_patch(old, ADD, served, NOW, 30)
    assert decision and decision.event
    message = status.condition(decision.patch, "Ready")["message"]  # type: ignore[index]
    assert message == (
        "version 2 of add is not served by 1 of 2 Triton endpoints: triton-b (http://127.0.0.3:8000): "
        "failed to load 'add': out of memory"
    )


def test_no_endpoints_is_not_served() -> None:
    s = plan.Snapshot((ADD,), (), {})
    served = plan.decide_serving(s, ADD)
    assert (served.endpoints, served.ready, served.complete) == (0, 0, False)
    decision = plan.serving_patch(st(notServedSince=ts(31)), ADD, served, NOW, 30)
    assert decision and "has no endpoints" in status.condition(decision.patch, "Ready")["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("a", "b", "retry"),
    [({"add": (2,)}, {"add": (2,)}, False), ({"add": (2,)}, {}, True), ({"add": (2,)}, None, True)],
)
def test_a_round_that_left_something_missing_looks_again_soon(a: Any, b: Any, retry: bool) -> None:
    assert plan.needs_retry(snap((ADD,), a, b)) is retry


# --------------------------------------------------------------------------- switch failures


@pytest.mark.parametrize(
    ("exc", "attempts", "retry", "reason", "gave_up", "new_attempts"),
    [
        (TritonUnavailable("down"), 0, 0, "TritonUnavailable", False, 0),
        (TritonRefused("bad"), 1, 1, "LoadFailed", False, 2),
        (TritonRefused("bad"), 4, 2, "LoadFailed", True, None),
        (serving.SmokeTestFailed("NaN"), 0, 0, "SmokeTestFailed", False, 1),
    ],
)
def test_switch_failures(exc: Any, attempts: int, retry: int, reason: str, gave_up: bool, new_attempts: Any) -> None:
    old = {"phase": "Publishing", "observedGeneration": 1, "servingAttempts": attempts}
    f = serving.decide_failure(old, 1, exc, limit=5, retry=retry, backoff_base=1.0)
    assert f.patch is not None and status.condition(f.patch, "Ready")["reason"] == reason  # type: ignore[index]
    assert (f.retry_in is None) is gave_up and f.patch["phase"] == ("Failed" if gave_up else "Publishing")
    assert f.patch.get("servingAttempts") == new_attempts
    assert f.event is not None and f.event[0] == reason
    if not gave_up:
        assert f.retry_in == serving.backoff(1.0, retry)


def test_an_unreachable_triton_already_recorded_is_not_written_again() -> None:
    first = serving.decide_failure(
        {"phase": "Publishing"}, 1, TritonUnavailable("down"), limit=5, retry=0, backoff_base=1.0
    )
    again = serving.decide_failure(
        {"phase": "Publishing", **(first.patch or {})}, 1, TritonUnavailable("down"), limit=5, retry=1, backoff_base=1.0
    )
    assert (again.patch, again.event, again.retry_in) == (None, None, 2.0)


def test_served_patch_only_onto_the_switch_it_was_for() -> None:
    pub = {"phase": "Publishing", "observedGeneration": 2}
    patch = serving.served_patch(pub, 2, 5, "served", 2, 1)
    assert patch and patch["phase"] == "Ready" and patch["servingVersions"] == [5]
    assert patch["serving"] == {"endpoints": 2, "ready": 1, "version": 5, "notServedSince": None}
    assert serving.served_patch({**pub, "observedGeneration": 3}, 2, 5, "served", 2, 1) is None
    assert serving.served_patch({**pub, "phase": "Pending"}, 2, 5, "served", 2, 1) is None


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (None, False, 30.0, 4)),
        (
            {
                "EDGEOPT_TRITON_SERVICE": "inference/triton",
                "EDGEOPT_TRITON_URL": "http://triton.inference:8000",
                "EDGEOPT_TRITON_READINESS_GATE": "true",
                "EDGEOPT_SERVING_AUDIT_SECONDS": "12",
                "EDGEOPT_SERVING_LOAD_PARALLELISM": "2",
            },
            ("inference/triton", True, 12.0, 2),
        ),
    ],
)
def test_serving_settings(env: dict[str, str], expected: tuple[Any, ...]) -> None:
    from edgeopt.operator.settings import OperatorSettings

    s = OperatorSettings.from_env(env)
    assert (s.triton_service, s.triton_readiness_gate, s.serving_audit_seconds, s.serving_load_parallelism) == expected


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"EDGEOPT_TRITON_SERVICE": "triton", "EDGEOPT_TRITON_URL": "http://t:8000"}, "EDGEOPT_TRITON_SERVICE"),
        ({"EDGEOPT_TRITON_SERVICE": "inference/triton"}, "needs EDGEOPT_TRITON_URL"),
        ({"EDGEOPT_TRITON_READINESS_GATE": "yes"}, "EDGEOPT_TRITON_READINESS_GATE"),
        ({"EDGEOPT_SERVING_AUDIT_SECONDS": "0"}, "EDGEOPT_SERVING_AUDIT_SECONDS"),
        ({"EDGEOPT_SERVING_LOAD_PARALLELISM": "0"}, "EDGEOPT_SERVING_LOAD_PARALLELISM"),
    ],
)
def test_bad_serving_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    from edgeopt.operator.settings import OperatorSettings, SettingsError

    with pytest.raises(SettingsError, match=names):
        OperatorSettings.from_env(env)
