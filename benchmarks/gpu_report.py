"""One-GPU report: stage-1 real-time factor, face and audio feature throughput, training throughput, peak GPU memory.

    HF_HUB_OFFLINE=1 python benchmarks/gpu_report.py --real-scenes /tmp/scenes720 [--limit 18] \
        [--md benchmarks/results/gpu_report.md] [--json benchmarks/results/gpu_report.json]

On one CUDA GPU it measures, with the project's own code paths (the entry points of the other
benchmarks, not copies of them):

* **stage 1** at 1280x720 on real footage (``--real-scenes``: scenes composed from
  ../shared/data/talking_heads, made when absent): the whole ``extract_faces`` stage
  (``stage1_speed.time_stage``) with face detection batched on the GPU (``stage1.detector.device:
  cuda``, ``--det-batch`` frames per call) in ``--workers`` clip processes (default: every core), which
  decode on the CPU in parallel; the speaking scorer is the params' (``av_sync``: CPU; a learned one,
  e.g. ``--asd '{"name": "light_asd", "checkpoint": ...}'``, runs on the GPU). Goal >= 200x real time;
* **InceptionResNetV1** faces/s (random weights, 160x160, ``features_speed``'s extractor);
* **wav2vec2** seconds of audio per second, length-sorted batches as the features stage makes them
  (``features_speed.length_batches``); a RANDOM-init wav2vec2-base (``Wav2Vec2Config()``, ~95 M
  parameters) unless ``--wav2vec2 DIR`` names a local save_pretrained folder: the speed is the same;
* **training** utterances/s of a FacialMMT-sized model (24-layer 1024-wide RoBERTa-layout text
  encoder and 768-wide new layers, random weights; ``train_speed.run``: the real trainer) at batch 1
  utterance, 4 accumulated, unfused AdamW (FacialMMT's own setting) vs the default dialogue batches
  (``train.batch_dialogues``).

Peak GPU memory per row: ``torch.cuda.max_memory_allocated`` for the in-process rows; for stage 1
(its workers are other processes) the device's used memory, polled every 0.1 s (CUDA contexts
included). Writes a markdown table (``--md``) and JSON (``--json``).

Without CUDA it runs the same measurements on the CPU with tiny sizes and short runs (2 clips, a
2-layer 128-wide text encoder, ...) and says so everywhere: the table header reads "CPU fallback,
GPU not measured". Those figures only show that the script works.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class DevicePeak:
    """Peak used memory of the CUDA device while the block runs (polled; every process counted)."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.peak = 0
        self._stop = threading.Event()

    def _poll(self) -> None:
        import torch

        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)
            self._stop.wait(self.period)

    def __enter__(self) -> DevicePeak:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _peak_reset(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(cuda: bool) -> float | None:
    if not cuda:
        return None
    import torch

    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def measure_stage1(args, cuda: bool) -> dict:
    import stage1_speed

    from stage1_face_extraction.common.config import load_section
    from stage1_face_extraction.section import Stage1Config
    from stage1_face_extraction.video import probe

    if args.real_scenes is None:
        return {"what": "stage 1, 1280x720", "value": None, "unit": "x real time",
                "note": "not measured: no --real-scenes DIR"}
    ns = argparse.Namespace(real_scenes=args.real_scenes, sources=args.sources, seed=1, width=1280, height=720,
                            limit=args.limit)
    clips, truth = stage1_speed.real_scene_clips(ns)
    clips = clips[: args.limit]
    cfg = load_section(args.params, "stage1", Stage1Config)
    if args.asd:
        cfg.asd = json.loads(args.asd)
    cfg.detector["device"] = "cuda" if cuda else "cpu"
    if cuda:
        cfg.detector["batch_size"] = args.det_batch
    workers = args.workers or ((os.cpu_count() or 1) if cuda else cfg.workers)
    with DevicePeak() if cuda else contextlib.nullcontext() as peak:
        run = stage1_speed.time_stage(cfg, clips, truth, workers)
    video_s = sum(probe(c).duration_s for c in clips)
    size = probe(clips[0])
    rtf = video_s / run["wall_s"]
    prof = run["profile"]
    total = sum(prof.values()) or 1.0
    return {"what": f"stage 1, {size.width}x{size.height} ({len(clips)} clips, {video_s:.0f} s of video)",
            "value": round(rtf, 2), "unit": "x real time", "peak_gpu_gb": round(peak.peak / 2**30, 2) if peak else None,
            "note": f"{workers} workers, detector {cfg.detector['name']} on {cfg.detector['device']}, scorer "
                    f"{cfg.asd['name']}; profile " + ", ".join(f"{k.removesuffix('_s')} {100 * v / total:.0f}%"
                                                               for k, v in prof.items()),
            "run": run}


def measure_faces(args, cuda: bool, dev: str) -> dict:
    from features_speed import _time

    from stage2_mer.features import create_extractor

    n, bs = (args.faces, args.face_batch) if cuda else (16, 8)
    faces = np.random.default_rng(0).integers(0, 256, (n, 160, 160, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        irv1 = create_extractor("inception_resnet_v1", random_init=True, batch_size=bs, device=dev)
    _peak_reset(cuda)
    dt = _time(lambda: irv1.extract(faces))
    return {"what": f"InceptionResNetV1, batch {bs}, {n} faces 160x160", "value": round(n / dt, 1), "unit": "faces/s",
            "peak_gpu_gb": _peak_gb(cuda), "note": "random weights (speed does not depend on them)"}


def measure_audio(args, cuda: bool, dev: str) -> dict:
    from features_speed import _time, length_batches

    from stage2_mer.features import create_extractor

    audio_s, batch_s = (args.audio_s, 30.0) if cuda else (10.0, 0.0)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.normal(3.2, 1.6, max(1, int(audio_s / 3.2))), 0.5, 12.8)
    waves = [(rng.standard_normal(int(s * 16000)) * 0.1).astype(np.float32) for s in lengths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.wav2vec2:
            w2v = create_extractor("wav2vec2", model=str(args.wav2vec2), device=dev)
            note = f"weights {args.wav2vec2}"
        else:
            w2v = create_extractor("wav2vec2", random_init=True, device=dev)
            note = "RANDOM-init wav2vec2-base config (no local weights; same speed)"
    _peak_reset(cuda)
    if batch_s:
        batches = length_batches(waves, batch_s)
        dt = _time(lambda: [w2v.extract_batch([waves[i] for i in b]) for b in batches])
        how = f"sorted batches of <= {batch_s:g} s"
    else:  # the features stage's CPU default (batch_seconds auto = 0: one utterance per forward)
        dt = _time(lambda: [w2v.extract(w) for w in waves])
        how = "one utterance per forward"
    return {
        "what": f"wav2vec2-base, {lengths.sum():.0f} s of audio, {how}",
        "value": round(float(lengths.sum()) / dt, 1),
        "unit": "s of audio/s",
        "peak_gpu_gb": _peak_gb(cuda),
        "note": note,
    }


def measure_train(args, cuda: bool) -> list[dict]:
    import train_speed

    from stage1_face_extraction.common.config import load_section
    from stage2_mer.train import TrainConfig

    batch = load_section(args.params, "train", TrainConfig).batch_dialogues
    if cuda:
        ns = argparse.Namespace(hidden=768, text_hidden=1024, text_layers=24, vocab=50265, steps=args.steps, warmup=2)
    else:
        ns = argparse.Namespace(hidden=96, text_hidden=128, text_layers=2, vocab=50265, steps=2, warmup=1)
    ns.utterances, ns.audio_len, ns.visual_len, ns.cuda = 10, 150, 60, cuda
    model_cfg = train_speed.model_config(ns)
    tok = train_speed.make_tokenizer()
    rows = []
    size = f"text {ns.text_layers}x{ns.text_hidden}, new layers {ns.hidden}"
    facialmmt = train_speed.FACIALMMT_RUN  # its accumulation and unfused AdamW
    for label, b, per_utt, extra in (
        (f"batch 1 utterance x {facialmmt['accum']} accumulated (FacialMMT)", 1, True, facialmmt),
        (f"batch {batch} dialogues (default)", batch, False, {}),
    ):
        _peak_reset(cuda)
        r = train_speed.run(b, ns, tok, model_cfg, per_utterance=per_utt, **extra)
        rows.append({"what": f"training, {label}, {size}", "value": round(r["utt_s"], 1), "unit": "utterances/s",
                     "peak_gpu_gb": _peak_gb(cuda), "note": f"{r['ms_step']:.0f} ms/step, {ns.steps} timed steps, "
                     f"random weights, {ns.utterances} utt/dialogue"})
    return rows


def markdown(report: dict) -> str:
    head = (f"GPU: {report['device']}" if report["cuda"] else
            f"CPU fallback, GPU not measured ({report['device']}; tiny sizes, short runs)")
    lines = [f"### {head}", "", f"{report['date']}, torch {report['torch']}, {report['cores']} CPU cores", "",
             "| measurement | value | peak GPU memory | note |", "|---|---|---|---|"]
    for r in report["rows"]:
        value = "not measured" if r["value"] is None else f"{r['value']:,} {r['unit']}"
        mem = "-" if r.get("peak_gpu_gb") is None else f"{r['peak_gpu_gb']} GiB"
        lines.append(f"| {r['what']} | {value} | {mem} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real-scenes", type=Path, help="1280x720 composed real scenes (made when absent)")
    ap.add_argument(
        "--sources", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "talking_heads"
    )
    ap.add_argument("--limit", type=int, help="stage-1 clips (default 18 on a GPU, 2 on the CPU)")
    ap.add_argument("--workers", type=int, help="stage-1 clip processes (default: every core on a GPU)")
    ap.add_argument("--det-batch", type=int, default=64, help="frames per detector call on the GPU")
    ap.add_argument("--asd", help="JSON object replacing stage1.asd")
    ap.add_argument("--faces", type=int, default=2048)
    ap.add_argument("--face-batch", type=int, default=256)
    ap.add_argument("--audio-s", type=float, default=600.0)
    ap.add_argument("--wav2vec2", type=Path, help="local wav2vec2 save_pretrained folder (default: random init)")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps (GPU)")
    ap.add_argument("--params", type=Path, default=Path(__file__).resolve().parents[1] / "params.yaml")
    ap.add_argument("--md", type=Path, help="write the markdown table here")
    ap.add_argument("--json", type=Path, help="write the JSON report here")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    if args.limit is None:
        args.limit = 18 if cuda else 2
    device = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} threads"
    if not cuda:
        print("NO CUDA: CPU fallback with tiny sizes and short runs -- the GPU was NOT measured", flush=True)
    rows = []
    for name, fn in (
        ("stage 1", lambda: [measure_stage1(args, cuda)]),
        ("faces", lambda: [measure_faces(args, cuda, dev)]),
        ("audio", lambda: [measure_audio(args, cuda, dev)]),
        ("training", lambda: measure_train(args, cuda)),
    ):
        t0 = time.perf_counter()
        got = fn()
        rows += got
        for r in got:
            print(f"{r['what']}: {'not measured' if r['value'] is None else r['value']} {r['unit']}  "
                  f"(peak GPU {r.get('peak_gpu_gb')} GiB; {r['note']}) [{time.perf_counter() - t0:.0f} s]", flush=True)
    report = {
        "benchmark": "benchmarks/gpu_report.py",
        "cuda": cuda,
        "device": device,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "gpu_measured": cuda,
        "rows": rows,
    }
    text = markdown(report)
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
