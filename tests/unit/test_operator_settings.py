"""Operator settings: every EDGEOPT_* variable parses, and mistakes name the variable."""

from __future__ import annotations

import pytest

from edgeopt.operator.settings import DEFAULT_RESOURCES, OperatorSettings, SettingsError


def test_defaults_are_the_documented_ones() -> None:
    s = OperatorSettings.from_env({})
    assert s.namespaces == ()
    assert s.max_concurrent_conversions == 1
    assert dict(s.converter_resources) == DEFAULT_RESOURCES == {"limits": {"nvidia.com/gpu": 1}}
    assert (s.liveness_port, s.metrics_port) == (8080, 9090)
    assert s.triton_url is None and s.peering_name is None


def test_every_variable_from_the_brief_is_read() -> None:
    env = {
        "EDGEOPT_NAMESPACES": "a, b,,c",
        "EDGEOPT_CONVERTER_IMAGE": "registry.local/conv:1",
        "EDGEOPT_CONVERTER_RESOURCES": "{}",
        "EDGEOPT_CONVERTER_NODE_SELECTOR": '{"nvidia.com/gpu.product": "Jetson-Orin"}',
        "EDGEOPT_CONVERTER_TOLERATIONS": '[{"key": "gpu", "operator": "Exists"}]',
        "EDGEOPT_CONVERTER_RUNTIME_CLASS": "nvidia",
        "EDGEOPT_JOB_ACTIVE_DEADLINE_SECONDS": "600",
        "EDGEOPT_JOB_BACKOFF_LIMIT": "0",
        "EDGEOPT_JOB_TTL_SECONDS": "60",
        "EDGEOPT_MAX_CONCURRENT_CONVERSIONS": "3",
        "EDGEOPT_TRITON_URL": "http://triton:8000",
        "EDGEOPT_TRITON_TIMEOUT_SECONDS": "2.5",
        "EDGEOPT_PEERING_NAME": "edgeopt",
        "EDGEOPT_PRIORITY": "100",
        "EDGEOPT_LIVENESS_PORT": "0",
        "EDGEOPT_METRICS_PORT": "9191",
        "EDGEOPT_SERVING_MAX_ATTEMPTS": "2",
    }
    s = OperatorSettings.from_env(env)
    assert s.serving_max_attempts == 2
    assert s.namespaces == ("a", "b", "c")
    assert s.converter_image == "registry.local/conv:1"
    assert dict(s.converter_resources) == {}
    assert dict(s.converter_node_selector) == {"nvidia.com/gpu.product": "Jetson-Orin"}
    assert s.converter_tolerations == ({"key": "gpu", "operator": "Exists"},)
    assert s.converter_runtime_class == "nvidia"
    assert (s.job_active_deadline_seconds, s.job_backoff_limit, s.job_ttl_seconds) == (600, 0, 60)
    assert s.max_concurrent_conversions == 3
    assert s.triton_url == "http://triton:8000" and s.triton_timeout_seconds == 2.5
    assert (s.peering_name, s.priority, s.liveness_port, s.metrics_port) == ("edgeopt", 100, 0, 9191)


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("EDGEOPT_MAX_CONCURRENT_CONVERSIONS", "0", "must be >= 1"),
        ("EDGEOPT_MAX_CONCURRENT_CONVERSIONS", "two", "not valid"),
        ("EDGEOPT_SERVING_MAX_ATTEMPTS", "0", "must be >= 1"),
        ("EDGEOPT_CONVERTER_RESOURCES", "[1]", "JSON object"),
        ("EDGEOPT_CONVERTER_RESOURCES", "{limits", "not valid"),
        ("EDGEOPT_CONVERTER_TOLERATIONS", '{"a": 1}', "JSON list"),
        ("EDGEOPT_CONVERTER_NODE_SELECTOR", '{"a": 1}', "values must be strings"),
        ("EDGEOPT_NAMESPACES", "Bad_NS", "not a valid namespace"),
        ("EDGEOPT_TRITON_URL", "triton:8000", "http://"),
        ("EDGEOPT_METRICS_PORT", "70000", "not a port"),
        ("EDGEOPT_CONVERTER_RUN_AS_USER", "0", "root"),
        ("EDGEOPT_TRITON_TIMEOUT_SECONDS", "0", "must be > 0"),
        ("EDGEOPT_PEERING_LIFETIME_SECONDS", "1", "must be >= 5"),
    ],
)
def test_mistakes_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        OperatorSettings.from_env({name: value})
    assert name in str(err.value) and fragment in str(err.value)


def test_flags_override_the_environment_and_none_keeps_it() -> None:
    s = OperatorSettings.from_env({"EDGEOPT_PRIORITY": "5", "EDGEOPT_NAMESPACES": "x"})
    t = s.with_overrides(priority=None, namespaces=("y",))
    assert (t.priority, t.namespaces) == (5, ("y",))


def test_every_field_is_documented() -> None:
    import inspect

    from edgeopt.operator import settings as mod

    source = inspect.getsource(mod.OperatorSettings)
    for name in OperatorSettings.__dataclass_fields__:
        before = source.split(f"    {name}:")[0].rstrip().splitlines()[-1]
        assert before.strip().startswith("#:"), f"{name} has no #: comment"
