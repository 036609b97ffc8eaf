"""The dev Node's advertised size: this machine times the overcommit factor, validated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeopt_dev import node


@pytest.mark.parametrize(("raw", "factor"), [("", node.DEFAULT_OVERCOMMIT), ("1", 1), ("3", 3)])
def test_capacity_is_the_machine_times_the_factor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str, factor: int
) -> None:
    monkeypatch.setenv(node.OVERCOMMIT_ENV, raw)
    cap = node.node_capacity(tmp_path)
    assert cap["cpu"] == str((os.cpu_count() or 1) * factor)
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    assert cap["memory"] == f"{mem_kib * factor}Ki"
    assert "nvidia.com/gpu" not in cap


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_a_bad_factor_names_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(node.OVERCOMMIT_ENV, raw)
    with pytest.raises(ValueError, match=node.OVERCOMMIT_ENV):
        node.overcommit()
