"""The image tooling's pure parts: containers.conf, the apt mirror, the base's cache key, the build line."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from edgeopt_dev import containers, images


def test_containers_conf_sets_runc_and_ulimits_within_the_hard_limits() -> None:
    text = containers.containers_conf_text()
    assert 'runtime = "runc"' in text
    for name, (which, wanted) in containers.WANTED_ULIMITS.items():
        hard = resource.getrlimit(which)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        assert f'"{name}={value}:{value}"' in text, "a ulimit above the hard limit fails without CAP_SYS_RESOURCE"


def test_containers_conf_is_written_once_under_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPT_CACHE", str(tmp_path))
    path = containers.containers_conf()
    assert path == tmp_path / "containers" / "containers.conf"
    mtime = path.stat().st_mtime_ns
    assert containers.containers_conf() == path and path.stat().st_mtime_ns == mtime  # idempotent
    assert containers.podman_env({})["CONTAINERS_CONF"] == str(path)


def test_apt_mirror_from_deb822_skips_security(tmp_path: Path) -> None:
    src = tmp_path / "debian.sources"
    src.write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert images.apt_mirror([src]) == "http://mirror.example/debian"


def test_apt_mirror_from_a_one_line_sources_list(tmp_path: Path) -> None:
    src = tmp_path / "sources.list"
    src.write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
    )
    assert images.apt_mirror([src]) == "http://one.example/debian"
    assert images.apt_mirror([tmp_path / "missing"]) == images.DEFAULT_MIRROR


def test_base_cache_key_changes_with_every_input() -> None:
    recipe = images.BaseRecipe(suite="bookworm", mirror="http://m/debian", packages=("python3", "python3-venv"))
    same = images.BaseRecipe(suite="bookworm", mirror="http://m/debian", packages=("python3-venv", "python3"))
    assert recipe.digest() == same.digest()  # package order does not matter
    for other in (
        images.BaseRecipe(suite="trixie", mirror="http://m/debian", packages=recipe.packages),
        images.BaseRecipe(suite="bookworm", mirror="http://n/debian", packages=recipe.packages),
        images.BaseRecipe(suite="bookworm", mirror="http://m/debian", packages=(*recipe.packages, "curl")),
        images.BaseRecipe(suite="bookworm", mirror="http://m/debian", packages=recipe.packages, variant="buildd"),
    ):
        assert other.digest() != recipe.digest()
    cmd = recipe.debootstrap_command(Path("/r"))
    assert cmd == [
        "debootstrap",
        "--variant=minbase",
        "--include=python3,python3-venv",
        "bookworm",
        "/r",
        "http://m/debian",
    ]


def test_build_command_passes_the_stand_in_base_and_the_host_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    cmd = images.build_command("converter-cpu", images.BASE_IMAGE, context=tmp_path, ca_bundle=ca)
    assert cmd[:2] == ["podman", "build"] and cmd[-1] == str(tmp_path)
    assert cmd[cmd.index("--target") + 1] == "converter-cpu"
    assert f"PYTHON_BASE={images.BASE_IMAGE}" in cmd
    assert f"{ca}:{images.BUILD_CA_PATH}:ro" in cmd and f"PIP_CERT={images.BUILD_CA_PATH}" in cmd
    assert "--volume" not in images.build_command("operator", images.BASE_IMAGE, context=tmp_path)


def test_host_ca_bundle_prefers_what_pip_is_told(tmp_path: Path) -> None:
    ca = tmp_path / "proxy.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert images.host_ca_bundle({"PIP_CERT": str(ca)}) == ca
    assert images.host_ca_bundle({"PIP_CERT": str(tmp_path / "gone"), "SSL_CERT_FILE": str(ca)}) == ca
