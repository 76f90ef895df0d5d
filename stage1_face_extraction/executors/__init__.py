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

The package: ``steps`` (the two per-clip steps as a worker runs them, :class:`ClipJob`, the
in-process backend, heap trimming), ``pool`` (the local process pool, :class:`RecyclingPool`),
``ray_actors`` (the Ray backend) and ``runner`` (:class:`ClipRunner`: look-ahead, identity per
group, results in order). Every public name is importable from here.
"""

from stage1_face_extraction.executors.pool import RecyclingPool, WorkersFailed
from stage1_face_extraction.executors.runner import ClipRunner, run_jobs
from stage1_face_extraction.executors.steps import ClipJob, error_record, error_result, release_heap

__all__ = ["ClipJob", "ClipRunner", "RecyclingPool", "WorkersFailed", "error_record", "error_result", "release_heap",
           "run_jobs"]
