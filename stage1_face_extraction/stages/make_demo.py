"""DVC stage: generate the embedded demo corpus (a MELD-shaped mini corpus) from packaged assets.

    python -m stage1_face_extraction.stages.make_demo --params params.yaml --out data/demo/MELD.Raw

Reads params section ``demo`` (:class:`~stage1_face_extraction.demo.generate.DemoConfig`), builds
the corpus in a temporary folder next to ``--out`` and renames it into place only when complete,
so an interrupted run never leaves a half-written corpus behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..common.config import load_section, to_dict
from ..common.runstate import ForeignOutputError, check_own_output

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="facialmmt demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="params file (section 'demo')")
    ap.add_argument("--out", default="data/demo/MELD.Raw", help="output folder (replaced atomically)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out`` (an existing ``out`` is removed after the swap)."""
    old: Path | None = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ..demo.generate import DemoConfig, generate_corpus

    cfg = load_section(args.params, "demo", DemoConfig)
    logger.debug("demo config: %s", json.dumps(to_dict(cfg)))
    out = Path(args.out)
    try:  # the corpus replaces --out: never the repository, nor a folder that is not a demo corpus
        check_own_output(out, "make_demo", legacy=lambda d: (d / "truth.json").is_file())
    except ForeignOutputError as exc:
        logger.error("%s", exc)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]:
        logger.info("removing %s (left by an interrupted run)", stale)  # one writer per --out at a time
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the corpus is an ordinary folder

    bar = None
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        def progress(done: int, total: int, key: str) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="clip", desc="demo corpus")
            bar.set_postfix_str(key, refresh=False)
            bar.update(1)

    try:
        summary = generate_corpus(cfg, tmp, progress=progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    _replace_dir(tmp, out)
    summary["out_dir"] = str(out)
    logger.info(
        "demo corpus ready: %s | clips %s | shots %s | %d frames | %.1f MB | %.1f s",
        out,
        summary["clips_per_split"],
        summary["shots_per_split"],
        summary["frames"],
        summary["bytes"] / 1e6,
        summary["seconds"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
