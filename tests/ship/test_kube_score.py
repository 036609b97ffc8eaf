"""A third-party check of the chart: kube-score 1.19, built from its Go module like helm.

The chart is rendered with Triton and the claims on (every template that can
render does), scored for the Kubernetes version we test against, and must
pass every check except the ones values.yaml names in ``kube-score/ignore``
comments next to the keys they are about, each with its reason. The test
allows exactly those: an exception that no longer fires is stale and fails
too, so the list cannot outgrow the chart.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.ship.chart import CHART, KUBE_VERSION, render_text

IGNORE = re.compile(r"^\s*#\s*kube-score/ignore\s+([a-z0-9-]+):\s*(\S.*)$")
TRITON_ON = (
    "--set",
    "triton.enabled=true",
    "--set",
    "persistence.modelRepository.create=true",
    "--set",
    "persistence.modelSource.create=true",
)


def allowed_exceptions(values: str) -> dict[str, str]:
    """check id -> reason, from ``# kube-score/ignore ID: reason`` comments (a reason is required)."""
    found: dict[str, str] = {}
    for line in values.splitlines():
        m = IGNORE.match(line)
        if m:
            found.setdefault(m.group(1), m.group(2))
        elif re.match(r"^\s*#\s*kube-score/ignore\b", line):
            raise AssertionError(f"malformed exception (want `# kube-score/ignore CHECK-ID: reason`): {line.strip()}")
    return found


@pytest.fixture(scope="module")
def kube_score() -> str:
    from edgeopt_dev.binaries import ensure_binaries

    return str(ensure_binaries(["kube-score"])["kube-score"])


@pytest.fixture(scope="module")
def findings(kube_score: str, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, str, list[str]]]:
    """(object, check id, grade, comments) of every check below OK, with nothing ignored."""
    manifest = tmp_path_factory.mktemp("kube-score") / "chart.yaml"
    manifest.write_text(render_text(*TRITON_ON))
    proc = subprocess.run(
        [
            kube_score,
            "score",
            str(manifest),
            "--kubernetes-version",
            "v" + ".".join(KUBE_VERSION.split(".")[:2]),
            "--output-format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), f"kube-score failed to run: {proc.stderr}"
    out: list[tuple[str, str, str, list[str]]] = []
    for obj in json.loads(proc.stdout):
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] >= 10:  # 10 = OK; 7 = ALMOST_OK; 5 = WARNING; 1 = CRITICAL
                continue
            comments = [c["summary"] for c in check.get("comments") or []]
            out.append((obj["object_name"], check["check"]["id"], str(check["grade"]), comments))
    return out


def test_kube_score_is_the_pinned_release(kube_score: str) -> None:
    out = subprocess.run([kube_score, "version"], capture_output=True, text=True, check=True).stdout
    assert "kube-score version: 1.19.0" in out


def test_exceptions_are_parsed_only_with_a_reason() -> None:
    assert allowed_exceptions("  # kube-score/ignore pod-probes: because\n") == {"pod-probes": "because"}
    with pytest.raises(AssertionError, match="malformed"):
        allowed_exceptions("# kube-score/ignore pod-probes\n")


def test_chart_passes_kube_score_except_the_justified_exceptions(findings: list[Any]) -> None:
    allowed = allowed_exceptions((CHART / "values.yaml").read_text())
    unexpected = [f for f in findings if f[1] not in allowed]
    assert not unexpected, "kube-score findings without a justified exception in values.yaml:\n" + "\n".join(
        f"  {obj}: {check} (grade {grade}): {'; '.join(comments)}" for obj, check, grade, comments in unexpected
    )
    stale = sorted(set(allowed) - {f[1] for f in findings})
    assert not stale, f"values.yaml excuses checks that no longer fire; remove them: {stale}"


def test_substantive_findings_are_fixed_not_excused() -> None:
    """What issue 14 listed as substantive may never become an exception."""
    allowed = allowed_exceptions((CHART / "values.yaml").read_text())
    for check in (
        "container-resources",
        "pod-probes",
        "container-security-context-user-group-id",
        "container-ephemeral-storage-request-and-limit",
        "container-security-context-readonlyrootfilesystem",
        "container-security-context-privileged",
    ):
        assert check not in allowed, f"{check} must be fixed in the chart, not excused"
    assert Path(CHART / "values.yaml").is_file()
