"""Per-clip step timings and the ``stage1.max_clip_seconds`` deadline (pure logic, no models).

One :class:`ClipClock` follows one clip through :class:`~stage1_face_extraction.pipeline.FacePipeline`:
it adds the seconds of each step to a ``timings`` dict (``decode_s``, ``shots_s``, ``detect_s``, ``track_s``,
``asd_s``, ``identity_s``, ``crop_s``: the profile that ``timings.jsonl`` and
``benchmarks/stage1_speed.py`` report) and, with a limit, raises :class:`ClipTimeout` once the
clip's processing has taken longer than the limit.

Why a cooperative deadline and not a worker process that gets killed: the limit must hold for
``workers: 1`` (in this process), for the local pool and for Ray actors alike, and killing a worker
would throw away its loaded models (seconds to reload), and with Ray trigger its restart-and-retry
logic. Instead the pipeline checks the clock between steps and after every decoded frame of its
three passes, so a slow clip stops within one step of the limit: the clock cannot interrupt a single
call (one detector batch, one speaking-score call, one identity-embedder call, a decoder stuck inside
FFmpeg), which bounds the overshoot by the longest such call (about a second on 2 CPU cores at
1280x720). The raised :class:`ClipTimeout` is an ordinary exception: ``executors`` records the clip
with status ``error`` and ``reason`` ``"ClipTimeout: ..."``, and the run goes on with the next clip.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

#: the profile's steps, in pipeline order (seconds per clip in ``record["timings"]``)
STEPS = ("decode_s", "shots_s", "detect_s", "track_s", "asd_s", "identity_s", "crop_s")


class ClipTimeout(RuntimeError):
    """A clip's processing took longer than ``stage1.max_clip_seconds``."""


def check_limit(limit: float | None) -> float | None:
    """``stage1.max_clip_seconds`` normalised: None for no limit (null or 0), else a positive float;
    anything else raises ValueError."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
        raise ValueError(
            f"stage1.max_clip_seconds must be null, 0 (no limit) or a number of seconds > 0, got {limit!r}"
        )
    return float(limit) if limit > 0 else None


class ClipClock:
    """Timings of one clip's steps and its deadline.

    ``limit``: seconds the clip may take (None: no limit); ``spent``: seconds it already took
    before this clock started (the analysis, when a clip is finished in a second call, maybe in
    another worker); ``clock``: the time source (``time.perf_counter``).
    """

    def __init__(self, limit: float | None = None, spent: float = 0.0, clock=time.perf_counter) -> None:
        self.limit = limit
        self.spent = spent
        self._clock = clock
        self._start = clock()
        self.timings: dict[str, float] = {}

    def elapsed(self) -> float:
        """Seconds of processing so far, ``spent`` included."""
        return self.spent + self._clock() - self._start

    def check(self, where: str) -> None:
        """Raise :class:`ClipTimeout` when the clip is past its limit (``where``: the step, for the message)."""
        if self.limit is None:
            return
        took = self.elapsed()
        if took > self.limit:
            raise ClipTimeout(f"processing exceeded stage1.max_clip_seconds ({self.limit:g} s): stopped after "
                              f"{took:.3g} s, in {where}")

    def add(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def _others(self, key: str) -> float:
        return sum(v for k, v in self.timings.items() if k != key)

    @contextmanager
    def step(self, key: str) -> Iterator[None]:
        """Time the block into ``key``, less the seconds that steps nested in it added to their own
        keys meanwhile (decoding inside a detection pass), then check the deadline."""
        t0, nested = self._clock(), self._others(key)
        try:
            yield
        finally:
            self.add(key, self._clock() - t0 - (self._others(key) - nested))
        self.check(key.removesuffix("_s"))

    def frames(self, items: Iterable[T], key: str = "decode_s", where: str = "decoding") -> Iterator[T]:
        """``items`` (decoded frames) with the time spent producing each added to ``key`` (less what
        nested steps or frame streams added to their own keys meanwhile: shot detection over decoded
        frames) and the deadline checked before each is handed out."""
        it = iter(items)
        try:
            while True:
                t0, nested = self._clock(), self._others(key)
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self.add(key, self._clock() - t0 - (self._others(key) - nested))
                self.check(where)
                yield item
        finally:
            close = getattr(it, "close", None)
            if close is not None:  # the decoder's container, now rather than at garbage collection
                close()
