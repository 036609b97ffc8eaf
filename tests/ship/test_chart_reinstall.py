"""Installing the chart again over the CRD ``helm uninstall`` keeps, as docs/install.md says to.

``helm uninstall`` keeps the OptimizedModel CRD (``crds.keep``), still
annotated as the old release's. A new release under another name then fails
Helm's ownership check; the install page quotes that error and names three
ways out. Each test here starts from a fresh kept CRD, checks the error
against the page's quote, applies one way out as the page writes it (its
``--set``, its commands) and installs. The page is read, not copied: if it
drifts from what Helm and the API server do, a test fails.

API server only (``helm install`` without ``--wait``), and an API server of
its own: the CRD is deleted before each test, which would take every
OptimizedModel of a shared one with it.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.k8s import Kubectl, make_kubectl, own_api_server
from tests.ship import chart

pytestmark = pytest.mark.apiserver

INSTALL_PAGE = chart.ROOT / "docs" / "install.md"
CRD = "optimizedmodels.edgeopt.io"


def page_section() -> str:
    """The install page's section on uninstalling and installing again."""
    text = INSTALL_PAGE.read_text()
    match = re.search(r"^## [^\n]*installing again over the kept CRD\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"{INSTALL_PAGE} has no section on installing again over the kept CRD"
    return match.group(1)


def fenced(section: str, lang: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"^\s*```{lang}\n(.*?)^\s*```", section, re.S | re.M)]


def documented_error(old: str, new: str) -> list[str]:
    """The quoted error's fragments (between its ``...``), with the page's OLD and NEW filled in."""
    (quote,) = fenced(page_section(), "")
    text = " ".join(quote.split()).replace('"OLD"', f'"{old}"').replace('"NEW"', f'"{new}"')
    return [part.strip() for part in text.split("...") if part.strip()]


def documented_commands(new: str, namespace: str) -> list[list[str]]:
    """The page's commands that hand the CRD to release NEW (NEW_NAMESPACE), as argv lists."""
    (block,) = fenced(page_section(), "sh")
    names = {"NEW": new, "NEW_NAMESPACE": namespace}

    def fill(word: str) -> str:
        key, eq, value = word.partition("=")
        return f"{key}={names.get(value, value)}" if eq else word

    lines = block.replace("\\\n", " ").splitlines()
    return [[fill(word) for word in shlex.split(line)] for line in lines if line.strip()]


def documented_set(option: str) -> str:
    """``crds.enabled=false``, as the page writes it (``--set crds.enabled=false``)."""
    match = re.search(rf"--set ({re.escape(option)}=\S+?)`", page_section())
    assert match, f"{INSTALL_PAGE} does not say `--set {option}=...`"
    return match.group(1)


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl: Kubectl

    def helm(self, *args: str, check: bool = True) -> Any:
        return chart.run_helm(self.kubeconfig, *args, check=check)

    def install(self, release: str, *sets: str, check: bool = True) -> Any:
        flags = [a for s in sets for a in ("--set", s)]
        return self.helm(
            "install",
            release,
            str(chart.CHART),
            "-n",
            release,
            "--create-namespace",
            "--set",
            f"operator.peering.name={release}",
            *flags,
            check=check,
        )

    def uninstall(self, release: str) -> None:
        self.helm("uninstall", release, "-n", release)

    def crd_meta(self) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "crd", CRD, "-o", "json").stdout)["metadata"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, kubectl_path: Path) -> Iterator[Cluster]:
    with own_api_server(tmp_path_factory.mktemp("reinstall")) as cp:
        yield Cluster(cp.kubeconfig, make_kubectl(kubectl_path, cp.kubeconfig))


@pytest.fixture
def kept(cluster: Cluster) -> Iterator[str]:
    """A release installed and uninstalled: the CRD is kept, still annotated as that release's (its name)."""
    cluster.kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait", "--timeout=60s")
    old = f"first-{uuid.uuid4().hex[:6]}"
    cluster.install(old)
    cluster.uninstall(old)
    meta = cluster.crd_meta()
    assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
    assert meta["annotations"]["meta.helm.sh/release-name"] == old
    yield old


def refused_under_another_name(cluster: Cluster, old: str) -> str:
    """``helm install`` of a release named otherwise fails with the page's error; returns that name."""
    new = f"second-{uuid.uuid4().hex[:6]}"
    proc = cluster.install(new, check=False)
    assert proc.returncode != 0, f"helm install {new} over {old}'s kept CRD succeeded"
    said = " ".join(proc.stderr.split())
    for fragment in documented_error(old, new):
        assert fragment in said, f"the page quotes {fragment!r}; helm said:\n{proc.stderr}"
    return new


def test_same_release_name_and_namespace_adopts_the_kept_crd(cluster: Cluster, kept: str) -> None:
    refused_under_another_name(cluster, kept)
    cluster.install(kept)
    assert cluster.crd_meta()["annotations"]["meta.helm.sh/release-name"] == kept
    cluster.uninstall(kept)


def test_crds_enabled_false_leaves_the_kept_crd_alone(cluster: Cluster, kept: str) -> None:
    new = refused_under_another_name(cluster, kept)
    cluster.install(new, documented_set("crds.enabled"))
    status = json.loads(cluster.helm("status", new, "-n", new, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert cluster.crd_meta()["annotations"]["meta.helm.sh/release-name"] == kept  # not the new release's
    cluster.uninstall(new)
    cluster.kubectl("get", "crd", CRD)


def test_the_documented_annotate_and_label_hand_the_crd_to_the_new_release(cluster: Cluster, kept: str) -> None:
    new = refused_under_another_name(cluster, kept)
    commands = documented_commands(new, new)
    assert [c[:2] for c in commands] == [["kubectl", "annotate"], ["kubectl", "label"]], commands
    for command in commands:
        cluster.kubectl(*command[1:])
    cluster.install(new)
    meta = cluster.crd_meta()
    assert meta["annotations"]["meta.helm.sh/release-name"] == new
    assert meta["annotations"]["meta.helm.sh/release-namespace"] == new
    assert meta["labels"]["app.kubernetes.io/instance"] == new  # Helm owns and upgrades it now
    cluster.uninstall(new)
