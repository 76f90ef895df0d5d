"""Running the clips of a stage: :class:`ClipRunner` over a backend, dialogue look-ahead and the
identity step per group (the orchestration; the backends are in ``steps``, ``pool`` and ``ray_actors``)."""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future

import numpy as np

from stage1_face_extraction.executors.pool import LocalPool, WorkersFailed
from stage1_face_extraction.executors.ray_actors import RayActors
from stage1_face_extraction.executors.steps import (
    Backend,
    ClipJob,
    InProcess,
    done_future,
    error_record,
    error_result,
)
from stage1_face_extraction.identity.base import embedder_class
from stage1_face_extraction.identity.group import GroupIdentity, identify_group
from stage1_face_extraction.pipeline import ClipAnalysis, ClipResult
from stage1_face_extraction.section import Stage1Config

log = logging.getLogger(__name__)


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
        self._backend: Backend | None = None

    def __enter__(self) -> ClipRunner:
        if self.cfg.executor == "ray":
            self._backend = RayActors(self.cfg)
        elif self.workers > 1:
            self._backend = LocalPool(self.cfg, self.workers)
        else:
            self._backend = InProcess(self.cfg)
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
                    finishing.append((job, done_future(error_result(job, failed, size))))
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
