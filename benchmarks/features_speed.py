"""Stage-2 feature-extraction speed: faces/s (visual) and utterance-seconds of audio per second.

    HF_HUB_OFFLINE=1 python benchmarks/features_speed.py [--device auto] [--faces 128] [--audio-s 60]

Random weights throughout (speed does not depend on them, and nothing is downloaded):
``inception_resnet_v1`` (random_init, batch 32, 160x160 crops), ``fbank`` (80 bins) and a
base-size wav2vec2 (``random_init``: ``Wav2Vec2Config()`` defaults, 12 layers, 768-d, ~95 M
parameters). Audio runs on utterances of random lengths around ``--utt-s`` seconds (MELD's mean
is ~3.2 s), wav2vec2 once one utterance per forward and once in length-sorted batches of at most
``--batch-seconds`` padded seconds (what the features stage does). One warm-up call precedes
every timing; on CUDA the extractors use fp16 autocast.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _time(fn, repeat: int = 1) -> float:
    import torch

    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def length_batches(waves: list[np.ndarray], batch_seconds: float, sr: int = 16000) -> list[list[int]]:
    """Indices of ``waves`` sorted by length and cut into batches of at most ``batch_seconds`` padded seconds."""
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    budget = int(batch_seconds * sr)
    batches, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * len(waves[i]) > budget:
            batches.append(cur)
            cur = []
        cur.append(i)
    batches.append(cur)
    return batches


def main(argv=None) -> int:
    import torch

    from stage2_mer.features import create_extractor

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--faces", type=int, default=128, help="face crops per timing")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--audio-s", type=float, default=60.0, help="seconds of audio per timing")
    ap.add_argument("--utt-s", type=float, default=3.2, help="utterance length in seconds")
    ap.add_argument("--batch-seconds", type=float, default=30.0, help="padded seconds per wav2vec2 batch")
    ap.add_argument("--skip-wav2vec2", action="store_true")
    args = ap.parse_args(argv)
    dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    where = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {dev} ({where}); torch {torch.__version__}")

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.faces, 160, 160, 3), dtype=np.uint8)  # (N, 160, 160, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        irv1 = create_extractor("inception_resnet_v1", random_init=True, batch_size=args.batch_size, device=dev)
    dt = _time(lambda: irv1.extract(faces))
    print(f"inception_resnet_v1 (batch {args.batch_size}): {args.faces / dt:8.1f} faces/s")

    n_utt = max(1, int(round(args.audio_s / args.utt_s)))
    lengths = np.clip(rng.normal(args.utt_s, args.utt_s / 2, n_utt), 0.5, 4 * args.utt_s)
    waves = [(rng.standard_normal(int(sec * 16000)) * 0.1).astype(np.float32) for sec in lengths]
    total_s = float(lengths.sum())

    fbank = create_extractor("fbank")
    dt = _time(lambda: [fbank.extract(w) for w in waves], repeat=3)
    print(f"fbank (80 bins):                 {total_s / dt:8.1f} utterance-seconds of audio per second")

    if not args.skip_wav2vec2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w2v = create_extractor("wav2vec2", random_init=True, device=dev)
        dt = _time(lambda: [w2v.extract(w) for w in waves])
        print(f"wav2vec2 base, one per forward:  {total_s / dt:8.1f} utterance-seconds of audio per second")
        batches = length_batches(waves, args.batch_seconds)
        dt = _time(lambda: [w2v.extract_batch([waves[i] for i in b]) for b in batches])
        print(
            f"wav2vec2 base, sorted batches ({args.batch_seconds:g} s): {total_s / dt:5.1f} utterance-seconds of audio "
            f"per second ({len(batches)} forwards for {n_utt} utterances)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
