"""Composition of demo-corpus frames: a room, 1-3 characters, a talking mouth, a drifting camera.

A *shot* is a fixed framing: a background and a list of :class:`Placement` (a character scaled by
``scale`` with its cut-out's top-left corner at ``(x, y)`` in frame pixels). Every frame of the
shot is rendered by :meth:`Shot.render` from the per-character mouth openings (0 = closed, 1 = wide
open) and an integer camera drift. The truth face box of a character is its MTCNN cut-out box
mapped through the placement transform ``p_frame = scale * p_cutout + (x, y) - drift``.

Only the mouth region moves: the area between the mouth corners and the chin is pulled down (a jaw
drop, with a smooth fall-off towards the cheeks and the neck) and the gap is filled with a dark
inner mouth with a hint of upper teeth. A listener keeps a mouth opening of 0 unless the caller
passes one (the "talking over" variant).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .assets import CUTOUT_H, FACE_CY, Character

logger = logging.getLogger(__name__)

INNER_MOUTH_RGB = np.array([52.0, 18.0, 20.0], np.float32)
TEETH_RGB = np.array([214.0, 206.0, 192.0], np.float32)


@dataclass
class SceneConfig:
    """Frame geometry and mouth animation strength."""

    width: int = 640
    height: int = 360
    margin: int = 12  # background padding that camera drift may reveal (px)
    mouth_max_open: float = 0.11  # jaw drop at full opening, as a fraction of the face height


@dataclass
class Placement:
    """One character in one shot."""

    character: Character
    scale: float  # cut-out pixels -> frame pixels
    x: int  # top-left of the scaled cut-out in frame pixels (before drift)
    y: int

    def face_box(self, drift: tuple[int, int] = (0, 0)) -> np.ndarray:
        """(4,) float32 MTCNN face box in frame pixels."""
        b = self.character.box.astype(np.float64) * self.scale
        off = np.array([self.x - drift[0], self.y - drift[1]] * 2, np.float64)
        return (b + off).astype(np.float32)


@dataclass
class FaceTruth:
    """A face visible in one rendered frame."""

    name: str
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in frame pixels
    speaker: bool
    mouth_open: float


# --------------------------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------------------------

_WALL_COLOURS = np.array(
    [[196, 160, 120], [170, 140, 110], [150, 160, 150], [200, 180, 150], [140, 150, 170], [185, 150, 130]],
    np.float32,
)


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A blurred "room": wall gradient, window, door, picture frames, lamp glow, couch, grain.

    Returns (height, width, 3) uint8 RGB. Shapes are soft (heavy blur, like a shallow depth of
    field) so nothing in the room looks like a face to a detector.
    """
    h, w = height, width
    top, bottom = _WALL_COLOURS[rng.choice(len(_WALL_COLOURS), 2, replace=False)]
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = (top * (1.0 - ramp) + bottom * ramp * 0.85) * np.ones((1, w, 1), np.float32)  # (h, w, 3)
    side = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :, None]
    img *= 1.0 - 0.12 * side**2 + 0.05 * float(rng.uniform(-1, 1)) * side

    def rect(x0: float, y0: float, x1: float, y1: float, colour: np.ndarray, thick: int = -1) -> None:
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), colour.tolist(), thick)

    # window: bright pane with bars
    wx = float(rng.uniform(0.05, 0.75)) * w
    ww, wh = float(rng.uniform(0.14, 0.22)) * w, float(rng.uniform(0.30, 0.42)) * h
    wy = float(rng.uniform(0.08, 0.2)) * h
    rect(wx, wy, wx + ww, wy + wh, np.array([236, 238, 240], np.float32))
    rect(wx, wy, wx + ww, wy + wh, np.array([120, 95, 70], np.float32), thick=max(2, w // 160))
    rect(wx + ww / 2 - 1, wy, wx + ww / 2 + 1, wy + wh, np.array([120, 95, 70], np.float32))
    # door
    dx = float(rng.uniform(0.0, 0.9)) * w
    rect(dx, 0.12 * h, dx + 0.13 * w, h, np.array([110, 80, 60], np.float32) * float(rng.uniform(0.8, 1.2)))
    # picture frames: in separate sixths of the wall, never overlapping (two dark blobs one above
    # the other can look like eyes and nose to a face detector)
    for slot in rng.choice(6, size=int(rng.integers(1, 4)), replace=False):
        pw, ph = float(rng.uniform(0.06, 0.11)) * w, float(rng.uniform(0.08, 0.16)) * h
        px = (float(slot) + float(rng.uniform(0.0, 1.0 - pw / w * 6.0))) * w / 6.0
        py = float(rng.uniform(0.05, 0.30)) * h
        colour = rng.uniform(60, 200, 3).astype(np.float32)
        rect(px, py, px + pw, py + ph, colour)
        rect(px, py, px + pw, py + ph, np.array([60, 45, 35], np.float32), thick=3)
    # couch along the bottom
    cy = float(rng.uniform(0.62, 0.72)) * h
    couch = rng.uniform(70, 150, 3).astype(np.float32)
    rect(0.05 * w, cy, 0.95 * w, h, couch)
    rect(0.02 * w, cy - 0.06 * h, 0.98 * w, cy + 0.05 * h, couch * 0.85)
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=max(1.0, w / 220.0))
    # lamp glow
    gx, gy = float(rng.uniform(0.1, 0.9)) * w, float(rng.uniform(0.05, 0.3)) * h
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    glow = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2.0 * (0.12 * w) ** 2))
    img += glow[..., None] * np.array([60, 50, 25], np.float32)
    # low-frequency grain (wall texture)
    grain = cv2.resize(rng.normal(0.0, 1.0, (h // 8 + 1, w // 8 + 1)).astype(np.float32), (w, h))
    img += grain[..., None] * 4.0
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def zoomed(background: np.ndarray, centre_x: float, zoom: float, out_w: int, out_h: int) -> np.ndarray:
    """(out_h, out_w, 3) uint8 view of ``background`` magnified ``zoom`` times around ``centre_x``
    (a close-up of the same room, softened a little more)."""
    h, w = background.shape[:2]
    cw, ch = w / zoom, h / zoom
    x0 = float(np.clip(centre_x - cw / 2.0, 0.0, w - cw))
    y0 = (h - ch) * 0.3
    m = np.array([[zoom, 0.0, -x0 * zoom], [0.0, zoom, -y0 * zoom]], np.float64)
    view = cv2.warpAffine(background, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return cv2.GaussianBlur(view, (0, 0), sigmaX=1.5)


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


def place(character: Character, face_h: float, centre_x: float, frame_h: int, sink: float = 0.0) -> Placement:
    """Placement of ``character`` with face height ``face_h`` px, face centred at ``centre_x``,
    cut-out bottom at the frame bottom (lowered by ``sink`` face heights: shoulders cut off)."""
    scale = face_h / character.face_h
    cut_h, cut_w = character.rgb.shape[:2]
    face_cx = (character.box[0] + character.box[2]) / 2.0 * scale
    x = int(round(centre_x - face_cx))
    y = int(round(frame_h - cut_h * scale + sink * face_h))
    return Placement(character=character, scale=scale, x=x, y=y)


def wide_layout(
    characters: Sequence[Character],
    rng: np.random.Generator,
    width: int,
    height: int,
    face_h_range: tuple[float, float],
) -> list[Placement]:
    """2-3 characters side by side, left to right in the given order."""
    n = len(characters)
    if not 1 <= n <= 3:
        raise ValueError(f"a wide shot holds 1-3 characters, got {n}")
    slots = {1: (0.5,), 2: (0.3, 0.7), 3: (0.19, 0.5, 0.81)}[n]
    lo, hi = face_h_range
    if n == 3:
        hi = lo + (hi - lo) * 0.6  # three people: the camera is further away
    out = []
    for c, s in zip(characters, slots, strict=True):
        fh = float(rng.uniform(lo, hi))
        cx = s * width + float(rng.uniform(-0.025, 0.025)) * width
        out.append(place(c, fh, cx, height, sink=float(rng.uniform(0.0, 0.25))))
    return out


def closeup_layout(character: Character, rng: np.random.Generator, width: int, height: int, face_h: float) -> Placement:
    """One character, big and roughly centred."""
    cx = width * float(rng.uniform(0.42, 0.58))
    # raise the face so it sits in the upper-middle of the frame whatever the face height
    sink = max(0.0, (CUTOUT_H - FACE_CY) - 0.55 * height / face_h)
    return place(character, face_h, cx, height, sink=sink)


# --------------------------------------------------------------------------------------------
# Sprites and mouth animation
# --------------------------------------------------------------------------------------------


@dataclass
class _Sprite:
    placement: Placement
    rgb: np.ndarray  # (h, w, 3) float32 scaled cut-out
    alpha: np.ndarray  # (h, w, 1) float32
    premul: np.ndarray  # (h, w, 3) float32 rgb * alpha (the still sprite, ready to composite)
    inv_alpha: np.ndarray  # (h, w, 1) float32 1 - alpha
    box: np.ndarray  # (4,) float64 face box in sprite pixels
    landmarks: np.ndarray  # (5, 2) float64 in sprite pixels


def _make_sprite(p: Placement) -> _Sprite:
    c = p.character
    h0, w0 = c.rgb.shape[:2]
    w1, h1 = max(1, round(w0 * p.scale)), max(1, round(h0 * p.scale))
    interp = cv2.INTER_AREA if p.scale < 1.0 else cv2.INTER_CUBIC
    rgb = cv2.resize(c.rgb, (w1, h1), interpolation=interp).astype(np.float32)
    alpha = np.clip(cv2.resize(c.alpha, (w1, h1), interpolation=interp), 0.0, 1.0)[..., None].astype(np.float32)
    return _Sprite(
        placement=p,
        rgb=rgb,
        alpha=alpha,
        premul=rgb * alpha,
        inv_alpha=1.0 - alpha,
        box=c.box.astype(np.float64) * p.scale,
        landmarks=c.landmarks.astype(np.float64) * p.scale,
    )


def open_mouth(sprite: _Sprite, opening: float, max_open: float) -> np.ndarray:
    """(h, w, 3) float32 copy of the sprite's pixels with the mouth opened by ``opening`` in [0, 1]."""
    rgb = sprite.rgb
    if opening <= 1e-3:
        return rgb
    box, lm = sprite.box, sprite.landmarks
    fh, fw = box[3] - box[1], box[2] - box[0]
    left, right = lm[3], lm[4]
    mcx, mcy = (left[0] + right[0]) / 2.0, (left[1] + right[1]) / 2.0
    mw = max(abs(right[0] - left[0]), 0.28 * fw)
    drop = float(opening) * max_open * fh  # px jaw drop
    # region of interest: between the cheeks, from just above the mouth to below the chin
    x0, x1 = int(max(0, mcx - 0.5 * mw - 0.3 * fw)), int(min(rgb.shape[1], mcx + 0.5 * mw + 0.3 * fw + 1))
    y0, y1 = int(max(0, mcy - 0.05 * fh)), int(min(rgb.shape[0], box[3] + 0.45 * fh + drop))
    if x1 <= x0 or y1 <= y0:
        return rgb
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    # horizontal weight: 1 across the mouth, cosine fall-off to 0 at the cheeks
    dx = np.abs(xx - mcx) - 0.5 * mw
    wx = np.where(dx <= 0.0, 1.0, 0.5 + 0.5 * np.cos(np.pi * np.clip(dx / (0.3 * fw), 0.0, 1.0)))
    # vertical weight: rises just below the mouth line, 1 down to the chin, fades into the neck
    rise = np.clip((yy - (mcy - 0.02 * fh)) / (0.10 * fh), 0.0, 1.0)
    fade = np.clip(1.0 - (yy - box[3]) / (0.40 * fh), 0.0, 1.0)
    wy = rise * rise * (3.0 - 2.0 * rise) * fade
    map_y = (yy - drop * wx * wy).astype(np.float32)
    roi = cv2.remap(rgb, xx, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # inner mouth: a dark ellipse filling the gap, upper teeth along its top
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    centre = (float(mcx - x0), float(mcy - y0 + 0.5 * drop))
    axes = (float(0.40 * mw * (0.85 + 0.15 * opening)), float(max(0.5, 0.5 * drop)))
    cv2.ellipse(mask, (centre, (2 * axes[0], 2 * axes[1]), 0.0), 1.0, -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(0.6, 0.01 * fh))[..., None]
    teeth = np.clip(1.0 - (yy - (mcy - 0.01 * fh)) / max(1.0, 0.22 * drop), 0.0, 1.0)[..., None]
    inner = INNER_MOUTH_RGB * (1.0 - teeth) + TEETH_RGB * teeth
    roi = roi * (1.0 - mask) + inner * mask
    out = rgb.copy()
    out[y0:y1, x0:x1] = roi
    return out


# --------------------------------------------------------------------------------------------
# Shots
# --------------------------------------------------------------------------------------------


class Shot:
    """A fixed framing that renders frames from mouth openings and a camera drift."""

    def __init__(self, background: np.ndarray, placements: Sequence[Placement], cfg: SceneConfig):
        """background: (H + 2 * margin, W + 2 * margin, 3) uint8; placements drawn in order."""
        need = (cfg.height + 2 * cfg.margin, cfg.width + 2 * cfg.margin)
        if background.shape[:2] != need:
            raise ValueError(f"background must be {need[1]}x{need[0]}, got {background.shape[1]}x{background.shape[0]}")
        self.cfg = cfg
        self.background = np.ascontiguousarray(background, dtype=np.uint8)
        self.sprites = [_make_sprite(p) for p in placements]

    @property
    def names(self) -> list[str]:
        return [s.placement.character.name for s in self.sprites]

    def render(
        self,
        mouth_open: Mapping[str, float],
        speaker: str | None,
        drift: tuple[int, int] = (0, 0),
    ) -> tuple[np.ndarray, list[FaceTruth]]:
        """One frame: (H, W, 3) uint8 RGB and the truth of every visible face.

        mouth_open: opening in [0, 1] per character name (missing = closed); speaker: the name of
        the person talking (only used for the truth flag); drift: camera offset (px), |d| <= margin.
        """
        cfg = self.cfg
        m = cfg.margin
        ddx, ddy = int(np.clip(drift[0], -m, m)), int(np.clip(drift[1], -m, m))
        frame = self.background[m + ddy : m + ddy + cfg.height, m + ddx : m + ddx + cfg.width].copy()
        faces: list[FaceTruth] = []
        for s in self.sprites:
            p = s.placement
            name = p.character.name
            opening = float(np.clip(mouth_open.get(name, 0.0), 0.0, 1.0))
            premul = s.premul if opening <= 1e-3 else open_mouth(s, opening, cfg.mouth_max_open) * s.alpha
            x, y = p.x - ddx, p.y - ddy
            h, w = premul.shape[:2]
            fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(cfg.width, x + w), min(cfg.height, y + h)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
            region *= s.inv_alpha[fy0 - y : fy1 - y, fx0 - x : fx1 - x]
            region += premul[fy0 - y : fy1 - y, fx0 - x : fx1 - x] + 0.5
            frame[fy0:fy1, fx0:fx1] = np.clip(region, 0.0, 255.0).astype(np.uint8)
            box = p.face_box((ddx, ddy))
            if box[2] > 0 and box[0] < cfg.width and box[3] > 0 and box[1] < cfg.height:
                faces.append(FaceTruth(name=name, box=box, speaker=name == speaker, mouth_open=opening))
        return frame, faces


def drift_path(rng: np.random.Generator, n_frames: int, fps: float, amplitude: float) -> np.ndarray:
    """(n_frames, 2) int camera offsets: a slow sinusoidal sway of at most ``amplitude`` px."""
    if amplitude <= 0.0 or n_frames == 0:
        return np.zeros((n_frames, 2), np.int64)
    t = np.arange(n_frames, dtype=np.float64) / fps
    period = rng.uniform(5.0, 9.0, 2)
    phase = rng.uniform(0.0, 2.0 * np.pi, 2)
    amp = amplitude * rng.uniform(0.4, 1.0, 2) * np.array([1.0, 0.5])
    path = amp[None, :] * np.sin(2.0 * np.pi * t[:, None] / period[None, :] + phase[None, :])
    return np.round(path - path[:1]).astype(np.int64)
