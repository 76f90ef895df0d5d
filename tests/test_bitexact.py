"""Bit-exact media (issue 17, item 1): the demo corpus and every encode have the same bytes whatever
the machine's core count and CPU features.

* The tiny demo corpus generated in this process (1 rendering process) and in a subprocess with
  2 rendering processes and the CPU-specific code paths of oneDNN, MKL, ATen, numpy and OpenCV
  turned down to what an older x86-64 CPU has (their own environment switches): the same bytes,
  every file. Before issue 17, OpenCV's AVX2 / AVX-512 float kernels and MTCNN's float32
  convolutions changed 10 of the 13 files.
* ``write_video`` and the previews, run pinned to 1 and to 2 cores (x264 picks its thread count
  from the cores it may use): the same bytes, and no encoder version string in them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = {"seed": 3, "dialogues_per_split": {"train": 1, "dev": 1, "test": 1}, "utterances_min": 3,
        "utterances_max": 3, "duration_min_s": 1.5, "duration_max_s": 2.0}

#: what another x86-64 machine would run: no AVX-512 / AVX2 paths in the numeric libraries
OTHER_CPU = {
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ATEN_CPU_CAPABILITY": "default",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX512_SKX,AVX512_COMMON,AVX2,FMA3,AVX",
}

_GENERATE = """
import hashlib, json, sys
from pathlib import Path
from stage1_face_extraction.demo.generate import DemoConfig, generate_corpus
from stage1_face_extraction.common.config import from_dict

if __name__ == "__main__":
    out = Path(sys.argv[1])
    generate_corpus(from_dict(DemoConfig, json.loads(sys.argv[2]), "demo"), out)
"""


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _env(**extra: str) -> dict[str, str]:
    repo = Path(__file__).resolve().parents[1]
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo), **extra}


def test_demo_corpus_is_the_same_on_another_cpu_and_with_2_workers(tmp_path: Path) -> None:
    from stage1_face_extraction.common.config import from_dict
    from stage1_face_extraction.demo.generate import DemoConfig, generate_corpus

    here = tmp_path / "here"
    generate_corpus(from_dict(DemoConfig, {**TINY, "workers": 1}, "demo"), here)
    script = tmp_path / "generate.py"
    script.write_text(_GENERATE)
    other = tmp_path / "other"
    r = subprocess.run([sys.executable, str(script), str(other), json.dumps({**TINY, "workers": 2})],
                       env=_env(**OTHER_CPU), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _hashes(here), _hashes(other)
    assert len(a) == 13 and sorted(a) == sorted(b)
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, f"files that depend on the CPU or the worker count: {differ}"


_ENCODE = """
import os, sys
import numpy as np
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: int(sys.argv[2])]))
from stage1_face_extraction.video import write_video
rng = np.random.default_rng(0)
frames = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(24)]
t = np.arange(16000) / 16000
write_video(sys.argv[1] + "/clip.mp4", frames, 24, audio=(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
            sr=16000, preset="veryfast")
if len(sys.argv) > 3:  # a preview of that clip (no tracks: the frames annotated with the status)
    from stage1_face_extraction.pipeline import ClipResult
    from stage1_face_extraction.preview import write_preview
    res = ClipResult(record={"status": "no_face", "frames": []}, crops=np.zeros((0, 8, 8, 3), np.uint8))
    write_preview(sys.argv[1] + "/clip.mp4", res, sys.argv[1] + "/preview.mp4")
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to compare 1 and 2")
def test_encodes_do_not_depend_on_the_core_count(tmp_path: Path) -> None:
    script = tmp_path / "encode.py"
    script.write_text(_ENCODE)
    outs = {}
    for cores in (1, 2):
        d = tmp_path / f"cores{cores}"
        d.mkdir()
        r = subprocess.run([sys.executable, str(script), str(d), str(cores), "preview"], env=_env(),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        outs[cores] = {name: (d / name).read_bytes() for name in ("clip.mp4", "preview.mp4")}
    for name in ("clip.mp4", "preview.mp4"):
        one, two = outs[1][name], outs[2][name]
        assert b"threads=1 lookahead_threads=1" in one, name  # x264's options string
        assert b"Lavf" not in one and b"Lavc" not in one, f"{name}: an FFmpeg version string"
        assert one == two, f"{name}: the bytes depend on the core count"


def test_bitexact_options() -> None:
    from stage1_face_extraction import bitexact

    opts = bitexact.x264(23, "veryfast")
    assert opts["threads"] == "1" and "threads=1" in opts["x264-params"] and "bitexact" in opts["flags"]
    assert "bitexact" in bitexact.CONTAINER["fflags"] and "bitexact" in bitexact.AAC["flags"]
