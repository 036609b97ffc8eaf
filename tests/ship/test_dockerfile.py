"""The Dockerfile, checked without a Docker engine.

A plain parser reads the stages and checks what a broken image would get
wrong first: a missing target, a base that is not pinned, a root user, an
entrypoint that names a console script or subcommand that does not exist,
TensorFlow leaking into the operator. tests/containers/ builds the images
with podman and runs them; this file also covers the GPU targets, which
cannot be built where NGC is out of reach.
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


TARGETS = ("operator", "converter", "converter-cpu", "triton", "triton-cpu")


def parse_dockerfile(text: str, global_args: dict[str, str] | None = None) -> dict[str, Stage]:
    """Stages by name, with line continuations joined and comments dropped.

    ``global_args`` (if given) receives the ARGs declared before the first FROM with their defaults.
    """
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
        elif keyword == "ARG" and global_args is not None:
            name, _, default = rest.strip().partition("=")
            global_args[name] = default
    return stages


def lineage(stages: dict[str, Stage], target: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stages[target]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def external_base(stages: dict[str, Stage], args: dict[str, str], target: str) -> str:
    """The image a target finally starts from, with ``${ARG}`` replaced by its default."""
    base = lineage(stages, target)[-1].base
    m = re.fullmatch(r"\$\{?(\w+)\}?", base)
    return args[m.group(1)] if m else base


def runs(stages: dict[str, Stage], target: str) -> str:
    """Every RUN of a target and of the stages it grows from."""
    return " ".join(" ".join(st.all("RUN")) for st in lineage(stages, target))


@pytest.fixture(scope="module")
def build_args() -> dict[str, str]:
    found: dict[str, str] = {}
    parse_dockerfile((ROOT / "Dockerfile").read_text(), found)
    return found


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


def test_every_target_exists(stages: dict[str, Stage]) -> None:
    assert set(TARGETS) <= set(stages)


def test_base_images_are_build_args_defaulting_to_pins(stages: dict[str, Stage], build_args: dict[str, str]) -> None:
    """A registry-less machine passes a stand-in base; everyone else gets the pinned tag."""
    assert set(build_args) >= {"PYTHON_BASE", "TENSORFLOW_BASE", "TRITON_BASE"}
    for target in TARGETS:
        base = lineage(stages, target)[-1].base
        assert re.fullmatch(r"\$\{\w+\}", base), f"{target}: base {base} should be a build ARG"
        image, _, tag = external_base(stages, build_args, target).rpartition(":")
        assert image and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{target}: {image}:{tag} unpinned"
    assert build_args["PYTHON_BASE"] == "python:3.11.11-slim-bookworm"
    assert build_args["TENSORFLOW_BASE"] == "nvcr.io/nvidia/tensorflow:24.12-tf2-py3"
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", build_args["TRITON_BASE"])


def test_python_targets_share_the_slim_python_base(stages: dict[str, Stage], build_args: dict[str, str]) -> None:
    for target in ("operator", "converter-cpu", "triton-cpu"):
        assert re.fullmatch(r"python:3\.(10|11|12)\.\d+-slim(-\w+)?", external_base(stages, build_args, target))


def test_converter_base_is_ngc_tensorflow_with_tftrt(stages: dict[str, Stage], build_args: dict[str, str]) -> None:
    base = external_base(stages, build_args, "converter")
    m = re.fullmatch(r"nvcr\.io/nvidia/tensorflow:(\d\d)\.(\d\d)-tf2-py3", base)
    assert m, base
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


@pytest.mark.parametrize("target", TARGETS)
def test_runs_as_numeric_non_root_user(stages: dict[str, Stage], target: str) -> None:
    user = stages[target].last("USER")
    assert user, f"{target}: no USER, the image would run as root"
    uid = user.split(":")[0]
    # numeric, so the kubelet can enforce the chart's runAsNonRoot
    assert uid.isdigit() and int(uid) >= 10000, f"{target}: USER {user} must be a numeric uid >= 10000"
    assert f"--uid {uid}" in runs(stages, target), f"{target}: uid {uid} is never created"


@pytest.mark.parametrize(
    ("target", "subcommand"), [("operator", "operator"), ("converter", "convert"), ("converter-cpu", "convert")]
)
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
    assert all("--no-deps" in cmd for cmd in installs), "dependencies come from the requirements layer"
    run = " ".join(stages["operator"].all("RUN"))
    assert "edgeopt-requirements.py operator >" in run, "the operator's dependencies must be its extra's pins"
    assert "tensorflow" not in run.replace("find_spec('tensorflow')", "")


def test_dependencies_install_before_the_source_is_copied(stages: dict[str, Stage]) -> None:
    """So a source change rebuilds one small layer, and TensorFlow stays in the cached one."""
    for target in ("operator", "converter-cpu", "triton-cpu", "triton"):
        keys = [(k, v) for k, v in stages[target].instructions if k in ("RUN", "COPY")]
        first_dep = next(i for i, (k, v) in enumerate(keys) if k == "RUN" and "/tmp/requirements.txt" in v)
        copy_src = next(i for i, (k, v) in enumerate(keys) if k == "COPY" and v.startswith("edgeopt "))
        assert first_dep < copy_src, f"{target}: dependencies must be installed before COPY edgeopt"
        assert "--mount=type=cache" in keys[first_dep][1], f"{target}: wheels belong in a build cache mount"
        assert "--no-index" in keys[first_dep][1] or "edgeopt-pip-install" in keys[first_dep][1]


def test_converter_cpu_takes_tensorflow_from_the_converter_extra(stages: dict[str, Stage]) -> None:
    run = " ".join(stages["converter-cpu"].all("RUN"))
    assert "edgeopt-requirements.py converter >" in run
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["converter"]
    assert any(r.startswith("tensorflow-cpu==") for r in extra)


def test_triton_images_get_tensorflow_and_onnxruntime_as_the_converter_pins_them(stages: dict[str, Stage]) -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["converter"]
    names = {re.split(r"[=<>;! ]", r, maxsplit=1)[0] for r in extra}
    assert {"tensorflow-cpu", "onnxruntime", "numpy"} <= names, "the pip set is read from the converter extra"
    gpu, cpu = " ".join(stages["triton"].all("RUN")), " ".join(stages["triton-cpu"].all("RUN"))
    for run in (gpu, cpu):
        assert "tensorflow-cpu" in run and "onnxruntime" in run and "numpy" in run
        assert "import tensorflow, onnxruntime" in run, "the build must check both import"
    assert "replace('tensorflow-cpu', 'tensorflow', 1)" in gpu, "NGC Triton gets the GPU build at the same version"
    assert "'optional-dependencies']['converter']" in gpu


def test_triton_build_fails_unless_the_stubs_python_imports_both(stages: dict[str, Stage]) -> None:
    """`triton` is the chart's default Triton: a pip set that misses TensorFlow or onnxruntime, or lands them in
    another interpreter than the stub's python3, must fail the build, not the first model load on a cluster."""
    (run,) = [r for r in stages["triton"].all("RUN") if "/tmp/requirements.txt" in r and "pip" in r]
    steps = [s.strip() for s in run.split("&&")]
    install = [i for i, s in enumerate(steps) if s.startswith("python3 -m pip install") and "requirements" in s]
    check = [i for i, s in enumerate(steps) if s.startswith('python3 -c "import tensorflow, onnxruntime')]
    assert install and check, f"the pip set is installed and imported by python3: {steps}"
    assert install[-1] < check[0], "the import check must run after the install, in the same RUN"
    assert not [s for s in steps if re.match(r"pip3? ", s)], "pip must be python3's own (python3 -m pip)"


def test_triton_cpu_uses_the_pytriton_server_the_harness_uses(stages: dict[str, Stage]) -> None:
    pin = re.search(r"^PYTRITON := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pin, "Makefile pins nvidia-pytriton"
    run = " ".join(stages["triton-cpu"].all("RUN"))
    assert pin.group(1) in run
    assert "python_backend_stubs/$py/triton_python_backend_stub" in run and "/opt/tritonserver/backends" in run
    env = " ".join(stages["triton-cpu"].all("ENV"))
    assert "LD_LIBRARY_PATH=/opt/tritonserver/lib" in env
    for target in ("triton", "triton-cpu"):
        assert exec_form(stages[target].last("ENTRYPOINT")) == ["tritonserver"]


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
