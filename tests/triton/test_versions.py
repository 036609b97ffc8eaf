"""New versions reach Triton after a load beside the served ones; versionsToKeep prunes the disk, never them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgeopt.triton.client import TritonClient
from edgeopt.triton.publish import existing_versions, publish_version
from tests.fixtures.triton import optimized_model
from tests.triton.tf_models import artifact_from_savedmodel, write_add_savedmodel

pytestmark = [pytest.mark.triton, pytest.mark.tf]

X = np.array([[1.0], [2.0]], dtype=np.float32)


def test_second_publish_is_version_2_and_served_after_load(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    name = "versions"
    model = optimized_model(name, triton_repository, versionsToKeep=2)
    v1 = publish_version(artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a5", 5.0)), model)
    triton_client.load(name)
    np.testing.assert_allclose(triton_client.infer(name, {"x": X})["y"], X + 5.0)

    v2 = publish_version(artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a7", 7.0)), model)
    assert (v1.version, v2.version) == (1, 2)
    # Explicit mode: nothing changes in Triton until the operator asks for a load.
    assert triton_client.ready_versions(name) == [1]
    triton_client.load(name)
    # Without the operator's hint the previous newest counts as served: same config, so it stays
    # loaded beside the new one (version_policy specific [1, 2]) until the switch narrows it.
    assert triton_client.ready_versions(name) == [1, 2]
    np.testing.assert_allclose(triton_client.infer(name, {"x": X})["y"], X + 7.0)  # newest by default
    np.testing.assert_allclose(triton_client.infer(name, {"x": X}, version=1)["y"], X + 5.0)

    # A third publish with versionsToKeep 2 removes version 1 from disk but not the ones being served.
    served = triton_client.ready_versions(name)
    v3 = publish_version(
        artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a9", 9.0)), model, serving_versions=served
    )
    assert v3.version == 3 and v3.pruned == []
    assert existing_versions(triton_repository / name) == [1, 2, 3]
    triton_client.load(name)
    assert triton_client.ready_versions(name) == [1, 2, 3]
    # The operator's switch narrows Triton to the new version (an API-side config override).
    narrowed = {**triton_client.model_config(name), "version_policy": {"specific": {"versions": [3]}}}
    triton_client.load(name, config=narrowed)
    assert triton_client.ready_versions(name) == [3]
    # Next publish, with only version 3 served: the old ones go.
    v4 = publish_version(
        artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a11", 11.0)),
        model,
        serving_versions=[3],
    )
    assert v4.pruned == [1, 2]
    assert existing_versions(triton_repository / name) == [3, 4]
    triton_client.load(name)
    assert triton_client.ready_versions(name) == [3, 4]
    np.testing.assert_allclose(triton_client.infer(name, {"x": X})["y"], X + 11.0)
    assert not triton_client.is_model_ready(name, 1)
    triton_client.unload(name)


def test_triton_loading_during_a_publish_never_sees_a_partial_version(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    """Loads race a publish slow enough to be caught half-way (64 MiB of assets, fsynced).

    Written in place, the new version dir would exist without model.py or a
    complete SavedModel for a while and a load in that window would fail; the
    staging dir + rename means every load sees either the old set or the new one.
    """
    import threading

    name = "atomic"
    model = optimized_model(name, triton_repository, versionsToKeep=2)
    publish_version(artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a5", 5.0)), model)
    triton_client.load(name)
    big = write_add_savedmodel(tmp_path / "a7", 7.0)
    (big / "assets").mkdir(exist_ok=True)
    for i in range(8):
        (big / "assets" / f"blob{i}.bin").write_bytes(os.urandom(8 << 20))
    art = artifact_from_savedmodel(big)

    done = threading.Event()
    failures: list[BaseException] = []

    def publish() -> None:
        try:
            publish_version(art, model)
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    model_dir = triton_repository / name

    def staging() -> bool:
        return any(p.name.startswith(".staging-") for p in model_dir.iterdir())

    loads_while_staging = 0
    thread = threading.Thread(target=publish)
    thread.start()
    while not done.is_set() and not staging():
        pass  # spin: the window is a fraction of a second
    while not done.is_set():
        in_window = staging()
        triton_client.load(name)  # raises ServingError if Triton saw a broken version
        loads_while_staging += in_window
    thread.join()
    assert not failures, failures
    assert loads_while_staging >= 1, "the publish was too quick to race; the test proved nothing"
    triton_client.load(name)
    assert triton_client.ready_versions(name) == [1, 2]  # version 1 counted as served: same config
    np.testing.assert_allclose(triton_client.infer(name, {"x": X})["y"], X + 7.0)
    print(f"\n[measure] atomic: {loads_while_staging} loads while the 64 MiB version was staging, none failed")
    triton_client.unload(name)
