"""Active-speaker scorer interface, face-input declaration, patch extraction and the registry.

A scorer turns, for ONE clip, the face patches of every track plus the clip audio into a per-frame
speaking score in [0, 1] for each track. Each scorer *declares* the face input it wants with a
:class:`FaceInputSpec`; the pipeline cuts exactly those patches with :func:`extract_patch` for every
track row and calls :meth:`ActiveSpeakerScorer.score` once for all tracks of the clip::

    scorer = create_scorer("av_sync", window_s=1.5)
    spec = scorer.input_spec
    patches = [np.stack([extract_patch(img, box, lm, spec) for img, box, lm in rows]) ...]
    scores = scorer.score(patches, frame_times, audio, sr=16000, fps=info.fps)

Learned scorers (TalkNet, Light-ASD: 25 fps grey 112x112 face crops + MFCC) register the same
way, declare ``FaceInputSpec(kind="face", size=(112, 112), gray=True, fps=25.0)`` and load their
weights from a local path given in their config.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from ..align import BOX_ASPECT, TEMPLATE_UV, similarity_transform, warp_crop
from ..common.local_weights import LocatesWeights
from ..common.registry import Registry

logger = logging.getLogger(__name__)

PATCH_KINDS = ("mouth", "face")


@dataclass(frozen=True)
class FaceInputSpec:
    """What face patch a scorer wants for every track row.

    kind: ``"mouth"`` - the mouth region. With landmarks: a 5-point similarity fit to the
        alignment template (``align.TEMPLATE_UV``) places it - ``scale`` template mouth widths wide,
        ``size``-aspect tall, centred a little below the mouth-corner midpoint, rotated with the head
        (fits off by > 2x in scale from the box or > 30 deg of roll are ignored). Without landmarks:
        the same region from the box (about 64% of the box width, centred, covering its lower ~35%).
        ``"face"`` - an axis-aligned square, ``scale`` times the longer box side, centred
        ``offset`` longer box sides below the box centre (TalkNet / Light-ASD: scale 0.7,
        offset 0.2, a mouth-centred lower-face crop; see ``asd/learned.py``).
    size: (h, w) of the patch in pixels.
    gray: True -> (h, w) luma; False -> (h, w, 3) RGB. Values are float32 in [0, 1].
    scale: crop extent, see ``kind`` (None -> 1.6 for mouth, 1.0 for face).
    offset: vertical shift of the ``"face"`` crop centre in longer box sides (positive = down).
    fps: frame rate the scorer's model works at (learned scorers: 25.0); None = native rate. The
        pipeline hands patches at the native rate with their times; a scorer that declares a rate
        resamples them itself and returns scores at the native frames (``asd.learned``).
    """

    kind: str = "mouth"
    size: tuple[int, int] = (32, 48)
    gray: bool = True
    scale: float | None = None
    fps: float | None = None
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in PATCH_KINDS:
            raise ValueError(f"FaceInputSpec.kind must be one of {PATCH_KINDS}, got {self.kind!r}")
        if len(self.size) != 2 or min(self.size) < 4:
            raise ValueError(f"FaceInputSpec.size must be (h, w) >= 4 px, got {self.size}")
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    @property
    def crop_scale(self) -> float:
        if self.scale is not None:
            return float(self.scale)
        return 1.6 if self.kind == "mouth" else 1.0


def _mouth_matrix(box: np.ndarray, landmarks: np.ndarray | None, spec: FaceInputSpec) -> np.ndarray:
    """Source->patch affine (2, 3) for the mouth region.

    With landmarks, a 5-point similarity fit to the alignment template (all five points, so the
    jitter of single landmarks averages out and the crop does not follow lip deformation) places
    the mouth; the crop is ``scale`` template mouth widths wide, centred 12% of its width below the
    template mouth-corner midpoint. Without landmarks (or when the fit disagrees with the box by
    more than 2x in scale or 30 deg in roll) the box gives the lower-face region.
    """
    h, w = spec.size
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    bw = max(x2 - x1, 1.0)
    # template frame: units of the reference box width, isotropic
    tpl = TEMPLATE_UV.copy()
    tpl[:, 1] *= BOX_ASPECT
    mouth_c = (tpl[3] + tpl[4]) / 2.0
    mouth_w = float(tpl[4, 0] - tpl[3, 0])
    width_t = spec.crop_scale * mouth_w  # crop width in template units
    height_t = width_t * h / w
    centre_t = mouth_c + np.array([0.0, 0.12 * width_t])
    # template -> patch
    sx, sy = w / width_t, h / height_t
    to_patch = np.array([[sx, 0.0, w / 2.0 - sx * centre_t[0]], [0.0, sy, h / 2.0 - sy * centre_t[1]]])
    lm = None if landmarks is None else np.asarray(landmarks, np.float64)
    usable = lm is not None and lm.shape == (5, 2) and np.isfinite(lm).all()
    if usable and np.linalg.norm(lm[1] - lm[0]) > 1.0:
        src_to_t = similarity_transform(lm, tpl)  # source -> template units
        scale = float(np.hypot(*src_to_t[:, 0]))
        roll = float(np.degrees(np.arctan2(src_to_t[1, 0], src_to_t[0, 0])))
        if 0.5 < scale * bw < 2.0 and abs(roll) <= 30.0:
            return _compose(to_patch, src_to_t)
    # box: reference box width 1 at the box's scale, top-left at the box corner
    s = 1.0 / bw
    src_to_t = np.array([[s, 0.0, -s * x1], [0.0, s, -s * y1 + (BOX_ASPECT - (y2 - y1) / bw) / 2.0]])
    return _compose(to_patch, src_to_t)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affine of ``outer(inner(p))``."""
    a = outer[:, :2] @ inner[:, :2]
    b = outer[:, :2] @ inner[:, 2] + outer[:, 2]
    return np.hstack([a, b[:, None]])


