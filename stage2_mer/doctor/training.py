"""Checks of what training reads besides the features: ``model.text_encoder`` (a local folder or
``pkg:<module>``), ``fer.checkpoint`` and the Aff-Wild2 folder of the auxiliary task."""

from __future__ import annotations

from pathlib import Path

from .base import FAIL, OK, WARN, Checkup, fmt_bytes, folder_bytes, quiet_logs
from .estimate import REF_TEXT_PARAMS

#: parameters of known text encoders, for the estimate when the folder is not there yet
KNOWN_TEXT_PARAMS = {"roberta-large": 355e6, "roberta-base": 125e6, "bert-large-uncased": 335e6,
                     "bert-base-uncased": 110e6}


def check_text_encoder(doc: Checkup) -> float:
    """``model.text_encoder``; returns its parameter count (estimate) or 0 without text."""
    model = doc.cfg.get("model")
    if model is None or "T" not in model.modality_tuple:
        return 0.0
    key = "model.text_encoder"
    value = model.text_encoder
    if value is None:
        doc.add(WARN, key, "null: a RANDOM text encoder from model.text_config (tests only)",
                "set model.text_encoder: models/roberta-large (a local save_pretrained folder)")
        return REF_TEXT_PARAMS
    from stage2_mer.features.audio import hub_hint
    from stage2_mer.model.facialmmt import resolve_text_encoder

    try:
        resolved = resolve_text_encoder(value)
    except FileNotFoundError as exc:
        doc.add(FAIL, key, str(exc), f"pip install {value[4:].replace('_', '-')} (requirements/nodeps.txt), "
                "or set a local folder")
        return 0.0
    folder = doc.path(resolved)
    if not folder.is_dir():
        doc.add(FAIL, key, f"{doc.show(value)} does not exist", hub_hint(value))
        return KNOWN_TEXT_PARAMS.get(Path(value).name, 125e6)
    gone = [f for f in ("config.json",) if not (folder / f).is_file()]
    tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model"))
    size = folder_bytes(folder)
    if gone or not size or not tokenizer:
        what = ", ".join(gone + ([] if size else ["weight files"]) + ([] if tokenizer else ["tokenizer files"]))
        doc.add(FAIL, key, f"{folder} is not a complete save_pretrained folder (missing {what})", hub_hint(value))
        return KNOWN_TEXT_PARAMS.get(Path(value).name, 125e6)
    shown = f"{value} -> {folder}" if value.startswith("pkg:") else str(folder)
    doc.add(OK, key, f"{shown} ({fmt_bytes(size)})")
    return size / 4


def check_fer(doc: Checkup) -> bool:
    """``fer.checkpoint``; returns whether the FER branch runs."""
    model, fer = doc.cfg.get("model"), doc.cfg.get("fer")
    if model is None or fer is None:
        return False
    if "V" not in model.modality_tuple or model.fer_dim <= 0:
        doc.add(OK, "fer.checkpoint", "not used (no V modality or model.fer_dim: 0)")
        return False
    if fer.random_init:
        doc.add(WARN, "fer.random_init", "random_init: true (demo only): the facial-expression Swin has no "
                "face pretraining", "on real MELD set fer.checkpoint: models/Swin_tiny_Ms-Celeb-1M.pt and "
                "fer.random_init: false")
    elif not fer.checkpoint:
        doc.add(FAIL, "fer.checkpoint", "null and fer.random_init is false",
                "set fer.checkpoint: models/Swin_tiny_Ms-Celeb-1M.pt (FacialMMT's face-pretrained Swin, "
                "HuggingFace NUSTM/FacialMMT pretrained_model/)")
    else:
        p = doc.path(fer.checkpoint)
        if p.is_file():
            doc.add(OK, "fer.checkpoint", f"{p} ({fmt_bytes(p.stat().st_size)})")
        else:
            doc.add(FAIL, "fer.checkpoint", f"{doc.show(fer.checkpoint)} does not exist",
                    "download FacialMMT's Swin_tiny_Ms-Celeb-1M.pt (HuggingFace NUSTM/FacialMMT, "
                    "pretrained_model/) and place it there")
    return True


def check_affwild2(doc: Checkup, fer_used: bool) -> None:
    train = doc.cfg.get("train")
    key = "Aff-Wild2"
    if not fer_used or train is None or train.aux_ratio <= 0:
        doc.add(OK, key, "not used (no FER branch or train.aux_ratio: 0)")
        return
    value = doc.affwild2_arg or doc.pipeline.stage_arg("train", "--affwild2")
    if value is None:
        doc.add(WARN, key, "no Aff-Wild2 folder known (no --affwild2 and no train stage in dvc.yaml)",
                "pass --affwild2 DIR (the folder train's --affwild2 gets)")
        return
    from stage2_mer.fer import AffWild2Config, is_affwild2_standin, scan_affwild2

    stage = doc.pipeline.produced_by(value)
    if (stage and not doc.affwild2_arg) or is_affwild2_standin(doc.path(value)):
        # on real MELD the train stage refuses it (label leakage: check_affwild2_source)
        status = OK if doc.is_demo else FAIL
        doc.add(status, key, f"{value} is written by the {stage or 'make_affwild2'} stage: MELD's own train "
                "faces labelled with their utterance emotion (a demo stand-in, not Aff-Wild2)"
                + ("" if doc.is_demo else "; on real MELD it leaks MELD labels into the model and train "
                    "refuses it"),
                "" if doc.is_demo else "for FacialMMT's auxiliary task point train's --affwild2 (dvc.yaml) "
                "at a real Aff-Wild2 folder (docs/real-meld.md), or set train.aux_ratio: 0")
        return

    cfg = AffWild2Config(root=str(doc.path(value)))
    try:
        names = sorted(p.stem for p in cfg.annotation_root.glob("*.txt")) if cfg.annotation_root.is_dir() else []
        with quiet_logs():
            index = scan_affwild2(cfg.image_root, cfg.annotation_root, videos=names[:2])
        if not names:
            raise FileNotFoundError(f"no annotation .txt files in {cfg.annotation_root}")
        doc.add(OK, key, f"{cfg.root}: {len(names)} annotated videos; the first {min(2, len(names))} give "
                f"{len(index)} usable frames")
    except (FileNotFoundError, ValueError) as exc:
        doc.add(FAIL, key, str(exc), f"{value} must hold {cfg.images}/<video>/<frame>.jpg and "
                f"{cfg.annotations}/<video>.txt (ABAW3 expression layout)")
