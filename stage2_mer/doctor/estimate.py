"""The run-time estimate per stage, from the workload, the configuration and ONE table of rates
(:data:`RATES`); stage 1's from the measured whole-stage benchmark :data:`STAGE1_BENCHMARK`
(``benchmarks/stage1_speed.py --stage --json``) when that file is there, its machine and date named
in the report (else the assumed :data:`STAGE1_PARTS`, and the report says so). Also the bytes each
output will take (:func:`output_bytes`, for the disk check)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .base import OK, SPLITS, WARN, Checkup, fmt_duration
from .data import Workload

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
        "measured: fine-tuning all-MiniLM-L6-v2 (22.7 M parameters) on MELD took ~10 min "
        "per epoch of 9,989 utterances on 2 cores; scaled by 22.7 M / encoder parameters; "
        "evaluation (forward only) taken as 3x faster",
    ),
    "train.fer_forward": Rate(12.0, "faces/s", 50.0, "measured: Swin-Tiny forward, batch 16 at 224 in 1.33 s"),
    "train.fer_step": Rate(3.6, "faces/s", 50.0, "measured: Swin-Tiny train step, batch 16 at 224 in 4.42 s"),
}
REF_AUDIO_PARAMS = 95e6  # wav2vec2-base
REF_TEXT_PARAMS = 22.7e6  # all-MiniLM-L6-v2
EVAL_SPEEDUP = 3.0  # forward only vs a training step


def run_estimate(doc: Checkup, work: Workload | None, feats: dict, text_params: float,
                 fer_used: bool) -> dict[str, float] | None:
    """The per-stage run-time estimate into ``doc.estimate`` (and the workload into ``doc.facts``);
    returns the bytes each output will take (:func:`output_bytes`), None without a workload."""
    stage1, train = doc.cfg.get("stage1"), doc.cfg.get("train")
    if work is None or stage1 is None:
        return None
    cores = int(doc.facts.get("cpu_cores") or 1)
    gpu = doc.cuda and not (train is not None and train.cpu)
    pixels = work.width * work.height / (640 * 360)
    video_s = work.seconds()
    n_utt = work.utterances()
    crops = work.crops(stage1.max_frames)
    rows: list[dict] = []

    # stage 1
    per_s, source = _stage1_rate(doc, stage1, work, pixels)
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
            "cpu" + ("+gpu" if doc.cuda else ""),
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
    doc.estimate = rows
    doc.facts["workload"] = {"source": work.source, "utterances": {s: work.utterances(s) for s in work.durations},
                              "video_hours": round(video_s / 3600, 2), "resolution": f"{work.width}x{work.height}",
                              "face_crops": round(crops)}
    return output_bytes(doc, work, feats, crops, video_s, text_params, fer_used)


def _stage1_rate(doc: Checkup, stage1, work: Workload, pixels: float) -> tuple[float, str]:
    """Worker-seconds of stage 1 per second of video, and where that figure comes from: the
    :data:`STAGE1_BENCHMARK` run nearest to the clips' size (workers / real-time factor: the wall
    time of its workers, scaled by pixels), else the assumed :data:`STAGE1_PARTS`. Adds a check
    naming the benchmark (machine, date) or saying it is absent."""
    det_gpu = doc.cuda and stage1.detector.get("device", "auto") in ("auto", "cuda") \
        and stage1.detector["name"] == "mtcnn"
    gpu = RATES["stage1.gpu_detect"].gpu or 1.0
    path = doc.root / STAGE1_BENCHMARK
    try:
        run = stage1_benchmark_run(path, work.width, work.height, stage1.detector["name"])
    except ValueError as exc:
        run = None
        doc.add(WARN, "stage1 speed benchmark", f"{exc}; the stage-1 estimate uses assumed rates",
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
        doc.facts["stage1_benchmark"] = {"file": STAGE1_BENCHMARK, "realtime_x": run["realtime_x"],
                                          "size": f"{run['width']}x{run['height']}", "workers": run["workers"],
                                          "machine": m, "date": run.get("date")}
        doc.add(
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
    if not any(c.name == "stage1 speed benchmark" for c in doc.checks):
        doc.add(WARN, "stage1 speed benchmark", f"{STAGE1_BENCHMARK} is absent: the stage-1 estimate uses ASSUMED "
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


def output_bytes(doc: Checkup, work: Workload, feats: dict, crops: float, video_s: float, text_params: float,
                 fer_used: bool) -> dict[str, float]:
    """Bytes the run writes, per output (faces, prepared, features/<modality>, model)."""
    stage1 = doc.cfg["stage1"]
    need: dict[str, float] = {
        "faces": crops * BYTES_PER_CROP + BYTES_PER_SHEET * stage1.contact_sheets * len(work.durations),
        "prepared": work.utterances() * 200,
    }
    for modality, info in feats.items():
        size = 2 if info["dtype"] == "float16" else 4
        rows = crops if modality == "visual" else video_s * (100.0 if info["name"] == "fbank" else 50.0)
        need[f"features/{modality}"] = rows * info["dim"] * size
    if "train" in doc.cfg:
        seeds = max(1, len(doc.cfg["train"].seeds))
        need["model"] = (text_params * 4 + 60e6 + (190e6 if fer_used else 0)) * (seeds + 1 if seeds > 1 else 1)
    return need


def _row(stage: str, units: str, rate: str, seconds: float, device: str, note: str = "") -> dict:
    return {"stage": stage, "units": units, "rate": rate, "seconds": round(float(seconds), 1), "device": device,
            "note": note}
