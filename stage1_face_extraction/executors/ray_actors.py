"""The Ray backend of stage 1 (``runtime.stage1.executor: ray``): FacePipeline actors on a Ray
cluster (:class:`RayActors`). ``ray`` is imported only when this backend is built."""

from __future__ import annotations

import copy
import logging
from concurrent.futures import Future

from stage1_face_extraction.executors.steps import Backend, ClipJob, safe_analyse, safe_finish
from stage1_face_extraction.pipeline import ClipAnalysis, FacePipeline
from stage1_face_extraction.section import Stage1Config

log = logging.getLogger(__name__)


class _PipelineActor:
    """A Ray actor (``ray.remote`` applied in :class:`RayActors`): one FacePipeline, reused.

    Ray serialises the arguments and results; numpy arrays arrive as read-only zero-copy views of
    the object store, so each side takes a private deep copy (:func:`_writable`) before use."""

    def __init__(self, cfg: Stage1Config) -> None:
        import torch

        torch.set_num_threads(max(1, cfg.torch_threads))
        self._pipe = FacePipeline(cfg)

    def analyse(self, job: ClipJob):
        return safe_analyse(self._pipe, _writable(job))

    def finish(self, job: ClipJob, analysis: ClipAnalysis, identities):
        return safe_finish(self._pipe, *_writable((job, analysis, identities)))


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


class RayActors(Backend):
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
