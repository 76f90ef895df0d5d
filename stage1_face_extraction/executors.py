"""Run the per-clip pipeline over many clips: in-process or in a local process pool.

Each worker builds its :class:`~stage1_face_extraction.pipeline.FacePipeline` once (models loaded
once per worker) and limits torch to ``torch_threads`` threads, so ``workers`` processes share the
cores instead of oversubscribing them. Results come back in submission order, which keeps the
shards and the manifest byte-identical whatever the number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
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


def run_jobs(
    cfg: Stage1Config, jobs: Iterable[ClipJob], workers: int | None = None, on_result: Callable[[ClipJob, ClipResult], None] | None = None
) -> Iterator[tuple[ClipJob, ClipResult]]:
    """Yield ``(job, result)`` in job order; ``workers`` <= 1 runs in this process."""
    jobs = list(jobs)
    workers = cfg.workers if workers is None else workers
    if workers <= 1 or len(jobs) <= 1:
        pipe = FacePipeline(cfg)
        for job in jobs:
            yield job, _safe_process(pipe, job)
        return
    ctx = mp.get_context("spawn")  # torch + fork is unsafe; spawn costs one import per worker
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg,)) as ex:
        for job, res in zip(jobs, ex.map(_run, jobs, chunksize=1)):
            yield job, res
