"""Run the pipeline over many clips: in-process, in a local process pool or on a Ray cluster,
grouped for identity.

Each worker (a pool process or a Ray actor) builds its
:class:`~stage1_face_extraction.pipeline.FacePipeline` once (models loaded once per worker) and
limits torch to ``torch_threads`` threads, so the workers share the cores instead of
oversubscribing them. ``runtime.stage1.executor`` picks the backend: ``local`` (default; ``workers``
processes, <= 1: in this process; each process is replaced by a fresh one after
``worker_max_tasks`` clip steps, :class:`RecyclingPool`, so that memory stays flat over a long run)
or ``ray`` (``runtime.stage1.ray``: actors on the cluster at
``ray.address``; ``ray`` is imported only then).

Clips are processed in two steps (``FacePipeline.analyse`` then ``finish``). When the identity step
is on (``stage1.identity.scope`` other than ``none``), the clips of one group (``ClipJob.group``,
e.g. a dialogue) are all analysed, their tracks clustered and named in the parent process
(``identity.group.identify_group``, milliseconds), and then each clip is finished with its tracks'
names. The analyses of the next groups keep the workers busy meanwhile (a look-ahead window of
clips). Results come back in submission order, and nothing depends on the number of workers, on
the backend or on completion order, which keeps the shards and the manifest byte-identical for any
``workers`` and for Ray.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import logging
import multiprocessing as mp
import os
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from stage1_face_extraction.identity.base import embedder_class
from stage1_face_extraction.identity.group import GroupIdentity, identify_group
from stage1_face_extraction.pipeline import ClipAnalysis, ClipResult, FacePipeline, Stage1Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipJob:
    """One clip to process."""

    path: str  # file to decode
    utt_id: str | None = None
    speaker: str | None = None
    clip: str | None = None  # name recorded in the manifest (relative path)
    group: str | None = None  # clips of one group are identified together (None: the clip alone)
    write: bool = True  # False: analysed only for its group's identity step (already stored: resume)
    preview: bool = False  # also finish it when write=False (a stored clip whose preview is still to draw)

    @property
    def key(self) -> str:
        """The clip's name in the identity step (``utt_id``, else the path)."""
        return str(self.utt_id or self.path)


_WORKER: FacePipeline | None = None


def _init_worker(cfg: Stage1Config) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(max(1, cfg.torch_threads))
    _WORKER = FacePipeline(cfg)


def error_record(job: ClipJob, exc: BaseException) -> dict:
    """The manifest record of a clip whose processing raised ``exc``: status ``error`` (not
    ``decode_error``, which means an undecodable file), ``reason`` ``"<type>: <message>"``; no
    frames. Logged with the traceback."""
    log.error("%s: processing failed (%s: %s); recorded as status error", job.path, type(exc).__name__, exc,
              exc_info=exc)
    return {
        "clip": job.clip or job.path, "utt_id": job.utt_id, "status": "error",
        "fps": None, "n_frames": 0, "frames": [], "tracks": [], "speaker": job.speaker,
        "reason": f"{type(exc).__name__}: {exc}", "timings": {},
    }


def error_result(job: ClipJob, exc: BaseException, face_size: int) -> ClipResult:
    """:func:`error_record` with no crops."""
    return ClipResult(error_record(job, exc), np.zeros((0, face_size, face_size, 3), np.uint8))


class WorkersFailed(RuntimeError):
    """No worker process could start (their initializer failed): every clip would fail, so the run
    stops instead of recording each clip as an error."""


