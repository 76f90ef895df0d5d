"""``stage1.executor`` / ``stage1.ray`` (fast, no Ray cluster): strict config, ``ray`` imported only
for ``executor: ray`` (with a clear error when missing), and the Ray backend's plumbing against a
fake in-process ``ray`` module (init/attach, actor count, read-only arrays as Ray hands them over,
submission order, shutdown), and the heap trim every ``TRIM_EVERY`` steps (any backend).
The real local-Ray run (byte-identical shards and manifest) is the ``slow``
``test_ray_executor_gives_identical_bytes`` in test_extract_faces.py.
"""

from __future__ import annotations

import copy
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

from stage1_face_extraction import executors
from stage1_face_extraction.common.config import ConfigError, from_dict, load_section
from stage1_face_extraction.executors import ClipJob, ClipRunner, ray_actors, steps
from stage1_face_extraction.pipeline import ClipAnalysis, ClipResult
from stage1_face_extraction.section import RayConfig, Stage1Config


def test_repo_params_default_to_the_local_pool(repo_root: Path) -> None:
    cfg = load_section(repo_root / "params.yaml", "stage1", Stage1Config)
    assert cfg.executor == "local" and cfg.ray == RayConfig()
    assert Stage1Config().executor == "local"


def test_unknown_executor_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"stage1\.executor must be one of local, ray, got 'dask'"):
        from_dict(Stage1Config, {"executor": "dask"}, "stage1")


def test_ray_keys_are_strict() -> None:
    with pytest.raises(ConfigError, match=r"stage1\.ray\.adress; valid keys for stage1\.ray: actors, address, "
                                          r"max_retries, num_gpus"):
        from_dict(Stage1Config, {"executor": "ray", "ray": {"adress": "auto"}}, "stage1")
    cfg = from_dict(Stage1Config, {"executor": "ray", "ray": {"address": "ray://head:10001", "actors": 4,
                                                                "num_gpus": 0.5}}, "stage1")
    assert cfg.ray == RayConfig(address="ray://head:10001", actors=4, num_gpus=0.5, max_retries=3)
    assert from_dict(Stage1Config, {"ray": None}, "stage1").ray == RayConfig()


@pytest.mark.parametrize("ray, match", [
    ({"actors": 0}, "actors"), ({"actors": 1.5}, "actors"), ({"actors": True}, "actors"),
    ({"address": ""}, "address"), ({"address": 6379}, "address"),
    ({"num_gpus": -1}, "num_gpus"), ({"num_gpus": "1"}, "num_gpus"), ({"max_retries": -1}, "max_retries"),
])  # fmt: skip
def test_bad_ray_values(ray: dict, match: str) -> None:
    with pytest.raises(ValueError, match=rf"stage1\.ray\.{match}"):
        from_dict(Stage1Config, {"executor": "ray", "ray": ray}, "stage1")


