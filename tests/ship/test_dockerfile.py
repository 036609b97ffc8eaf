"""The Dockerfile, checked without a Docker engine (none runs on our machines).

A plain parser reads the stages and checks what a broken image would get
wrong first: a missing target, a root user, an entrypoint that names a console
script or subcommand that does not exist, TensorFlow leaking into the operator.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib

from edgeopt.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [v for k, v in self.instructions if k == keyword]
        return values[-1] if values else None

    def all(self, keyword: str) -> list[str]:
        return [v for k, v in self.instructions if k == keyword]


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Stages by name, with line continuations joined and comments dropped."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert m, f"cannot parse FROM line: {line}"
            current = Stage(name=m.group(2) or str(len(stages)), base=m.group(1))
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, rest.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def exec_form(value: str | None) -> list[str]:
    assert value, "missing ENTRYPOINT"
    parsed = json.loads(value)  # exec form only: signals reach edgeopt, not a shell
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed)
    return parsed


def test_both_targets_exist(stages: dict[str, Stage]) -> None:
    assert {"operator", "converter"} <= set(stages)


@pytest.mark.parametrize("target", ["operator", "converter"])
def test_base_images_are_pinned(stages: dict[str, Stage], target: str) -> None:
    base = stages[target].base
    assert "$" not in base, "pin the base image in the FROM line itself"
    image, _, tag = base.rpartition(":")
    assert image and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{base} is not pinned to a version"


def test_operator_base_is_slim_python(stages: dict[str, Stage]) -> None:
    assert re.fullmatch(r"python:3\.(10|11|12)\.\d+-slim(-\w+)?", stages["operator"].base)


def test_converter_base_is_ngc_tensorflow_with_tftrt(stages: dict[str, Stage]) -> None:
    m = re.fullmatch(r"nvcr\.io/nvidia/tensorflow:(\d\d)\.(\d\d)-tf2-py3", stages["converter"].base)
    assert m, stages["converter"].base
    # TF 2.17 (the last with TF-TRT) is what NGC shipped from 24.xx to 25.02.
    assert (24, 1) <= (int(m.group(1)), int(m.group(2))) <= (25, 2)
    run = " ".join(stages["converter"].all("RUN"))
    assert "is_tensorrt_build" in run and "2.17" in run, "the build must refuse a base without TF-TRT"


def test_converter_has_tensorrt_python_bindings_and_the_onnx_stack(stages: dict[str, Stage]) -> None:
    """The ONNX path builds model.plan with TensorRT's Python API: the build refuses a base without it."""
    run = " ".join(stages["converter"].all("RUN"))
    assert "import tensorrt" in run, "the build must check TensorRT's Python bindings"
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pin in ("tf2onnx==1.17.0", "onnx==1.17.0", "onnxruntime=="):
        assert pin in run, f"the converter image must install {pin}"
        assert pin in pyproject, f"pyproject's converter extra must pin {pin}"


@pytest.mark.parametrize("target", ["operator", "converter"])
def test_runs_as_numeric_non_root_user(stages: dict[str, Stage], target: str) -> None:
    user = stages[target].last("USER")
    assert user, f"{target}: no USER, the image would run as root"
    uid = user.split(":")[0]
    # numeric, so the kubelet can enforce the chart's runAsNonRoot
    assert uid.isdigit() and int(uid) != 0, f"{target}: USER {user} must be a numeric non-root uid"
    run = " ".join(stages[target].all("RUN"))
    assert f"--uid {uid}" in run, f"{target}: uid {uid} is never created"


@pytest.mark.parametrize(("target", "subcommand"), [("operator", "operator"), ("converter", "convert")])
def test_entrypoint_is_a_console_script_subcommand(
    stages: dict[str, Stage], scripts: dict[str, str], target: str, subcommand: str
) -> None:
    entry = exec_form(stages[target].last("ENTRYPOINT"))
    assert entry == ["edgeopt", subcommand]
    assert entry[0] in scripts, f"{entry[0]} is not in [project.scripts]"
    assert scripts[entry[0]] == "edgeopt.cli:main"
    assert entry[1] in COMMANDS, f"{entry[1]} is not an edgeopt subcommand"


def pip_installs(stage: Stage) -> list[list[str]]:
    installs = []
    for run in stage.all("RUN"):
        words: list[str] = []
        for token in [*shlex.split(run), "&&"]:  # quotes respected, then split into commands
            if token not in ("&&", "||", ";"):
                words.append(token)
                continue
            if words[:2] == ["pip", "install"] or words[1:4] == ["-m", "pip", "install"]:
                installs.append(words)
            words = []
    return installs


def test_operator_installs_only_the_operator_extra(stages: dict[str, Stage]) -> None:
    installs = pip_installs(stages["operator"])
    assert installs, "operator stage installs nothing"
    targets = [w for cmd in installs for w in cmd if w.startswith(".")]
    assert targets == [".[operator]"], targets
    assert not any("tensorflow" in w for cmd in installs for w in cmd)


def test_converter_keeps_the_base_tensorflow(stages: dict[str, Stage]) -> None:
    installs = pip_installs(stages["converter"])
    package = [cmd for cmd in installs if "." in cmd or any(w.startswith(".[") for w in cmd)]
    assert package, "converter stage never installs edgeopt"
    for cmd in package:
        assert "--no-deps" in cmd, "installing edgeopt with deps would replace NGC's TF-TRT build with tensorflow-cpu"
    assert not any("tensorflow" in w for cmd in installs for w in cmd)


def test_dockerignore_keeps_the_build_context_minimal() -> None:
    lines = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "start from ignore-everything so new files never leak in"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    # README.md is the package's readme: pip install fails without it
    assert {"pyproject.toml", "README.md", "edgeopt"} <= allowed
    assert ".venv" not in allowed
