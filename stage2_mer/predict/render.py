"""The annotated clip of a prediction: every frame, the speaker's face boxed in the predicted
emotion's colour with its name and probability, the 7 probabilities as a bar chart in the top-right
corner, the utterance as a caption.

    frame = draw_prediction(image, probs, box=(x1, y1, x2, y2), t=1.25, caption='Rachel: "Oh my God!"')
    write_annotated("clip.mp4", "out/clip.annotated.mp4", probs, boxes, caption=..., fmt="mp4", audio=wave)

MP4: H.264 with the clip's audio, through ``stage1_face_extraction.video.write_video`` (streamed).
GIF: Pillow, every frame (scaled to ``gif_width``); a GIF holds all frames in memory while it is
written, so prefer MP4 for long clips.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import cv2
import numpy as np

from stage1_face_extraction.common.labels import EMOTIONS

log = logging.getLogger(__name__)

__all__ = ["EMOTION_COLOURS", "FORMATS", "annotated_frames", "draw_prediction", "write_annotated"]

#: RGB colour of each emotion (boxes, bars)
EMOTION_COLOURS: dict[str, tuple[int, int, int]] = {
    "neutral": (190, 190, 190),
    "surprise": (255, 150, 30),
    "fear": (170, 100, 255),
    "sadness": (60, 130, 255),
    "joy": (255, 225, 40),
    "disgust": (70, 200, 90),
    "anger": (255, 50, 50),
}
FORMATS = ("mp4", "gif")
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREY, BLACK = (255, 255, 255), (170, 170, 170), (0, 0, 0)

Box = tuple[float, float, float, float]


def _scale(image: np.ndarray) -> float:
    return max(0.5, min(image.shape[:2]) / 360.0)  # 1 at 360p


def _fit(text: str, width: int, fs: float, th: int) -> str:
    """``text`` cut (with ``...``) to at most ``width`` pixels in the given font."""
    text = text.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    if cv2.getTextSize(text, FONT, fs, th)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "...", FONT, fs, th)[0][0] > width:
        text = text[:-1]
    return text + "..."


def _label(img: np.ndarray, text: str, x: int, y: int, fs: float, th: int, bg, fg=BLACK) -> None:
    """``text`` on a filled ``bg`` box whose top-left corner is (x, y)."""
    (w, h), base = cv2.getTextSize(text, FONT, fs, th)
    pad = max(2, h // 4)
    cv2.rectangle(img, (x, y), (x + w + 2 * pad, y + h + base + 2 * pad), bg, -1)
    cv2.putText(img, text, (x + pad, y + pad + h), FONT, fs, fg, th, cv2.LINE_AA)


def _bar_chart(img: np.ndarray, probs: np.ndarray, s: float) -> None:
    """The 7 probabilities, one row each (name, bar, percent), on a darkened top-right panel."""
    H, W = img.shape[:2]
    pad, row, name_w, bar_w, pct_w = (max(2, round(v * s)) for v in (6, 15, 66, 80, 40))
    fs, th = 0.42 * s, max(1, round(s))
    pw = min(W - 2, 2 * pad + name_w + bar_w + pct_w)
    ph = min(H - 2, 2 * pad + row * len(EMOTIONS))
    x0, y0 = W - pw - 1, 1
    panel = img[y0 : y0 + ph, x0 : x0 + pw]
    panel[:] = (panel.astype(np.float32) * 0.3).astype(np.uint8)
    best = int(np.argmax(probs))
    for i, (name, p) in enumerate(zip(EMOTIONS, probs)):
        y = y0 + pad + i * row
        colour = EMOTION_COLOURS[name]
        cv2.putText(img, name, (x0 + pad, y + row - max(2, row // 4)), FONT, fs, WHITE if i == best else GREY, th,
                    cv2.LINE_AA)
        bx = x0 + pad + name_w
        cv2.rectangle(img, (bx, y + 2), (bx + bar_w, y + row - 2), (60, 60, 60), -1)
        if p > 0:
            cv2.rectangle(img, (bx, y + 2), (bx + max(1, round(bar_w * float(p))), y + row - 2), colour, -1)
        cv2.putText(img, f"{100 * float(p):.0f}%", (bx + bar_w + pad, y + row - max(2, row // 4)), FONT, fs,
                    WHITE if i == best else GREY, th, cv2.LINE_AA)


def draw_prediction(image: np.ndarray, probs: np.ndarray, box: Box | None = None, t: float | None = None,
                    caption: str | None = None, name: str | None = None, note: str | None = None) -> np.ndarray:
    """One annotated frame (a copy of ``image``, (H, W, 3) uint8 RGB).

    ``probs`` (7,) in EMOTIONS order; ``box`` the speaker's face in this frame (None: not on screen);
    ``t`` the frame time (drawn, so no two frames are alike); ``caption`` the utterance (bottom);
    ``name`` the speaker's name on the box label; ``note`` a warning line (e.g. no face found).
    The box is drawn last, over everything, in the predicted emotion's colour.
    """
    img = np.ascontiguousarray(image.copy())
    H, W = img.shape[:2]
    s = _scale(img)
    probs = np.asarray(probs, np.float32)
    best = int(np.argmax(probs))
    label, colour = EMOTIONS[best], EMOTION_COLOURS[EMOTIONS[best]]
    _bar_chart(img, probs, s)
    th = max(1, round(s))
    _label(img, f"{label} {100 * float(probs[best]):.0f}%", 4, 4, 0.7 * s, max(1, round(1.5 * s)), colour)
    y = 4 + round(30 * s)
    if t is not None:
        cv2.putText(img, f"{t:6.2f} s", (6, y + round(12 * s)), FONT, 0.42 * s, WHITE, th, cv2.LINE_AA)
        y += round(18 * s)
    if note:
        cv2.putText(img, _fit(note, W - 12, 0.42 * s, th), (6, y + round(12 * s)), FONT, 0.42 * s, (255, 120, 120), th,
                    cv2.LINE_AA)
    if caption:
        fs = 0.5 * s
        text = _fit(caption, W - 16, fs, th)
        (tw, h), base = cv2.getTextSize(text, FONT, fs, th)
        y1 = H - h - base - round(10 * s)
        strip = img[y1:H]
        strip[:] = (strip.astype(np.float32) * 0.4).astype(np.uint8)
        cv2.putText(img, text, ((W - tw) // 2, H - base - round(5 * s)), FONT, fs, WHITE, th, cv2.LINE_AA)
    if box is not None:
        x1, y1, x2, y2 = (round(v) for v in box)
        bt = max(2, round(3 * s))
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, bt)
        text = f"{name + ': ' if name else ''}{label} {100 * float(probs[best]):.0f}%"
        fs = 0.5 * s
        (_, h), base = cv2.getTextSize(text, FONT, fs, th)
        ly = y1 - bt - h - base - 2 * max(2, h // 4)
        _label(img, text, max(0, x1 - bt // 2), ly if ly >= 0 else y2 + bt, fs, th, colour)
    return img


def annotated_frames(video: str | Path, probs: np.ndarray, boxes: Mapping[int, Box], caption: str | None = None,
                     name: str | None = None, note: str | None = None) -> Iterator[np.ndarray]:
    """Every decoded frame of ``video``, annotated (``boxes``: source frame index -> box)."""
    from stage1_face_extraction.video import iter_frames

    for fr in iter_frames(video):
        yield draw_prediction(fr.image, probs, boxes.get(fr.index), t=fr.t, caption=caption, name=name, note=note)


def write_annotated(video: str | Path, out_path: str | Path, probs: np.ndarray, boxes: Mapping[int, Box],
                    caption: str | None = None, name: str | None = None, note: str | None = None, fmt: str = "mp4",
                    audio: np.ndarray | None = None, sr: int = 16000, gif_width: int = 480) -> Path:
    """Write the annotated clip (``fmt`` mp4 or gif) to ``out_path`` (via a temporary file)."""
    from stage1_face_extraction.video import probe, write_video

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = probe(video)
    frames = annotated_frames(video, probs, boxes, caption=caption, name=name, note=note)
    tmp = out_path.with_name(f"{out_path.stem}.tmp{out_path.suffix}")
    try:
        if fmt == "mp4":
            even = (f[: f.shape[0] - f.shape[0] % 2, : f.shape[1] - f.shape[1] % 2] for f in frames)  # yuv420p
            write_video(tmp, even, fps=info.fps, audio=audio if audio is not None and len(audio) else None, sr=sr,
                        crf=23)
        else:
            from PIL import Image

            scale = min(1.0, gif_width / max(1, info.width))
            size = (max(2, round(info.width * scale)), max(2, round(info.height * scale)))

            def pil(f: np.ndarray) -> Image.Image:
                if (f.shape[1], f.shape[0]) != size:
                    f = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
                return Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE)  # fast, per frame

            it = (pil(f) for f in frames)
            first = next(it)
            first.save(tmp, format="GIF", save_all=True, append_images=it, duration=round(1000 / info.fps), loop=0)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s", out_path)
    return out_path
