"""PySceneDetect's AdaptiveDetector / ContentDetector as stage-1 shot detectors.

Package ``scenedetect-headless`` (requirements/extra.txt; it brings no OpenCV of its own beyond the
opencv-python-headless the stack has). Used through :func:`stage1_face_extraction.shots.shot_stream`
for ``stage1.shots.method`` ``scenedetect_adaptive`` / ``scenedetect_content``; options in
:class:`~stage1_face_extraction.shots.SceneDetectAdaptiveConfig` /
:class:`~stage1_face_extraction.shots.SceneDetectContentConfig`.

Frames are handed over the way scenedetect's own ``SceneManager`` does it: BGR, and resized
(linear interpolation) to ``downscale_width`` pixels wide when wider. A detector reports a cut at
the first frame of the new shot, but up to ``event_buffer_length`` frames after reading it; frame
``i``'s shot id is therefore final once frame ``i + event_buffer_length`` has been read.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from .shots import ShotConfig

logger = logging.getLogger(__name__)

__all__ = ["SceneDetectShots", "to_scenedetect_frame"]


def to_scenedetect_frame(image: np.ndarray, width: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> BGR, downscaled to ``width`` px wide when wider (aspect kept)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    h, w = image.shape[:2]
    if w <= width:
        return bgr
    factor = w / width
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)


class SceneDetectShots:
    """Streaming shot ids from a PySceneDetect detector: :meth:`push` frames, get the ids of the
    frames that became final back (in order); :meth:`finish` returns the rest."""

    def __init__(self, cfg: ShotConfig, fps: float = 25.0) -> None:
        # fps only labels scenedetect's timecodes: every length here is in frames
        from scenedetect import FrameTimecode
        from scenedetect.detectors import AdaptiveDetector, ContentDetector

        self._timecode = FrameTimecode
        self.fps = fps
        if cfg.method == "scenedetect_adaptive":
            c = cfg.scenedetect_adaptive
            self.detector = AdaptiveDetector(
                adaptive_threshold=c.adaptive_threshold, min_content_val=c.min_content_val,
                window_width=c.window_width, min_scene_len=c.min_scene_len, luma_only=c.luma_only,
            )
        elif cfg.method == "scenedetect_content":
            c = cfg.scenedetect_content
            self.detector = ContentDetector(threshold=c.threshold, min_scene_len=c.min_scene_len, luma_only=c.luma_only)
        else:
            raise ValueError(f"not a scenedetect method: {cfg.method!r}")
        self.width = c.downscale_width
        self.delay = int(self.detector.event_buffer_length)
        self.n_frames = 0  # frames pushed
        self._released = 0  # frames whose shot id was returned
        self._cuts: list[int] = []  # first frames of shots 1, 2, ...
        self._last = None

    def _add(self, cuts) -> None:
        for tc in cuts:
            f = int(tc.frame_num)
            if f <= 0 or (self._cuts and f <= self._cuts[-1]):
                continue
            if f < self._released:  # cannot happen within event_buffer_length; never rewrite ids
                logger.warning("scenedetect reported a cut at frame %d after its id was returned; ignored", f)
                continue
            self._cuts.append(f)
            logger.debug("cut before frame %d", f)

    def _release(self, upto: int) -> list[int]:
        ids = []
        for i in range(self._released, upto):
            ids.append(sum(1 for c in self._cuts if c <= i))
        self._released = max(self._released, upto)
        return ids

    def push(self, image: np.ndarray) -> list[int]:
        tc = self._timecode(self.n_frames, fps=self.fps)
        self._add(self.detector.process_frame(tc, to_scenedetect_frame(image, self.width)))
        self._last = tc
        self.n_frames += 1
        return self._release(self.n_frames - self.delay)

    def finish(self) -> list[int]:
        if self._last is not None:
            self._add(self.detector.post_process(self._last))
        return self._release(self.n_frames)
