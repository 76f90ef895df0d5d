"""Reference photos -> named embeddings, and track -> name matching.

``load_references`` accepts

* one image file: one name (``name`` or the file stem), the largest face of the photo;
* a folder of images: one name (``name`` or the folder name), one embedding per photo;
* a folder of ``NAME/`` sub-folders of images: one name per sub-folder (``name`` is ignored here:
  every name is loaded, so that the others can claim their own tracks).

Every photo must show a face (the largest one is taken); a photo without one raises
:class:`NoFaceError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .base import FaceEmbedder, distance, l2_normalize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_SIDE = 1024  # reference photos are resized so that their longer side is at most this


class NoFaceError(ValueError):
    """A reference image in which no face was found (``.path`` names it)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(f"no face found in reference image {self.path}")


def _reference_detector() -> Any:
    from ..detectors import create_detector

    return create_detector("mtcnn", min_score=0.9, min_face_size=40)


def read_rgb(path: Path | str, max_side: int = MAX_SIDE) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, shrunk to ``max_side``; ValueError when unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s < 1.0:
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def embed_image_faces(embedder: FaceEmbedder, detector: Any, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Detect and embed every face of ``image``: ``(boxes (N, 4), embeddings (N, D))``, largest face first.

    ``detector``: a stage-1 detector (None: ``create_detector('mtcnn')``).
    """
    detector = detector or _reference_detector()
    det = detector.detect([image])[0]
    if len(det) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0, embedder.dim), np.float32)
    b = det.boxes.astype(np.float32)
    order = np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")
    b = b[order]
    lm = det.landmarks[order] if det.landmarks is not None else None
    return b, embedder.embed([image] * len(b), b, lm)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def reference_layout(path_or_dir: str | Path) -> str:
    """'image', 'folder' (images directly inside) or 'named_folders' (NAME/ sub-folders); FileNotFoundError else."""
    path = Path(path_or_dir)
    if path.is_file():
        return "image"
    if not path.is_dir():
        raise FileNotFoundError(f"reference path {path} does not exist")
    if _images_in(path):
        return "folder"
    if any(sub.is_dir() and _images_in(sub) for sub in path.iterdir()):
        return "named_folders"
    raise FileNotFoundError(
        f"reference folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no NAME/ sub-folders of images"
    )


def load_references(
    path_or_dir: str | Path,
    name: str | None = None,
    embedder: FaceEmbedder | None = None,
    detector: Any = None,
) -> dict[str, np.ndarray]:
    """``{name: (K, D) unit embeddings}`` from reference photos (layouts: module docstring).

    Raises FileNotFoundError (path missing, or a folder without images), NoFaceError (a photo
    without a face), ValueError (an unreadable image).
    """
    path = Path(path_or_dir)
    if not path.exists():
        raise FileNotFoundError(f"reference path {path} does not exist")
    groups: dict[str, list[Path]] = {}
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"reference {path} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        groups[name or path.stem] = [path]
    else:
        flat = _images_in(path)
        if flat:
            groups[name or path.name] = flat
        else:
            for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                imgs = _images_in(sub)
                if imgs:
                    groups[sub.name] = imgs
        if not groups:
            raise FileNotFoundError(
                f"reference folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}) "
                "and no NAME/ sub-folders of images"
            )
    if embedder is None:
        from .base import create_embedder

        embedder = create_embedder("dlib_resnet")
    detector = detector or _reference_detector()
    out: dict[str, np.ndarray] = {}
    for who, files in groups.items():
        vecs = []
        for f in files:
            _, emb = embed_image_faces(embedder, detector, read_rgb(f))
            if len(emb) == 0:
                raise NoFaceError(f)
            vecs.append(emb[0])
        out[who] = np.stack(vecs).astype(np.float32)
    return out


def match_tracks(
    track_embeddings: dict[int, np.ndarray],
    references: dict[str, np.ndarray],
    threshold: float,
) -> dict[int, tuple[str, float]]:
    """Name each track whose embeddings look like a reference: ``{track_id: (name, score)}``.

    Per track, the mean of its (k, D) unit embeddings (re-normalised) is compared with every
    reference embedding; a name's distance is that to its NEAREST reference photo. The nearest name
    is kept when its distance < ``threshold``; ``score = 1 - distance / threshold`` in (0, 1]
    (1 = identical). Tracks without embeddings or without a close name are left out.
    """
    names = [n for n, e in references.items() if len(e)]
    out: dict[int, tuple[str, float]] = {}
    if not names:
        return out
    for tid, emb in track_embeddings.items():
        emb = np.asarray(emb, np.float32).reshape(-1, np.asarray(references[names[0]]).shape[-1])
        if len(emb) == 0:
            continue
        mean = l2_normalize(emb.mean(axis=0, keepdims=True))
        dists = [float(distance(mean, references[n]).min()) for n in names]
        best = int(np.argmin(dists))
        if dists[best] < threshold:
            out[tid] = (names[best], float(np.clip(1.0 - dists[best] / threshold, 0.0, 1.0)))
    return out