def _face_matrix(box: np.ndarray, spec: FaceInputSpec) -> np.ndarray:
    h, w = spec.size
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    side = max(x2 - x1, y2 - y1, 1.0) * spec.crop_scale
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0 + spec.offset * max(x2 - x1, y2 - y1, 1.0)
    sx, sy = w / side, h / side
    return np.array([[sx, 0.0, w / 2.0 - sx * cx], [0.0, sy, h / 2.0 - sy * cy]])


def extract_patch(
    image: np.ndarray,
    box: np.ndarray,
    landmarks: np.ndarray | None,
    spec: FaceInputSpec,
) -> np.ndarray:
    """Cut the patch ``spec`` asks for from one frame.

    image: (H, W, 3) uint8 RGB; box: (4,) x1, y1, x2, y2; landmarks: (5, 2) or None (NaN = None).
    Returns (h, w) float32 in [0, 1] when ``spec.gray`` else (h, w, 3). Outside the frame: edge
    pixels repeated (a black border would look like motion when the face nears the frame edge).
    """
    box = np.asarray(box, np.float64).reshape(4)
    if spec.kind == "mouth":
        m = _mouth_matrix(box, landmarks, spec)
    else:
        m = _face_matrix(box, spec)
    patch = warp_crop(image, m, spec.size, border="replicate")  # only the needed region is touched
    if spec.gray and patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    elif not spec.gray and patch.ndim == 2:
        patch = cv2.cvtColor(patch, cv2.COLOR_GRAY2RGB)
    return patch.astype(np.float32) * np.float32(1.0 / 255.0)


class ActiveSpeakerScorer(LocatesWeights, abc.ABC):
    """Base class. Subclasses set ``Config`` (a dataclass) and implement ``input_spec``/``score``.

    ``last_info`` holds facts about the latest :meth:`score` call (e.g. ``audio_used``) for the
    manifest; it is per-instance state, so use one scorer per worker.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = type(None)

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.last_info: dict[str, Any] = {}

    @property
    @abc.abstractmethod
    def input_spec(self) -> FaceInputSpec:
        """The patches this scorer wants."""

    @property
    def uses_audio(self) -> bool:
        return True

    @abc.abstractmethod
    def score(
        self,
        tracks_patches: list[np.ndarray],
        frame_times: list[np.ndarray],
        audio: np.ndarray | None,
        sr: int,
        fps: float,
    ) -> list[np.ndarray]:
        """Per-frame speaking scores.

        tracks_patches: per track (T_i, h, w) float32 (or (T_i, h, w, 3) when the spec is RGB);
        frame_times: per track (T_i,) seconds on the clip time base (audio sample 0 = 0.0 s);
        audio: (n,) float32 mono or None; sr: its sample rate; fps: the video frame rate.
        Returns per track (T_i,) float32 in [0, 1].
        """

    @staticmethod
    def check_inputs(tracks_patches: list[np.ndarray], frame_times: list[np.ndarray]) -> None:
        if len(tracks_patches) != len(frame_times):
            raise ValueError(f"{len(tracks_patches)} patch arrays for {len(frame_times)} time arrays")
        for i, (p, t) in enumerate(zip(tracks_patches, frame_times)):
            if p.ndim not in (3, 4) or len(p) != len(t):
                raise ValueError(f"track {i}: patches {p.shape} do not match times {np.shape(t)}")


_REGISTRY: Registry = Registry("active-speaker scorer", "scorers", ActiveSpeakerScorer,
                               config_of=lambda cls: cls.Config, where="asd")


def register_scorer(name: str) -> Callable[[type[ActiveSpeakerScorer]], type[ActiveSpeakerScorer]]:
    """Class decorator: ``@register_scorer("av_sync")``. The class needs a dataclass ``Config``."""
    register = _REGISTRY.register(name)

    def deco(cls: type[ActiveSpeakerScorer]) -> type[ActiveSpeakerScorer]:
        if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
            raise TypeError(f"{cls.__name__}.Config must be a dataclass")
        return register(cls)

    return deco


def list_scorers() -> list[str]:
    """Registered scorer names, sorted."""
    return _REGISTRY.names()


def scorer_class(name: str) -> type[ActiveSpeakerScorer]:
    """The class registered as ``name``; unknown names raise with the valid ones."""
    return _REGISTRY.get(name)


def create_scorer(name: str, **cfg: Any) -> ActiveSpeakerScorer:
    """Build a registered scorer; unknown names and unknown config keys raise ConfigError."""
    return _REGISTRY.create(name, cfg)


def validate_scorer(name: str, cfg: dict, where: str = "asd") -> None:
    """Check ``name`` is a registered scorer and ``cfg`` fits its ``Config`` (ConfigError otherwise);
    ``where`` prefixes the messages."""
    _REGISTRY.validate(name, cfg, where)