#: clip steps (analyse or finish) of this process between two heap trims (:func:`_after_step`)
TRIM_EVERY = 20
_steps = 0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None without glibc (macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_heap() -> bool:
    """Return the C heap's free memory to the OS (glibc ``malloc_trim(0)``); False where there is no
    glibc: nothing to do there."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _after_step() -> None:
    """Trim the heap every :data:`TRIM_EVERY` steps of this process.

    Each clip allocates and frees buffers of changing sizes (decoded frames, the detector's image
    pyramid and box batches, crops). glibc keeps freed pages in its arenas, and fragmentation made a
    worker's RSS grow from ~1.0 to ~1.5-2.2 GB over a few hundred clips although nothing leaked.
    Trimmed every 10 clips, it is back at ~0.95 GB after each trim for any clip count (8 trims: 0.6 s
    in 80 clips, no measurable cost), though the peak within a clip still creeps up slowly; trimming
    after every step costs ~30 % of the throughput (the pages are faulted in again for the next
    clip). Measured with benchmarks/stage1_load.py, which reports each process' memory. What the
    trims leave (the peak within a clip creeps up, ~+0.5 GB per worker over 150 clips) goes with the
    process: the local pool replaces its workers every ``runtime.stage1.worker_max_tasks`` steps."""
    global _steps
    _steps += 1
    if _steps % TRIM_EVERY == 0:
        release_heap()


def _safe_analyse(pipe: FacePipeline, job: ClipJob) -> ClipAnalysis:
    """One clip never stops the run: an exception becomes that clip's ``error`` record."""
    try:
        return pipe.analyse(job.path, utt_id=job.utt_id, speaker=job.speaker, clip=job.clip,
                            embed=pipe.cfg.identity.enabled)
    except Exception as exc:  # noqa: BLE001 - recorded per clip, logged with the traceback
        return ClipAnalysis(path=job.path, record=error_record(job, exc), final=True)
    finally:
        _after_step()


def _safe_finish(pipe: FacePipeline, job: ClipJob, analysis: ClipAnalysis, identities) -> ClipResult:
    try:
        return pipe.finish(analysis, identities)
    except Exception as exc:  # noqa: BLE001 - recorded per clip, logged with the traceback
        return error_result(job, exc, pipe.cfg.face_size)
    finally:
        _after_step()


def _run_analyse(job: ClipJob) -> ClipAnalysis:
    assert _WORKER is not None, "worker not initialised"
    return _safe_analyse(_WORKER, job)


def _run_finish(job: ClipJob, analysis: ClipAnalysis, identities) -> ClipResult:
    assert _WORKER is not None, "worker not initialised"
    return _safe_finish(_WORKER, job, analysis, identities)


def _done(value) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


class _Backend:
    """Where the two per-clip steps run. ``analyse`` / ``finish`` return futures; ``slots`` is how
    many clips run at once (it sizes the look-ahead window)."""

    slots: int = 1

    def analyse(self, job: ClipJob) -> Future:
        raise NotImplementedError

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities) -> Future:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _InProcess(_Backend):
    """This process, one clip at a time (the futures are done when returned)."""

    def __init__(self, cfg: Stage1Config) -> None:
        # Same torch thread count as a worker process: float results (hence boxes, crops and
        # shard bytes) depend on it, and must not depend on the number of workers.
        import torch

        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, cfg.torch_threads))
        try:
            self._pipe = FacePipeline(cfg)
        except BaseException:
            self.close()
            raise

    def analyse(self, job: ClipJob) -> Future:
        return _done(_safe_analyse(self._pipe, job))

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities) -> Future:
        return _done(_safe_finish(self._pipe, job, analysis, identities))

    def close(self) -> None:
        import torch

        torch.set_num_threads(self._saved_threads)


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
    fragmented arenas, :func:`_after_step`); a new process starts again from the loaded models.
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


class _LocalPool(_Backend):
    """``workers`` spawned processes on this machine (:class:`RecyclingPool`), each replaced after
    ``runtime.stage1.worker_max_tasks`` clip steps."""

    def __init__(self, cfg: Stage1Config, workers: int) -> None:
        self._pool = RecyclingPool(workers, cfg.worker_max_tasks, _init_worker, (cfg,))
        self.slots = workers

    def analyse(self, job: ClipJob) -> Future:
        return self._pool.submit(_run_analyse, job)

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities) -> Future:
        return self._pool.submit(_run_finish, job, analysis, identities)

    def close(self) -> None:
        self._pool.shutdown()
        if self._pool.replaced:
            log.info("%d stage-1 worker processes replaced (runtime.stage1.worker_max_tasks: %d)", self._pool.replaced,
                     self._pool.max_tasks)


class _PipelineActor:
    """A Ray actor (``ray.remote`` applied in :class:`_RayActors`): one FacePipeline, reused.

    Ray serialises the arguments and results; numpy arrays arrive as read-only zero-copy views of
    the object store, so each side takes a private deep copy (:func:`_writable`) before use."""

    def __init__(self, cfg: Stage1Config) -> None:
        import torch

        torch.set_num_threads(max(1, cfg.torch_threads))
        self._pipe = FacePipeline(cfg)

    def analyse(self, job: ClipJob):
        return _safe_analyse(self._pipe, _writable(job))

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities):
        return _safe_finish(self._pipe, *_writable((job, analysis, identities)))


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError(
            "runtime.stage1.executor is 'ray' but the ray package is not installed: "
            "pip install 'ray==2.60.0' (or pip install -e '.[ray]'), or set runtime.stage1.executor: local"
        ) from exc
    return ray


