"""Hostile models (issue 10): each is refused before anything runs, names its op, and changes nothing.

Every model here is built in the test the way an attacker would: an output
that depends on a ``WriteFile`` aimed outside the model, a ``ReadFile`` of a
host file, a ``SaveV2`` outside any saver, a ``PyFunc``, a Keras ``Lambda``,
a SavedModel whose function library hides a ``WriteFile``.  After each
refusal: the target file does not exist, the host file was not read into
anything, and the repository is byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeopt.converter.pipeline import convert_model
from edgeopt.errors import InputError
from tests.tf.conftest import make_model, manifest_dict, write_manifest

pytestmark = pytest.mark.tf

REPO_ROOT = Path(__file__).resolve().parents[2]


def tree_digest(root: Path) -> str:
    """Names, modes and contents of everything under ``root``: equal digests mean byte-identical trees."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        h.update(oct(p.lstat().st_mode).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A repository that already serves a model: it must come out untouched."""
    r = tmp_path / "repo"
    (r / "served" / "1").mkdir(parents=True)
    (r / "served" / "config.pbtxt").write_text('name: "served"\n')
    (r / "served" / "1" / "model.py").write_text("# served\n")
    return r


def _frozen(tmp_path: Path, build: Callable[[Any], Any], name: str = "hostile.pb") -> Path:
    """Write a frozen GraphDef with input ``x`` [-1] and output ``y`` built by ``build(x)``."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        tf.identity(build(x), name="y")
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    tf.io.write_graph(g.as_graph_def(), str(d), name, as_text=False)
    return d


def _frozen_source(d: Path, graph: str = "hostile.pb") -> dict[str, Any]:
    return {
        "uri": f"file://{d}",
        "format": "FrozenGraph",
        "graph": graph,
        "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1]}],
        "outputs": ["y"],
    }


def _refused(model: Any, tmp_path: Path, repo: Path, op: str) -> str:
    before = tree_digest(repo)
    work = tmp_path / "work"
    with pytest.raises(InputError) as info:
        convert_model(model, work)
    msg = str(info.value)
    assert f"refused op {op}" in msg, msg
    assert "EDGEOPT_CONVERTER_ALLOWED_OPS" in msg, "the refusal names the admin's setting"
    assert "\n" not in msg
    assert not any(work.iterdir()), "no partial output"
    assert tree_digest(repo) == before, "the repository is byte-identical"
    return msg


def test_write_file_aimed_outside_is_refused_and_never_runs(tmp_path: Path, repo: Path) -> None:
    import tensorflow as tf

    target = tmp_path / "outside" / "pwned"
    target.parent.mkdir()

    def build(x: Any) -> Any:
        w = tf.io.write_file(str(target), tf.constant("owned"), name="drop")
        with tf.control_dependencies([w]):
            return x + 1.0

    d = _frozen(tmp_path, build)
    msg = _refused(make_model("hostile", _frozen_source(d), repo), tmp_path, repo, "WriteFile")
    assert "node 'drop'" in msg and "in the top-level graph" in msg
    assert not target.exists(), "the WriteFile op ran"


def test_read_file_of_a_host_file_is_refused(tmp_path: Path, repo: Path) -> None:
    import tensorflow as tf

    secret = tmp_path / "host-secret"
    secret.write_text("s3cr3t")

    def build(x: Any) -> Any:
        n = tf.strings.length(tf.io.read_file(str(secret), name="steal"))
        return x + tf.cast(n, tf.float32)

    d = _frozen(tmp_path, build)
    msg = _refused(make_model("hostile", _frozen_source(d), repo), tmp_path, repo, "ReadFile")
    assert "node 'steal'" in msg and "reads or writes files" in msg


def test_save_op_outside_a_saver_is_refused(tmp_path: Path, repo: Path) -> None:
    import tensorflow as tf

    def build(x: Any) -> Any:
        save = tf.raw_ops.SaveV2(
            prefix=str(tmp_path / "outside-ckpt"),
            tensor_names=["x"],
            shape_and_slices=[""],
            tensors=[x],
            name="exfil",
        )
        with tf.control_dependencies([save]):
            return x * 2.0

    d = _frozen(tmp_path, build)
    msg = _refused(make_model("hostile", _frozen_source(d), repo), tmp_path, repo, "SaveV2")
    assert "node 'exfil'" in msg
    assert not list(tmp_path.glob("outside-ckpt*"))


def test_py_func_is_refused(tmp_path: Path, repo: Path) -> None:
    import numpy as np
    import tensorflow as tf

    def build(x: Any) -> Any:
        return tf.compat.v1.py_func(lambda v: (v * 3).astype(np.float32), [x], tf.float32, name="python")

    d = _frozen(tmp_path, build)
    msg = _refused(make_model("hostile", _frozen_source(d), repo), tmp_path, repo, "PyFunc")
    assert "runs Python code" in msg


def test_print_to_a_file_is_refused_but_print_to_the_log_is_not(tmp_path: Path, repo: Path) -> None:
    import tensorflow as tf

    logfile = tmp_path / "outside.log"

    def to_file(x: Any) -> Any:
        p = tf.print(x, output_stream=f"file://{logfile}", name="leak")
        with tf.control_dependencies([p]):
            return x + 1.0

    d = _frozen(tmp_path, to_file)
    _refused(make_model("hostile", _frozen_source(d), repo), tmp_path, repo, "PrintV2")
    assert not logfile.exists()

    def to_log(x: Any) -> Any:
        p = tf.print(x, output_stream=sys.stderr, name="debug_print")
        with tf.control_dependencies([p]):
            return x + 1.0

    ok = _frozen(tmp_path, to_log, "ok.pb")
    artifact = convert_model(make_model("printing", _frozen_source(ok, "ok.pb"), repo), tmp_path / "work-ok")
    assert artifact.savedmodel_dir.exists()


def test_keras_lambda_is_refused_before_keras_loads_it(tmp_path: Path, repo: Path) -> None:
    import keras

    inp = keras.Input((4,), name="features")
    out = keras.layers.Lambda(lambda t: t * 2.0, name="double")(keras.layers.Dense(2)(inp))
    path = tmp_path / "lambda" / "model.keras"
    path.parent.mkdir()
    keras.Model(inp, out).save(path)
    before = tree_digest(repo)
    source = {"uri": f"file://{path}", "format": "Keras"}
    with pytest.raises(InputError, match="holds a Lambda layer 'double'") as info:
        convert_model(make_model("lambda", source, repo), tmp_path / "work")
    assert "SavedModel" in str(info.value), "the message says what to do instead"
    assert tree_digest(repo) == before


def test_saved_model_hiding_write_file_in_its_function_library(tmp_path: Path, repo: Path) -> None:
    import tensorflow as tf

    target = tmp_path / "outside-sm"

    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def helper(self, x: Any) -> Any:
            tf.io.write_file(str(target), tf.strings.as_string(x[0]))
            return x + 1.0

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: Any) -> Any:
            return {"y": self.helper(x)}

    module = Hostile()
    sm = tmp_path / "sm"
    tf.saved_model.save(module, str(sm), signatures={"serving_default": module.serve})
    assert not target.exists()
    msg = _refused(
        make_model("hostile", {"uri": f"file://{sm}", "format": "SavedModel"}, repo), tmp_path, repo, "WriteFile"
    )
    assert "in function '__inference_helper" in msg, msg
    assert not target.exists()


def test_cli_refusal_exit_code_and_summary(tmp_path: Path, repo: Path) -> None:
    import tensorflow as tf

    target = tmp_path / "cli-pwned"

    def build(x: Any) -> Any:
        w = tf.io.write_file(str(target), tf.constant("owned"), name="drop")
        with tf.control_dependencies([w]):
            return x + 1.0

    d = _frozen(tmp_path, build)
    before = tree_digest(repo)
    manifest = write_manifest(tmp_path / "m.yaml", manifest_dict("hostile", _frozen_source(d), repo))
    term = tmp_path / "term"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", "convert", "-f", str(manifest), "--termination-log", str(term)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", EDGEOPT_WORKDIR=str(tmp_path / "work")),
    )
    assert proc.returncode == 3, proc.stderr
    assert "refused op WriteFile" in proc.stderr and "InvalidInput" in term.read_text()
    assert not target.exists() and tree_digest(repo) == before


def test_admin_allow_list_lets_a_refused_op_through(tmp_path: Path, repo: Path, monkeypatch: Any) -> None:
    """The one escape hatch is the operator's setting, read from the Job's environment, never the spec."""
    import tensorflow as tf

    def build(x: Any) -> Any:
        return x + tf.cast(tf.strings.length(tf.io.read_file(str(tmp_path / "model" / "hostile.pb"))), tf.float32)

    d = _frozen(tmp_path, build)
    model = make_model("trusted", _frozen_source(d), repo)
    monkeypatch.setenv("EDGEOPT_CONVERTER_ALLOWED_OPS", "ReadFile")
    artifact = convert_model(model, tmp_path / "work")
    assert artifact.savedmodel_dir.exists()


def test_folding_never_evaluates_a_policy_op_even_when_an_admin_allowed_it(tmp_path: Path, monkeypatch: Any) -> None:
    """The admin's allow-list lets a ReadFile into the served model; it never runs at build time."""
    import tensorflow as tf

    from edgeopt.converter.transforms.fold_constants import fold_constants

    secret = tmp_path / "read-at-serving-time"
    secret.write_text("abc")
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        n = tf.strings.length(tf.io.read_file(str(secret), name="read"))
        tf.identity(x + tf.cast(n, tf.float32), name="y")
    monkeypatch.setenv("EDGEOPT_CONVERTER_ALLOWED_OPS", "ReadFile")
    folded = fold_constants(g.as_graph_def(), {"x", "y"}).graph_def
    assert "ReadFile" in {node.op for node in folded.node}, "the ReadFile was evaluated and baked in"


def test_the_fold_cap_is_the_admins_setting(monkeypatch: Any) -> None:
    import tensorflow as tf

    from edgeopt.converter.transforms.fold_constants import fold_constants

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 256], name="x")
        big = tf.fill([256, 256], 2.0, name="big")  # 256 KiB when folded
        tf.matmul(x, big, name="y")
    gd = g.as_graph_def()
    changed = fold_constants(gd, {"x", "y"}).changed
    assert changed >= 1
    monkeypatch.setenv("EDGEOPT_LIMIT_FOLD_BYTES", str(64 * 1024))
    kept, changed = fold_constants(gd, {"x", "y"})[:2]
    assert changed == 0 and "Fill" in {n.op for n in kept.node}
