"""The per-clip steps as every backend runs them, and the in-process backend.

A clip is processed in two steps (``FacePipeline.analyse`` then ``finish``); one clip never stops
the run: a step that raises becomes that clip's ``error`` record (:func:`error_record`). Each worker
(a pool process, a Ray actor, or this process) builds its
:class:`~stage1_face_extraction.pipeline.FacePipeline` once and limits torch to ``torch_threads``
threads; every :data:`TRIM_EVERY` steps it gives the C heap's free memory back (:func:`release_heap`).
A :class:`Backend` is where the two steps run (:class:`InProcess` here; ``pool.LocalPool``,
``ray_actors.RayActors``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from stage1_face_extraction.pipeline import ClipAnalysis, ClipResult, FacePipeline
from stage1_face_extraction.section import Stage1Config

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


def init_worker(cfg: Stage1Config) -> None:
    """A pool process's initializer: its FacePipeline, built once, and its torch thread count."""
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


def safe_analyse(pipe: FacePipeline, job: ClipJob) -> ClipAnalysis:
    """One clip never stops the run: an exception becomes that clip's ``error`` record."""
    try:
        return pipe.analyse(job.path, utt_id=job.utt_id, speaker=job.speaker, clip=job.clip,
                            embed=pipe.cfg.identity.enabled)
    except Exception as exc:  # noqa: BLE001 - recorded per clip, logged with the traceback
        return ClipAnalysis(path=job.path, record=error_record(job, exc), final=True)
    finally:
        _after_step()


def safe_finish(pipe: FacePipeline, job: ClipJob, analysis: ClipAnalysis, identities) -> ClipResult:
    """As :func:`safe_analyse`, for the second step."""
    try:
        return pipe.finish(analysis, identities)
    except Exception as exc:  # noqa: BLE001 - recorded per clip, logged with the traceback
        return error_result(job, exc, pipe.cfg.face_size)
    finally:
        _after_step()


def run_analyse(job: ClipJob) -> ClipAnalysis:
    """:func:`safe_analyse` with this pool process's pipeline (:func:`init_worker`)."""
    assert _WORKER is not None, "worker not initialised"
    return safe_analyse(_WORKER, job)


def run_finish(job: ClipJob, analysis: ClipAnalysis, identities) -> ClipResult:
    """:func:`safe_finish` with this pool process's pipeline (:func:`init_worker`)."""
    assert _WORKER is not None, "worker not initialised"
    return safe_finish(_WORKER, job, analysis, identities)


def done_future(value) -> Future:
    """A future that is already done, with ``value``."""
    fut: Future = Future()
    fut.set_result(value)
    return fut


class Backend:
    """Where the two per-clip steps run. ``analyse`` / ``finish`` return futures; ``slots`` is how
    many clips run at once (it sizes the look-ahead window)."""

    slots: int = 1

    def analyse(self, job: ClipJob) -> Future:
        raise NotImplementedError

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities) -> Future:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcess(Backend):
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
        return done_future(safe_analyse(self._pipe, job))

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities) -> Future:
        return done_future(safe_finish(self._pipe, job, analysis, identities))

    def close(self) -> None:
        import torch

        torch.set_num_threads(self._saved_threads)
