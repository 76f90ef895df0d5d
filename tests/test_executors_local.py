"""The local process pool of stage 1 (``executors.RecyclingPool``, ``stage1.worker_max_tasks``):
every worker process is replaced by a fresh one after ``max_tasks`` tasks, never more than
``workers`` processes at once, errors and a dying worker fail only their own task, a worker that
cannot start fails every task instead of hanging, shutdown cancels what is queued.

Real spawned processes running builtins (``os.getpid``), so each test costs a few process starts;
byte-identical stage outputs with recycled workers: ``test_extract_faces.py`` (its reference run
replaces workers) and ``test_workers_1_and_2_give_identical_bytes``.
"""

from __future__ import annotations

import os
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import psutil
import pytest

from stage1_face_extraction.common.config import from_dict, load_section
from stage1_face_extraction.executors import RecyclingPool
from stage1_face_extraction.section import Stage1Config


def _workers() -> list[psutil.Process]:
    """This process' live pool workers (spawned children, not multiprocessing's resource tracker)."""
    out = []
    for p in psutil.Process().children():
        try:
            if "spawn_main" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def pools():
    """Pools made by a test; shut down even when it fails."""
    made: list[RecyclingPool] = []
    yield lambda *a, **kw: made.append(RecyclingPool(*a, **kw)) or made[-1]
    for pool in made:
        pool.shutdown()


def test_each_worker_is_replaced_after_max_tasks(pools) -> None:
    pool = pools(2, max_tasks=3)
    futs = [pool.submit(os.getpid) for _ in range(14)]
    most = 0
    while not all(f.done() for f in futs):
        most = max(most, len(_workers()))
        time.sleep(0.02)
    pids = [f.result() for f in futs]
    counts = {pid: pids.count(pid) for pid in set(pids)}
    assert max(counts.values()) <= 3, f"a process ran more than max_tasks=3 tasks: {counts}"
    assert len(counts) >= 5, f"14 tasks, 3 per process: at least 5 processes, got {counts}"
    assert pool.replaced >= len(counts) - 2, (pool.replaced, counts)
    assert 1 <= most <= 2, f"{most} worker processes alive at once (workers=2)"
    assert os.getpid() not in counts


def test_the_first_replacements_are_staggered(pools) -> None:
    """Slot k's first process is replaced after max_tasks * (k + 1) // workers tasks, later ones after
    max_tasks: the workers do not all reload their models at the same moment."""
    pool = pools(3, max_tasks=6)
    pool.submit(os.getpid).result()  # the dispatcher has started every slot
    assert [s.limit for s in pool._slots] == [2, 4, 6]
    pids = [f.result() for f in [pool.submit(os.getpid) for _ in range(20)]]
    assert max(pids.count(p) for p in set(pids)) <= 6
    assert pool.replaced >= 2, "21 tasks, the first processes take 2 + 4 + 6: at least 2 replacements"


def test_max_tasks_0_keeps_the_workers(pools) -> None:
    pool = pools(2, max_tasks=0)
    pids = {f.result() for f in [pool.submit(os.getpid) for _ in range(12)]}
    assert 1 <= len(pids) <= 2 and pool.replaced == 0


def test_a_failing_task_and_a_dying_worker_fail_only_their_own_task(pools) -> None:
    pool = pools(1, max_tasks=0)
    first = pool.submit(os.getpid).result()
    with pytest.raises(ValueError, match="invalid literal"):
        pool.submit(int, "x").result()
    assert pool.submit(os.getpid).result() == first, "an exception in a task does not cost the process"
    with pytest.raises(BrokenProcessPool):
        pool.submit(os._exit, 3).result()  # the process dies mid-task
    later = pool.submit(os.getpid).result(timeout=120)
    assert later != first and pool.replaced == 1, "the dead worker is replaced and the pool goes on"


def test_a_worker_that_cannot_start_fails_every_task(pools) -> None:
    pool = pools(2, max_tasks=2, initializer=int, initargs=("not a number",))
    futs = [pool.submit(os.getpid) for _ in range(5)]
    for f in futs:
        with pytest.raises(RuntimeError, match=r"no stage-1 worker process could start: BrokenProcessPool"):
            f.result(timeout=120)


def test_shutdown_cancels_the_queued_tasks_and_stops_every_process(pools) -> None:
    pool = pools(1, max_tasks=0)
    pool.submit(os.getpid).result()
    futs = [pool.submit(time.sleep, 0.3) for _ in range(5)]
    time.sleep(0.1)
    pool.shutdown()
    assert futs[0].result() is None, "the running task is waited for"
    assert all(f.cancelled() for f in futs[1:]), "the queued tasks are cancelled"
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(os.getpid)
    assert _workers() == []


@pytest.mark.parametrize("value", [-1, 1.5, True, "200"])
def test_worker_max_tasks_is_checked(value) -> None:
    with pytest.raises(ValueError, match=r"stage1\.worker_max_tasks must be an integer >= 0"):
        from_dict(Stage1Config, {"worker_max_tasks": value}, "stage1")


def test_repo_params_recycle_the_workers(repo_root: Path) -> None:
    cfg = load_section(repo_root / "params.yaml", "stage1", Stage1Config)
    assert cfg.worker_max_tasks == Stage1Config().worker_max_tasks == 200
