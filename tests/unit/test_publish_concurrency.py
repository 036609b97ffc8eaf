"""Concurrent publishers of one model never share a version (threads and separate processes)."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from edgeopt.triton.publish import existing_versions, publish_version
from tests.fixtures.triton import file_artifact, optimized_model

N = 6


def publish_in_process(args: tuple[str, str, int]) -> int:
    """Runs in a fresh interpreter (spawn): a real second publisher, not a thread."""
    repo, src, i = args
    art = file_artifact(Path(src), payload=f"publisher {i}".encode())
    return publish_version(art, optimized_model("shared", Path(repo), versionsToKeep=50)).version


def check_distinct(repo: Path, versions: list[int]) -> None:
    assert sorted(versions) == list(range(1, N + 1)), versions
    assert existing_versions(repo / "shared") == list(range(1, N + 1))
    payloads = {(repo / "shared" / str(v) / "model.savedmodel" / "saved_model.pb").read_bytes() for v in versions}
    assert len(payloads) == N  # each version holds exactly one publisher's files
    assert not [p for p in (repo / "shared").iterdir() if p.name.startswith(".staging")]


def test_threads_get_distinct_versions(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    barrier = threading.Barrier(N)

    def one(i: int) -> int:
        art = file_artifact(tmp_path / f"src{i}", payload=f"publisher {i}".encode())
        barrier.wait()
        return publish_version(art, optimized_model("shared", repo, versionsToKeep=50)).version

    with ThreadPoolExecutor(N) as pool:
        versions = list(pool.map(one, range(N)))
    check_distinct(repo, versions)


def test_processes_get_distinct_versions(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    ctx = multiprocessing.get_context("spawn")
    jobs = [(str(repo), str(tmp_path / f"src{i}"), i) for i in range(N)]
    with ProcessPoolExecutor(3, mp_context=ctx) as pool:
        versions = list(pool.map(publish_in_process, jobs))
    check_distinct(repo, versions)
