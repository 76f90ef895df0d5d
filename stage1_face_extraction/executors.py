"""Run the per-clip pipeline over many clips: in-process or in a local process pool.

Each worker builds its :class:`~stage1_face_extraction.pipeline.FacePipeline` once (models loaded
once per worker) and limits torch to ``torch_threads`` threads, so ``workers`` processes share the
cores instead of oversubscribing them. Results come back in submission order, which keeps the
shards and the manifest byte-identical whatever the number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from stage1_face_extraction.pipeline import ClipResult, FacePipeline, Stage1Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipJob:
    """One clip to process."""

    path: str  # file to decode
    utt_id: str | None = None
    speaker: str | None = None
    clip: str | None = None  # name recorded in the manifest (relative path)


_WORKER: FacePipeline | None = None


def _init_worker(cfg: Stage1Config) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(max(1, cfg.torch_threads))
    _WORKER = FacePipeline(cfg)


def _run(job: ClipJob) -> ClipResult:
    assert _WORKER is not None, "worker not initialised"
    return _safe_process(_WORKER, job)


def _safe_process(pipe: FacePipeline, job: ClipJob) -> ClipResult:
    """One clip never stops the run: an unexpected error becomes a decode_error record."""
    try:
        return pipe.process(job.path, utt_id=job.utt_id, speaker=job.speaker, clip=job.clip)
    except Exception as exc:  # noqa: BLE001 - recorded per clip, logged with the traceback
        log.exception("%s: unexpected failure", job.path)
        import numpy as np

        size = pipe.cfg.face_size
        rec = {
            "clip": job.clip or job.path, "utt_id": job.utt_id, "status": "decode_error",
            "fps": None, "n_frames": 0, "frames": [], "tracks": [], "speaker": job.speaker,
            "reason": f"{type(exc).__name__}: {exc}", "timings": {},
        }
        return ClipResult(rec, np.zeros((0, size, size, 3), np.uint8))


class ClipRunner:
    """Process clips in order with ``workers`` processes (<= 1: in this process).

    Use as a context manager so the pool (and the models each worker loaded) is reused for every
    :meth:`map` call, e.g. one per split::

        with ClipRunner(cfg) as runner:
            for job, result in runner.map(jobs):
                ...
    """

    def __init__(self, cfg: Stage1Config, workers: int | None = None) -> None:
        self.cfg = cfg
        self.workers = cfg.workers if workers is None else int(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._pipe: FacePipeline | None = None
        self._saved_threads: int | None = None

    def __enter__(self) -> ClipRunner:
        if self.workers > 1:
            ctx = mp.get_context("spawn")  # torch + fork is unsafe; spawn costs one import per worker
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.cfg,)
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._saved_threads is not None:
            import torch

            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def map(self, jobs: Iterable[ClipJob]) -> Iterator[tuple[ClipJob, ClipResult]]:
        """Yield ``(job, result)`` in job order."""
        jobs = list(jobs)
        if self._pool is None:
            if self._pipe is None:
                # Same torch thread count as a worker process: float results (hence boxes, crops
                # and shard bytes) depend on it, and must not depend on the number of workers.
                import torch

                self._saved_threads = torch.get_num_threads()
                torch.set_num_threads(max(1, self.cfg.torch_threads))
                self._pipe = FacePipeline(self.cfg)
            for job in jobs:
                yield job, _safe_process(self._pipe, job)
            return
        yield from zip(jobs, self._pool.map(_run, jobs, chunksize=1))


def run_jobs(cfg: Stage1Config, jobs: Iterable[ClipJob], workers: int | None = None) -> Iterator[tuple[ClipJob, ClipResult]]:
    """Yield ``(job, result)`` in job order; ``workers`` <= 1 runs in this process."""
    with ClipRunner(cfg, workers) as runner:
        yield from runner.map(jobs)