def test_extract_faces_rejects_an_unknown_executor(tmp_path: Path, repo_root: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from stage1_face_extraction.stages import extract_faces

    params = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    params["runtime"]["stage1"]["executor"] = "spark"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    argv = ["--params", str(path), "--utterances", str(tmp_path / "none.parquet"), "--meld-root", str(tmp_path),
            "--out", str(tmp_path / "faces")]  # fmt: skip
    with caplog.at_level("ERROR"):
        assert extract_faces.main(argv) == 2
    assert "stage1.executor must be one of local, ray, got 'spark'" in caplog.text
    assert not (tmp_path / "faces").exists()


# ------------------------------------------------------------------------------------------------
# The backends with a stub pipeline (no models) and, for Ray, a fake module.


class StubPipeline:
    """Stands in for FacePipeline: analyse/finish echo the job, with a numpy array to check that
    arrays arrive writable although Ray hands them over read-only (see :func:`_as_ray_delivers`)."""

    built = 0

    def __init__(self, cfg: Stage1Config) -> None:
        self.cfg = cfg
        StubPipeline.built += 1

    def analyse(self, path, utt_id=None, speaker=None, clip=None, embed=False) -> ClipAnalysis:
        time.sleep(0.05)  # busy long enough for the next clips to go to the other actors
        if path.endswith("boom"):
            raise RuntimeError("cannot decode")
        return ClipAnalysis(path=path, record={"utt_id": utt_id}, times=np.arange(3, dtype=np.float64))

    def finish(self, analysis: ClipAnalysis, identities) -> ClipResult:
        if analysis.final:  # as FacePipeline.finish: the status is decided (error, decode_error)
            return ClipResult(analysis.record, np.zeros((0, 2, 2, 3), np.uint8))
        assert analysis.times.flags.writeable
        analysis.times += 1  # the real finish may write into the analysis' arrays
        return ClipResult({"utt_id": analysis.record["utt_id"], "status": "ok", "t": analysis.times.tolist()},
                          np.zeros((1, 2, 2, 3), np.uint8))


def _as_ray_delivers(obj):
    """A copy of ``obj`` whose numpy arrays are read-only, as Ray's zero-copy deserialisation
    returns them from its object store."""
    obj = copy.deepcopy(obj)
    seen: set[int] = set()

    def freeze(x) -> None:
        if id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, np.ndarray):
            x.flags.writeable = False
        elif isinstance(x, dict):
            for v in x.values():
                freeze(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                freeze(v)
        elif hasattr(x, "__dict__"):
            for v in vars(x).values():
                freeze(v)

    freeze(obj)
    return obj


class FakeRay(types.ModuleType):
    """The parts of ``ray`` the backend uses; each actor runs its calls in order in one thread."""

    def __init__(self, cpus: float = 3.0) -> None:
        super().__init__("ray")
        self.cpus, self.inits, self.shutdowns, self.killed, self.options, self.calls = cpus, [], 0, 0, None, []
        self.threads: list[ThreadPoolExecutor] = []
        self._up = False

    def is_initialized(self) -> bool:
        return self._up

    def init(self, address=None, **kw) -> None:
        self.inits.append(address)
        self._up = True

    def shutdown(self) -> None:
        self.shutdowns += 1
        self._up = False

    def cluster_resources(self) -> dict:
        return {"CPU": self.cpus}

    def kill(self, actor) -> None:
        actor.thread.shutdown(wait=True)
        self.killed += 1

    def remote(self, **options):
        fake = self
        fake.options = options

        def wrap(cls):
            class Handle:
                def __init__(self, instance) -> None:
                    self.instance, self.thread = instance, None

                def __getattr__(self, name):
                    method = getattr(self.instance, name)

                    class Call:
                        @staticmethod
                        def remote(*args):
                            fake.calls.append((id(self.instance), name))
                            # one call at a time, in order; arguments and results read-only as from Ray
                            fut = self.thread.submit(lambda: _as_ray_delivers(method(*_as_ray_delivers(args))))
                            return types.SimpleNamespace(future=lambda: fut)

                    return Call

            def start(*args):
                handle = Handle(cls(*args))
                handle.thread = ThreadPoolExecutor(1)
                fake.threads.append(handle.thread)
                return handle

            return types.SimpleNamespace(remote=start)

        return wrap


def _jobs() -> list[ClipJob]:
    return [ClipJob(path=f"clip{i}", utt_id=f"u{i}", group=None) for i in range(5)] + [
        ClipJob(path="clip.boom", utt_id="u5")]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> type[StubPipeline]:
    monkeypatch.setattr(ray_actors, "FacePipeline", StubPipeline)
    monkeypatch.setattr(steps, "FacePipeline", StubPipeline)
    StubPipeline.built = 0
    return StubPipeline


def _cfg(**kw) -> Stage1Config:
    return from_dict(Stage1Config, {"identity": {"scope": "none"}, **kw}, "stage1")


def test_default_path_never_imports_ray(stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` would raise ImportError
    with ClipRunner(_cfg(), workers=1) as runner:
        out = [(j.utt_id, r.record) for j, r in runner.map(_jobs())]
    assert [u for u, _ in out] == [f"u{i}" for i in range(6)]
    assert out[0][1]["t"] == [1.0, 2.0, 3.0] and out[5][1]["status"] == "error"


def test_ray_missing_is_a_clear_error(stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    runner = ClipRunner(_cfg(executor="ray"))
    with pytest.raises(RuntimeError, match=r"stage1\.executor is 'ray' but the ray package is not installed: pip"):
        runner.__enter__()


def test_ray_backend_plumbing(stub, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRay(cpus=3.0)
    monkeypatch.setitem(sys.modules, "ray", fake)
    cfg = _cfg(executor="ray", torch_threads=1, ray={"address": "auto", "max_retries": 2})
    with ClipRunner(cfg, workers=7) as runner:  # `workers` is the local pool's: not used by Ray
        assert fake.inits == ["auto"] and runner._backend.slots == 3 and stub.built == 3
        assert fake.options == {"num_cpus": 1, "num_gpus": 0.0, "max_restarts": 2, "max_task_retries": 2}
        out = [(j.utt_id, r.record) for j, r in runner.map(_jobs())]
    assert [u for u, _ in out] == [f"u{i}" for i in range(6)]
    assert out[0][1] == {"utt_id": "u0", "status": "ok", "t": [1.0, 2.0, 3.0]}
    assert out[5][1]["status"] == "error" and "RuntimeError: cannot decode" in out[5][1]["reason"]
    assert len({a for a, _ in fake.calls}) == 3, "the clips are spread over the actors"
    assert fake.killed == 3 and fake.shutdowns == 1 and not fake.is_initialized()


def test_ray_backend_joins_a_running_session(stub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray session of the caller is used as is and left running; actors: 2 with 2 threads each."""
    fake = FakeRay(cpus=64.0)
    fake._up = True
    monkeypatch.setitem(sys.modules, "ray", fake)
    with ClipRunner(_cfg(executor="ray", torch_threads=2, ray={"actors": 2})) as runner:
        assert fake.inits == [] and runner._backend.slots == 2 and fake.options["num_cpus"] == 2
        assert [j.utt_id for j, _ in runner.map(_jobs()[:2])] == ["u0", "u1"]
    assert fake.killed == 2 and fake.shutdowns == 0 and fake.is_initialized()


def test_ray_backend_needs_room_for_one_actor(stub, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRay(cpus=1.0)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(RuntimeError, match="no room for one actor of 2 CPU"):
        ClipRunner(_cfg(executor="ray", torch_threads=2)).__enter__()
    assert fake.shutdowns == 1, "a Ray instance started by the runner is shut down on failure"


# ------------------------------------------------------------------------------------------------
# Memory: the heap is trimmed every TRIM_EVERY steps of a process (issue 8, load; the local pool also
# replaces its workers: test_executors_local.py).


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux)")
def test_release_heap_returns_freed_memory_to_the_os() -> None:
    proc = psutil.Process()
    r0 = proc.memory_info().rss
    blocks = [np.ones(4000, np.uint8) for _ in range(50_000)]  # ~200 MB of small heap blocks
    keep = blocks[::200]  # survivors spread over the heap: glibc alone cannot shrink it
    del blocks
    held = proc.memory_info().rss - r0
    assert executors.release_heap() is True
    after = proc.memory_info().rss - r0
    assert held > 100 * 2**20, f"the freed blocks were not kept by the allocator ({held >> 20} MiB): test void"
    assert after < held / 4, f"{held >> 20} MiB of freed heap, {after >> 20} MiB still held after the trim"
    assert len(keep) == 250


def test_heap_released_every_trim_every_steps(stub, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(steps, "release_heap", lambda: calls.append(1) or True)
    monkeypatch.setattr(steps, "TRIM_EVERY", 4)
    monkeypatch.setattr(steps, "_steps", 0)
    with ClipRunner(_cfg(), workers=1) as runner:
        n = sum(1 for _ in runner.map(_jobs()))
    assert n == 6 and len(calls) == 2 * 6 // 4, "analyse and finish are steps: 12 steps, a trim every 4"
