"""Contact sheets: a grid of face crops, each tile labelled (the pictures for people, never read by a stage)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def contact_sheet(
    crops: np.ndarray | Sequence[np.ndarray],
    cols: int = 8,
    labels: Sequence[int | str] | None = None,
    pad: int = 2,
) -> np.ndarray:
    """Grid of crops (N, H, W, 3) uint8 with a label (default: the index) on each tile -> (h, w, 3).

    Pass the source frame numbers as ``labels`` for the CLI's per-clip PNG (RGB in, RGB out).
    """
    crops = [np.asarray(c) for c in crops]
    if not crops:
        tile = np.zeros((64, 160, 3), np.uint8)
        cv2.putText(tile, "no faces", (8, 38), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
        return tile
    if labels is not None and len(labels) != len(crops):
        raise ValueError(f"{len(labels)} labels for {len(crops)} crops")
    h, w = crops[0].shape[:2]
    cols = max(1, min(int(cols), len(crops)))
    rows = -(-len(crops) // cols)
    sheet = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), np.uint8)
    scale = max(0.3, min(h, w) / 320.0)
    thick = max(1, int(round(scale * 2)))
    for i, c in enumerate(crops):
        if c.shape[:2] != (h, w):
            c = cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA)
        if c.ndim == 2:
            c = np.repeat(c[..., None], 3, axis=2)
        tile = np.ascontiguousarray(c[..., :3].astype(np.uint8))
        text = str(labels[i] if labels is not None else i)
        org = (3, int(14 * scale / 0.5) + 2)
        cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), thick, cv2.LINE_AA)
        r, q = divmod(i, cols)
        y0, x0 = pad + r * (h + pad), pad + q * (w + pad)
        sheet[y0 : y0 + h, x0 : x0 + w] = tile
    return sheet
