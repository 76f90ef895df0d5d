"""Weight checks: every component the params pick (stage 1's detector, speaking scorer and identity
embedder; the feature extractors) is asked for the local files its config needs
(:meth:`~stage1_face_extraction.common.local_weights.LocatesWeights.local_weights`); nothing is loaded,
and the doctor has no rule of its own per component. ``random_init: true`` is a WARN (demo only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stage1_face_extraction.common.local_weights import LocalWeights, path_keys

from .base import FAIL, OK, Checkup


def component_weights(doc: Checkup, key: str, lookup: Callable[[str], type], name: str,
                      cfg: dict[str, Any]) -> LocalWeights | None:
    """Report what component ``name`` (its class from ``lookup``) says about the files ``cfg`` needs,
    under report name ``key``; None when it raised (reported with its ``weights_fix``). An unknown
    name (the config check has failed it) has its path-like keys checked."""
    try:
        cls = lookup(name)
    except ValueError:
        found = path_keys(name, cfg, doc)
    else:
        try:
            found = cls.local_weights(cfg, doc, key)
        except (FileNotFoundError, OSError, ValueError) as exc:
            doc.add(FAIL, key, str(exc), cls.weights_fix)
            return None
    for check in found.checks:
        doc.add(check.status, key + check.suffix, check.message, check.fix)
    return found


def check_device(doc: Checkup, key: str, device: Any) -> None:
    if isinstance(device, str) and device.startswith("cuda") and not doc.cuda:
        doc.add(FAIL, f"{key}.device", f"device {device!r} but CUDA is not available",
                "set device: auto (CUDA when present) or cpu")


def check_stage1(doc: Checkup) -> None:
    """Stage 1's detector, speaking scorer, identity embedder and reference photos."""
    from stage1_face_extraction.asd.base import scorer_class
    from stage1_face_extraction.detectors.base import detector_class
    from stage1_face_extraction.identity.base import embedder_class

    cfg = doc.cfg.get("stage1")
    if cfg is None:
        return
    det = dict(cfg.detector)
    component_weights(doc, "stage1.detector", detector_class, det["name"], det)
    check_device(doc, "stage1.detector", det.get("device", "auto"))
    asd = dict(cfg.asd)
    component_weights(doc, "stage1.asd", scorer_class, asd["name"], asd)
    ident = cfg.identity
    key = "stage1.identity.embedder"
    if not ident.enabled:
        doc.add(OK, key, "identity step off (scope: none): no embedder")
    else:
        emb = dict(ident.embedder)
        component_weights(doc, key, embedder_class, emb.pop("name"), emb)
    if ident.references:
        ref = doc.path(ident.references)
        if ref.is_dir():
            doc.add(OK, "stage1.identity.references", f"{ref}: {sum(p.is_dir() for p in ref.iterdir())} people")
        else:
            doc.add(FAIL, "stage1.identity.references", f"{doc.show(ident.references)} does not exist",
                    "point it at a folder of NAME/*.jpg photos, or set it to null")


def check_features(doc: Checkup) -> dict[str, dict]:
    """Weights of both extractors; returns ``{modality: {name, dim, scale, dtype}}`` for the estimate
    (``scale``: the audio encoder's speed relative to wav2vec2-base, from its parameter count)."""
    from stage2_mer.features.registry import extractor_class

    from .estimate import REF_AUDIO_PARAMS

    out: dict[str, dict] = {}
    for modality in ("visual", "audio"):
        cfg = doc.cfg.get(f"features.{modality}")
        if cfg is None:
            continue
        name, opts = cfg.name, cfg.options
        key = f"features.{modality}.extractors.{name}"
        info = {"name": name, "dim": 512 if modality == "visual" else 768, "scale": 1.0, "dtype": cfg.dtype}
        check_device(doc, key, opts.get("device", "auto"))
        found = component_weights(doc, key, extractor_class, name, opts)
        if found is not None and found.dim is not None:
            info["dim"] = found.dim
        if found is not None and found.params:
            info["scale"] = REF_AUDIO_PARAMS / max(found.params, 1.0)
        out[modality] = info
    return out
