"""Weight checks of the feature extractors (``features.visual`` / ``features.audio``): local weight
files, save_pretrained folders or hub ids in the local Hugging Face cache; the feature dimensions
and speed scale the estimate needs."""

from __future__ import annotations

import json
from pathlib import Path

from .base import FAIL, OK, WARN, Checkup, fmt_bytes, folder_bytes
from .estimate import REF_AUDIO_PARAMS
from .weights import check_device, embedder, facenet, generic, hub_hint


def check_features(doc: Checkup) -> dict[str, dict]:
    """Weights of both extractors; returns ``{modality: {name, dim, rate_scale}}`` for the estimate."""
    out: dict[str, dict] = {}
    for modality in ("visual", "audio"):
        cfg = doc.cfg.get(f"features.{modality}")
        if cfg is None:
            continue
        name, opts = cfg.name, cfg.options
        key = f"features.{modality}.extractors.{name}"
        info = {"name": name, "dim": 512 if modality == "visual" else 768, "scale": 1.0, "dtype": cfg.dtype}
        check_device(doc, key, opts.get("device", "auto"))
        try:
            if name == "inception_resnet_v1":
                info["dim"] = facenet(doc, key, opts)
            elif name == "timm":
                _timm(doc, key, opts, info)
            elif name == "arcface_onnx":
                from stage1_face_extraction.identity.arcface import DEFAULT_MODEL, resolve_model_file

                doc.add(OK, key, f"{resolve_model_file(doc.path(opts.get('model', DEFAULT_MODEL)))}")
            elif name == "dlib_resnet":
                info["dim"] = 128
                embedder(doc, key, {"name": "dlib_resnet", **opts})
            elif name in ("wav2vec2", "hf_audio"):
                _audio_model(doc, key, name, opts, info)
            elif name == "fbank":
                info["dim"] = int(opts.get("num_mel_bins", 80))
                doc.add(OK, key, "no weights (Kaldi filterbank)")
            else:
                generic(doc, key, name, opts)
        except (FileNotFoundError, ValueError) as exc:
            doc.add(FAIL, key, str(exc), "place the weights named above there, or pick another extractor")
        out[modality] = info
    return out


def _timm(doc: Checkup, key: str, opts: dict, info: dict) -> None:
    if opts.get("weights") is None:
        if opts.get("random_init"):
            doc.add(WARN, f"{key}.random_init", "random_init: true (demo only): meaningless features",
                    "set weights to a local timm state dict")
        else:
            doc.add(FAIL, f"{key}.weights", f"timm {opts.get('model')!r} needs a local weights file",
                    "save the model's state dict (.safetensors) under models/ and set weights")
        return
    p = doc.path(opts["weights"])
    if p.is_file():
        doc.add(OK, key, f"timm {opts.get('model')}: {p} ({fmt_bytes(p.stat().st_size)})")
    else:
        doc.add(FAIL, f"{key}.weights", f"{doc.show(opts['weights'])} does not exist",
                f"save timm's {opts.get('model')} state dict there (timm.create_model(..., pretrained=True) "
                "on a machine with network, then safetensors.torch.save_file(model.state_dict(), PATH))")


def _audio_model(doc: Checkup, key: str, name: str, opts: dict, info: dict) -> None:
    from stage2_mer.features.audio import _looks_like_path, _offline

    if opts.get("random_init"):
        doc.add(WARN, f"{key}.random_init", "random_init: true (demo only): a random base-size encoder, "
                "meaningless audio features", f"on real MELD set random_init: false and {key}.model to a "
                "local save_pretrained folder (models/wav2vec2-base-960h)")
        return
    model = str(opts.get("model", "facebook/wav2vec2-base-960h"))
    folder = doc.path(model)
    if folder.is_dir():
        gone = [f for f in ("config.json", "preprocessor_config.json") if not (folder / f).is_file()]
        size = folder_bytes(folder)
        if gone or not size:
            doc.add(FAIL, f"{key}.model", f"{folder} is not a complete save_pretrained folder (missing "
                    f"{', '.join(gone) or 'weight files'})", hub_hint(model, "audio"))
            return
        _audio_dims(folder, info, size)
        doc.add(OK, key, f"{folder} ({fmt_bytes(size)}, {info['dim']}-d)")
        return
    cached = None
    if not _looks_like_path(model):  # ``name`` or ``org/name``: also a hub id
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # noqa: BLE001 - any hub-library problem means "not found locally"
            cached = None
    if isinstance(cached, str):
        _audio_dims(Path(cached).parent, info, 0)
        doc.add(OK, key, f"hub id {model} in the local Hugging Face cache ({Path(cached).parent})")
    elif _looks_like_path(model) or _offline() or (doc.root / Path(model).parts[0]).is_dir():
        hub = "" if _looks_like_path(model) else " (nor a hub id in the local Hugging Face cache)"
        doc.add(FAIL, f"{key}.model", f"{doc.show(model)} does not exist{hub}", hub_hint(model, "audio"))
    else:
        doc.add(WARN, f"{key}.model", f"hub id {model} is not cached: the features stage downloads it",
                f"save it once to models/ for offline runs: {hub_hint(model, 'audio')}")


def _audio_dims(folder: Path, info: dict, size: int) -> None:
    try:
        conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        info["dim"] = int(conf.get("hidden_size", info["dim"]))
    except (OSError, ValueError):
        pass
    if size:
        info["scale"] = REF_AUDIO_PARAMS / max(size / 4, 1.0)  # fp32 bytes -> parameters
