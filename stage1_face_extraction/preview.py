"""Annotated preview video of one processed clip: every track boxed, the speaker highlighted,
the per-frame speaking score drawn as a bar under each box.

    write_preview(clip_path, result, "dia0_utt0.preview.mp4")
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from stage1_face_extraction import bitexact
from stage1_face_extraction.pipeline import ClipResult
from stage1_face_extraction.video import iter_frames, probe

log = logging.getLogger(__name__)

SPEAKER = (40, 220, 60)  # RGB
OTHER = (230, 200, 40)
SELECTED_FRAME = (255, 60, 60)


def annotate(image: np.ndarray, result: ClipResult, frame: int) -> np.ndarray:
    """Draw the tracks present at ``frame`` on a copy of ``image`` (H, W, 3) uint8 RGB."""
    out = image.copy()
    selected = {t["track"] for t in result.record.get("tracks", []) if t.get("selected")}
    picked = {f["frame"] for f in result.record.get("frames", [])}
    for t in result.tracks:
        r = t.row_of(frame)
        if r is None:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in t.boxes[r])
        colour = SPEAKER if t.track_id in selected else OTHER
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 3 if t.track_id in selected else 1)
        s = float(t.speaking[r]) if t.speaking is not None else 0.0
        w = max(1, x2 - x1)
        cv2.rectangle(out, (x1, y2 + 4), (x1 + w, y2 + 10), (60, 60, 60), -1)
        cv2.rectangle(out, (x1, y2 + 4), (x1 + int(w * s), y2 + 10), colour, -1)
        label = f"#{t.track_id} {s:.2f}" + (f" {t.identity}" if t.identity else "")
        cv2.putText(out, label, (x1, max(12, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    status = result.record.get("status", "")
    cv2.putText(
        out, f"frame {frame}  {status}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA
    )
    if frame in picked:
        cv2.circle(out, (out.shape[1] - 16, 16), 7, SELECTED_FRAME, -1)
    return out


def write_preview(clip_path: str | Path, result: ClipResult, out_path: str | Path, crf: int = 26) -> Path:
    """Re-decode ``clip_path`` and write the annotated H.264 MP4 (video only) to ``out_path``."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = probe(clip_path)
    rate = Fraction(info.fps).limit_denominator(1001)
    tmp = out_path.with_name(out_path.name + ".tmp.mp4")
    with av.open(str(tmp), "w", format="mp4", options=bitexact.CONTAINER) as container:
        # one x264 thread, no version strings: the same bytes whatever the machine's core count
        stream = container.add_stream("libx264", rate=rate, options=bitexact.x264(crf, "veryfast"))
        stream.width, stream.height = info.width - info.width % 2, info.height - info.height % 2
        stream.pix_fmt = "yuv420p"
        for fr in iter_frames(clip_path):
            img = annotate(fr.image, result, fr.index)[: stream.height, : stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(out_path)
    return out_path
