"""The local process pool of stage 1: :class:`RecyclingPool` (spawned worker processes, each replaced
after ``max_tasks`` tasks) and the backend on it, :class:`LocalPool` (``runtime.stage1.executor: local``)."""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from stage1_face_extraction.executors.steps import (
    Backend,
    ClipJob,
    init_worker,
    run_analyse,
    run_finish,
)
from stage1_face_extraction.pipeline import ClipAnalysis
from stage1_face_extraction.section import Stage1Config

log = logging.getLogger(__name__)


class WorkersFailed(RuntimeError):
    """No worker process could start (their initializer failed): every clip would fail, so the run
    stops instead of recording each clip as an error."""


def _ready() -> int:
    """A new worker's first task: done once its initializer (model loading) has run."""
    return os.getpid()


@dataclass
class _Slot:
    """One worker process of a :class:`RecyclingPool` (a single-process executor)."""

    pool: ProcessPoolExecutor | None = None  # None: to start
    busy: bool = False  # running a task (or its warm-up)
    tasks: int = 0  # tasks given to the current process
    limit: int = 0  # tasks after which the current process is replaced (0: never)
    broken: bool = False  # the process died: restart it


class RecyclingPool:
    """``workers`` spawned processes that each get replaced by a fresh one after ``max_tasks`` tasks
    (0: never), so a long run's memory cannot creep up.

    A worker's RSS grows over hundreds of clips although nothing leaks (glibc keeps freed pages in
    fragmented arenas, ``steps._after_step``); a new process starts again from the loaded models.
    ``concurrent.futures``' own ``max_tasks_per_child`` deadlocks on Python 3.11-3.13 once a worker
    retires with tasks queued (CPython gh-115634), hence one single-process executor per slot and
    the queue in this process: a task goes to the first idle slot (the load is balanced as in one
    shared pool). A slot whose process has had ``max_tasks`` tasks is shut down (its process exits
    and its memory goes back to the OS) and a new process is started at once; it runs
    ``initializer`` (loads the models) before it gets work, while the other slots keep working. The
    first processes are replaced after ``max_tasks * (k + 1) // workers`` tasks (slot ``k``), so the
    slots take turns instead of all reloading (and all dipping in memory) at once. At most
    ``workers`` processes exist at any time. A process that dies fails its task with
    ``BrokenProcessPool`` and is replaced; a process whose initializer fails fails every task
    (:class:`WorkersFailed`, a RuntimeError naming the cause: nothing would ever run).

    ``replaced``: processes retired so far (recycled or died).
    """

    def __init__(self, workers: int, max_tasks: int = 0, initializer: Callable | None = None,
                 initargs: tuple = ()) -> None:
        if workers < 1 or max_tasks < 0:
            raise ValueError(f"workers must be >= 1 and max_tasks >= 0, got {workers} and {max_tasks}")
        self.max_tasks = max_tasks
        self.replaced = 0
        self._ctx = mp.get_context("spawn")  # torch + fork is unsafe; spawn costs one import per worker
        self._init = (initializer, initargs)
        # the first process of slot k is replaced after max_tasks * (k + 1) // workers tasks: staggered
        self._slots = [_Slot(limit=max(1, max_tasks * (k + 1) // workers) if max_tasks else 0) for k in range(workers)]
        self._queue: deque[tuple[Callable, tuple, Future]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._failed: BaseException | None = None  # a worker could not start: every task fails
        self._thread = threading.Thread(target=self._dispatch, name="stage1-pool", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, *args) -> Future:
        """Run ``fn(*args)`` in a worker (``fn`` and ``args`` picklable); a future of its result."""
        fut: Future = Future()
        with self._cond:
            if self._closing:
                raise RuntimeError("the pool is shut down")
            self._queue.append((fn, args, fut))
            self._cond.notify()
        return fut

    def shutdown(self) -> None:
        """Cancel the queued tasks, wait for the running ones, stop every process."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        while self._queue:
            self._queue.popleft()[2].cancel()
        for slot in self._slots:
            if slot.pool is not None:
                slot.pool.shutdown(wait=True, cancel_futures=True)
                slot.pool = None

    # -- dispatcher thread: the only one that starts, feeds and stops processes

    def _dispatch(self) -> None:
        with self._cond:
            while not self._closing:
                moved = False
                if self._failed is None:
                    try:
                        moved = self._step()
                    except BaseException as exc:  # logged, then handed to every waiting caller
                        log.exception("the stage-1 worker pool failed")
                        self._failed = exc
                if self._failed is not None:
                    while self._queue:
                        fut = self._queue.popleft()[2]
                        if fut.set_running_or_notify_cancel():
                            fut.set_exception(WorkersFailed(f"no stage-1 worker process could start: "
                                                            f"{self._failed!r} (its traceback is above)"))
                if not moved:
                    self._cond.wait()

    def _step(self) -> bool:
        """Restart the slots that need it and give queued tasks to idle slots; False: nothing to do."""
        moved = False
        for slot in self._slots:
            if slot.busy:
                continue
            if slot.pool is None or slot.broken or (slot.limit and slot.tasks >= slot.limit):
                self._restart(slot)
                moved = True
            elif self._queue:
                fn, args, fut = self._queue.popleft()
                moved = True
                if not fut.set_running_or_notify_cancel():
                    continue
                slot.busy, slot.tasks = True, slot.tasks + 1
                try:
                    done = slot.pool.submit(fn, *args)
                except BrokenProcessPool as exc:  # the process died while idle
                    slot.busy, slot.broken = False, True
                    fut.set_exception(exc)
                else:
                    done.add_done_callback(functools.partial(self._landed, slot, fut))
        return moved

    def _restart(self, slot: _Slot) -> None:
        if slot.pool is not None:
            log.debug("replacing a stage-1 worker after %d tasks%s", slot.tasks, " (it died)" * slot.broken)
            slot.pool.shutdown(wait=True)  # idle: its process exits now
            self.replaced += 1
            slot.limit = self.max_tasks
        initializer, initargs = self._init
        slot.pool = ProcessPoolExecutor(max_workers=1, mp_context=self._ctx, initializer=initializer,
                                        initargs=initargs)
        slot.busy, slot.tasks, slot.broken = True, 0, False
        slot.pool.submit(_ready).add_done_callback(functools.partial(self._warmed, slot))

    def _warmed(self, slot: _Slot, ready: Future) -> None:
        with self._cond:
            slot.busy = False
            if not ready.cancelled() and ready.exception() is not None and self._failed is None:
                self._failed = ready.exception()
            self._cond.notify()

    def _landed(self, slot: _Slot, fut: Future, done: Future) -> None:
        exc = CancelledError() if done.cancelled() else done.exception()
        if exc is None:
            fut.set_result(done.result())
        else:
            fut.set_exception(exc)
        with self._cond:
            slot.busy, slot.broken = False, isinstance(exc, BrokenProcessPool)
            self._cond.notify()


class LocalPool(Backend):
    """``workers`` spawned processes on this machine (:class:`RecyclingPool`), each replaced after
    ``runtime.stage1.worker_max_tasks`` clip steps."""

    def __init__(self, cfg: Stage1Config, workers: int) -> None:
        self._pool = RecyclingPool(workers, cfg.worker_max_tasks, init_worker, (cfg,))
        self.slots = workers

    def analyse(self, job: ClipJob) -> Future:
        return self._pool.submit(run_analyse, job)

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities) -> Future:
        return self._pool.submit(run_finish, job, analysis, identities)

    def close(self) -> None:
        self._pool.shutdown()
        if self._pool.replaced:
            log.info("%d stage-1 worker processes replaced (runtime.stage1.worker_max_tasks: %d)", self._pool.replaced,
                     self._pool.max_tasks)
