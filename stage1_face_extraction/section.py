"""The ``stage1`` section of params.yaml: :class:`Stage1Config`, made of three parts.

- :class:`~stage1_face_extraction.pipeline.PipelineConfig`: what one clip gives (detector, speaking
  scores, selection, identity, crop size, ``max_frames``, ...), all that ``FacePipeline`` reads;
- :class:`RunnerConfig`: how the clips run (``workers``, ``worker_max_tasks``, ``executor``,
  ``ray``): runner knobs, written under ``runtime.stage1`` (never hashed by DVC, they change no byte);
- :class:`OutputConfig`: how the results are stored (``jpeg_quality``, ``utts_per_shard``) and how
  many pictures for people are drawn (``contact_sheets``, ``previews``).

The section stays flat in params.yaml (``stage1.jpeg_quality``, not ``stage1.output.jpeg_quality``):
``Stage1Config`` is the three parts' fields together, and a ``Stage1Config`` is a ``PipelineConfig``.

    cfg = load_section("params.yaml", "stage1", Stage1Config)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stage1_face_extraction.pipeline import PipelineConfig

EXECUTORS = ("local", "ray")  # runtime.stage1.executor: where ClipRunner runs the per-clip steps


@dataclass
class RayConfig:
    """``runtime.stage1.ray``: how ``executor: ray`` runs the clips (``executors.ClipRunner``).

    ``address``: the Ray cluster (``ray.init(address=...)``): null = ``$RAY_ADDRESS``, else the
    cluster ``ray start`` started on this machine, else a new local instance; ``auto`` = an
    existing cluster (error when none); ``local`` = always a new local instance; ``host:6379`` or
    ``ray://host:10001``. ``actors``: FacePipeline actors (each loads the models once and takes
    ``torch_threads`` CPUs and ``num_gpus`` GPUs); null = as many as the cluster's CPUs (and GPUs)
    hold. ``max_retries``: restarts of a dead actor and retries of its clips (the steps are pure).
    """

    address: str | None = None
    actors: int | None = None
    num_gpus: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ValueError(f"runtime.stage1.ray.address must be null or a non-empty string, got {self.address!r}")
        if self.actors is not None and (isinstance(self.actors, bool) or not isinstance(self.actors, int)
                                        or self.actors < 1):
            raise ValueError(f"runtime.stage1.ray.actors must be null or an integer >= 1, got {self.actors!r}")
        if isinstance(self.num_gpus, bool) or not isinstance(self.num_gpus, int | float) or self.num_gpus < 0:
            raise ValueError(f"runtime.stage1.ray.num_gpus must be a number >= 0, got {self.num_gpus!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"runtime.stage1.ray.max_retries must be an integer >= 0, got {self.max_retries!r}")


@dataclass
class RunnerConfig:
    """How the clips run (``runtime.stage1``): ``executor`` ``local`` (``workers`` processes on this
    machine, each replaced after ``worker_max_tasks`` clip steps) or ``ray`` (actors on a Ray cluster,
    ``ray``: :class:`RayConfig`); the output bytes are the same."""

    workers: int = 2  # executor local
    worker_max_tasks: int = 200  # executor local: clip steps after which a worker process is replaced (0: never)
    executor: str = "local"
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"runtime.stage1.executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if isinstance(self.worker_max_tasks, bool) or not isinstance(self.worker_max_tasks, int) \
                or self.worker_max_tasks < 0:
            raise ValueError(
                f"runtime.stage1.worker_max_tasks must be an integer >= 0 (0: never), got {self.worker_max_tasks!r}"
            )


@dataclass
class OutputConfig:
    """How the results are stored (face shards) and the pictures for people drawn beside them."""

    jpeg_quality: int = 95
    utts_per_shard: int = 100
    contact_sheets: int = 8  # per split: PNG contact sheets of the first N clips with faces
    previews: int = 4  # per split: annotated MP4s (tracks boxed, speaker highlighted) of the first N clips


@dataclass
class Stage1Config(PipelineConfig, RunnerConfig, OutputConfig):
    """The ``stage1`` section (its runner knobs merged from ``runtime.stage1``): the fields of
    :class:`~stage1_face_extraction.pipeline.PipelineConfig`, :class:`RunnerConfig` and
    :class:`OutputConfig` (see the module docstring)."""

    def __post_init__(self) -> None:
        PipelineConfig.__post_init__(self)
        RunnerConfig.__post_init__(self)
