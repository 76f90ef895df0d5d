"""Finding one model file inside an insightface-style ONNX pack folder (e.g. an unpacked buffalo_l).

Used by the SCRFD detector and the ArcFace embedder. Weights are never bundled nor downloaded:
a missing file is a FileNotFoundError naming the path and where to get the pack.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path


def pack_hint(what: str, file: str) -> str:
    """Where to get the buffalo_l pack, for the error messages."""
    return (
        f"{what} weights are not bundled and are never downloaded: get buffalo_l.zip from the "
        "insightface model zoo (https://github.com/deepinsight/insightface/tree/master/model_zoo), "
        f"unzip it (e.g. to ~/.insightface/models/buffalo_l) and pass that folder or its {file} as model="
    )


def resolve_pack_file(
    model: str | os.PathLike,
    preferred: Sequence[str],
    candidates: Callable[[Path], list[Path]],
    what: str,
    role: str,
) -> Path:
    """``model`` as an .onnx file: a file path, or a pack folder holding one of ``preferred`` (first
    found wins) or exactly one file among ``candidates(folder)``.

    ``what`` names the model in messages ("SCRFD"), ``role`` the file kind ("detector").
    """
    p = Path(os.path.expanduser(str(model)))
    hint = pack_hint(what, preferred[0])
    if p.is_file():
        return p
    if p.is_dir():
        for name in preferred:
            if (p / name).is_file():
                return p / name
        found = candidates(p)
        if len(found) == 1:
            return found[0]
        present = ", ".join(f.name for f in sorted(p.glob("*.onnx"))) or "no .onnx files"
        raise FileNotFoundError(f"no {what} {role} .onnx ({preferred[0]}) in folder {p} ({present}). {hint}")
    raise FileNotFoundError(f"{what} model not found: {p}. {hint}")