def _writable(obj):
    """``obj`` with every numpy array in it copied: Ray hands arrays over as read-only views of its
    object store, and the pipeline writes into some of them (a deep copy of a view is writable)."""
    return copy.deepcopy(obj)


def _copied(fut: Future) -> Future:
    """A future of :func:`_writable` of ``fut``'s result (exceptions passed on)."""
    out: Future = Future()

    def done(f: Future) -> None:
        try:
            out.set_result(_writable(f.result()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of out.result()
            out.set_exception(exc)

    fut.add_done_callback(done)
    return out


class _RayActors(_Backend):
    """``runtime.stage1.ray.actors`` FacePipeline actors on the Ray cluster at ``runtime.stage1.ray.address``.

    Joins the Ray session of this process when there is one (and leaves it running), else
    ``ray.init(address)`` and ``ray.shutdown()`` at the end. Each clip goes to the actor with the
    fewest unfinished calls. The video paths are read by the actors: on several nodes, the clips
    must be at the same path on every node (a shared file system).
    """

    def __init__(self, cfg: Stage1Config) -> None:
        ray = self._ray = _import_ray()
        rc = cfg.ray
        self._started = False
        if ray.is_initialized():
            log.info(
                "runtime.stage1.executor ray: using this process's Ray session (runtime.stage1.ray.address not used)"
            )
        else:
            ray.init(address=rc.address)
            self._started = True
        try:
            cpus = max(1, cfg.torch_threads)
            n = rc.actors
            if n is None:
                res = ray.cluster_resources()
                n = int(res.get("CPU", 1) // cpus)
                if rc.num_gpus > 0:
                    n = min(n, int(res.get("GPU", 0) // rc.num_gpus))
                if n < 1:
                    raise RuntimeError(f"the Ray cluster has no room for one actor of {cpus} CPU(s) and "
                                       f"{rc.num_gpus} GPU(s) (resources: {res}); set runtime.stage1.ray.actors")
            actor = ray.remote(num_cpus=cpus, num_gpus=rc.num_gpus, max_restarts=rc.max_retries,
                               max_task_retries=rc.max_retries)(_PipelineActor)
            self._actors = [actor.remote(cfg) for _ in range(n)]
        except BaseException:
            self.close()
            raise
        self._calls: list[list[Future]] = [[] for _ in self._actors]
        self.slots = n
        log.info("runtime.stage1.executor ray: %d actors (%d CPU%s each) on %s", n, cpus, "s" if cpus > 1 else "",
                 rc.address or "the default Ray cluster")

    def _submit(self, method: str, *args) -> Future:
        for calls in self._calls:
            calls[:] = [f for f in calls if not f.done()]
        k = min(range(len(self._actors)), key=lambda i: len(self._calls[i]))
        fut = getattr(self._actors[k], method).remote(*args).future()
        self._calls[k].append(fut)
        return _copied(fut)

    def analyse(self, job: ClipJob) -> Future:
        return self._submit("analyse", job)

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities) -> Future:
        return self._submit("finish", job, analysis, identities)

    def close(self) -> None:
        for a in getattr(self, "_actors", []):
            self._ray.kill(a)
        self._actors = []
        if self._started:
            self._ray.shutdown()
            self._started = False


class ClipRunner:
    """Process clips in order with ``workers`` processes (<= 1: in this process), or with Ray
    actors when ``cfg.executor`` is ``ray`` (then ``workers`` is not used: ``cfg.ray.actors``).

    Use as a context manager so the pool (and the models each worker loaded) is reused for every
    :meth:`map` call, e.g. one per split::

        with ClipRunner(cfg, references=refs) as runner:
            for job, result in runner.map(jobs, on_group=reports.append):
                ...

    ``references``: ``{name: (K, D) embeddings}`` of the identity embedder (reference photos,
    ``identity.load_references``), or None.
    """

    def __init__(self, cfg: Stage1Config, workers: int | None = None,
                 references: Mapping[str, np.ndarray] | None = None) -> None:
        self.cfg = cfg
        self.workers = cfg.workers if workers is None else int(workers)
        self.references = references
        self._backend: _Backend | None = None

    def __enter__(self) -> ClipRunner:
        if self.cfg.executor == "ray":
            self._backend = _RayActors(self.cfg)
        elif self.workers > 1:
            self._backend = _LocalPool(self.cfg, self.workers)
        else:
            self._backend = _InProcess(self.cfg)
        return self

    def __exit__(self, *exc) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def map(
        self, jobs: Iterable[ClipJob], on_group: Callable[[GroupIdentity], None] | None = None
    ) -> Iterator[tuple[ClipJob, ClipResult]]:
        """Yield ``(job, result)`` for the jobs with ``write`` or ``preview`` set, in job order.

        Jobs of one ``group`` must be contiguous. With the identity step on, ``on_group`` gets each
        group's :class:`GroupIdentity` (clusters, names; ``.report()``) before its clips are
        finished.

        A clip whose processing raises (in a worker, or its worker process dies on it) yields a
        result with status ``error`` (:func:`error_record`) and the run goes on; so do all the clips
        of a group whose identity step raises (``on_group`` is not called for it). Only
        :class:`WorkersFailed` (no worker could start) stops the run.
        """
        backend = self._backend
        if backend is None:
            raise RuntimeError("use ClipRunner as a context manager")
        ident = self.cfg.identity
        threshold = embedder_class(ident.embedder["name"]).distance_threshold if ident.enabled else 0.0
        groups: OrderedDict[str, list[ClipJob]] = OrderedDict()
        last = None
        for k, job in enumerate(jobs):
            key = job.group if job.group is not None else f"#{k}"
            if key in groups and key != last:
                raise ValueError(f"jobs of group {key!r} are not contiguous")
            groups.setdefault(key, []).append(job)
            last = key
        window = max(4, 3 * max(1, backend.slots))  # clips analysed ahead of the group being finished
        todo = iter(groups.items())
        analysing: deque[tuple[str, list[ClipJob], list[Future]]] = deque()
        in_flight = 0
        finishing: deque[tuple[ClipJob, Future]] = deque()

        def fill() -> None:
            nonlocal in_flight
            while in_flight < window:
                nxt = next(todo, None)
                if nxt is None:
                    return
                key, gjobs = nxt
                analysing.append((key, gjobs, [backend.analyse(j) for j in gjobs]))
                in_flight += len(gjobs)

        size = self.cfg.face_size

        def analysed(job: ClipJob, fut: Future) -> ClipAnalysis:
            try:
                return fut.result()
            except WorkersFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - the worker died on this clip (BrokenProcessPool, Ray)
                return ClipAnalysis(path=job.path, record=error_record(job, exc), final=True)

        def finished(job: ClipJob, fut: Future) -> ClipResult:
            try:
                return fut.result()
            except WorkersFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - as in analysed()
                return error_result(job, exc, size)

        fill()
        while analysing:
            key, gjobs, futs = analysing.popleft()
            analyses = [analysed(j, f) for j, f in zip(gjobs, futs)]
            in_flight -= len(futs)
            fill()
            gi = None
            failed: Exception | None = None
            if ident.enabled:
                faces = [f for a in analyses for f in a.faces]
                speakers = {j.key: j.speaker for j in gjobs}
                try:
                    gi = identify_group(gjobs[0].group or gjobs[0].key, faces, speakers, ident, threshold,
                                        self.references)
                except Exception as exc:  # noqa: BLE001 - the group's clips get status error, the run goes on
                    failed = exc
                if gi is not None and on_group is not None:
                    on_group(gi)
            for job, a in zip(gjobs, analyses):
                if not (job.write or job.preview):
                    continue
                if failed is not None:
                    finishing.append((job, _done(error_result(job, failed, size))))
                else:
                    finishing.append((job, backend.finish(job, a, gi.of(job.key) if gi else None)))
            while finishing and (finishing[0][1].done() or len(finishing) > 2 * window):
                job, fut = finishing.popleft()
                yield job, finished(job, fut)
        while finishing:
            job, fut = finishing.popleft()
            yield job, finished(job, fut)


def run_jobs(
    cfg: Stage1Config, jobs: Iterable[ClipJob], workers: int | None = None
) -> Iterator[tuple[ClipJob, ClipResult]]:
    """Yield ``(job, result)`` in job order; ``workers`` <= 1 runs in this process."""
    with ClipRunner(cfg, workers) as runner:
        yield from runner.map(jobs)
