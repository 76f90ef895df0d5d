"""One clip -> the emotion distribution: stage 1, the feature extractors and the checkpoint's model.

    predictor = Predictor("data/model", params=load_params("params.yaml"))
    pred = predictor.predict("clip.mp4", "Oh my God!", speaker="Rachel")
    pred.probs            # (7,) in EMOTIONS order, sums to 1
    pred.label, pred.to_json()

The utterance is built exactly as the training data is, so the probabilities equal what the
``evaluate`` stage outputs for the same utterance with the same stage-1 faces:

* faces: stage 1's :class:`~stage1_face_extraction.pipeline.FacePipeline` on the clip (the identity
  step is off: it needs a whole dialogue or reference photos); the crops go through the same JPEG
  encode/decode as the stage-1 shards (``stage1.jpeg_quality``);
* features: the extractors the checkpoint records (``checkpoint.json`` ``inputs``, written by the
  train stage; older checkpoints: ``features.<modality>`` of the params file), features rounded to
  the stored dtype (float16) and cut to the train length caps (``train.max_*_len``), as
  :class:`~stage2_mer.data.MELDDialogues` serves them;
* text: the dialogue tokenizer of the checkpoint's text encoder folder, with the recorded
  ``max_tokens`` / ``speaker_names``; optional context turns come BEFORE the utterance in one
  dialogue (a single utterance is a one-utterance dialogue);
* the batch: :func:`stage2_mer.data.collate` through :meth:`stage2_mer.train.Trainer.predict`
  (FER distributions, importance filter, softmax), as ``evaluate`` runs it.

An utterance without a speaker face gets an empty visual sequence (all masked), exactly like a
MELD utterance whose stage-1 status is not ``ok``; the model then decides from text and audio.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stage1_face_extraction.common.config import ConfigError, from_dict, with_runtime
from stage1_face_extraction.common.labels import EMOTIONS

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_HINT", "InputSpec", "PredictError", "Prediction", "Predictor", "check_checkpoint",
    "input_specs", "jpeg_roundtrip", "parse_turn", "speaker_boxes",
]

CHECKPOINT_HINT = "run `dvc repro train` (it writes data/model) or pass --checkpoint DIR"
WAVE_SR = 16000  # the audio kept for the annotated MP4
_FEATURE_KEYS = (("A", "audio"), ("V", "visual"))


class PredictError(Exception):
    """Why a prediction cannot run, in words for the user (the CLI prints it and exits 2)."""


def check_checkpoint(folder: str | Path) -> dict:
    """The checkpoint's JSON, after checking every file the model needs is there (the error names
    the missing file and how to make it)."""
    from stage2_mer.train import read_checkpoint
    from stage2_mer.train.checkpoint import CHECKPOINT_JSON

    folder = Path(folder)
    if not folder.is_dir():
        raise PredictError(f"checkpoint folder not found: {folder} ({CHECKPOINT_HINT})")
    if not (folder / CHECKPOINT_JSON).is_file():
        raise PredictError(f"checkpoint file missing: {folder / CHECKPOINT_JSON} ({CHECKPOINT_HINT})")
    try:
        info = read_checkpoint(folder)
    except ValueError as exc:
        raise PredictError(f"unreadable checkpoint: {exc}") from None
    for name in ("model.safetensors", *(["fer.safetensors"] if info.get("fer") else [])):
        if not (folder / name).is_file():
            raise PredictError(f"checkpoint file missing: {folder / name} ({CHECKPOINT_HINT})")
    return info


@dataclass
class InputSpec:
    """How one feature modality is made: extractor name and keys, the stored dtype, the length cap.

    ``source`` says where the extractor came from: ``checkpoint`` (its ``inputs`` record) or
    ``params`` (the params file's ``features.<modality>``, for checkpoints that do not record it).
    """

    modality: str
    extractor: str
    options: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float16"
    max_len: int | None = None
    source: str = "checkpoint"

    def create(self):
        from stage2_mer.features import create_extractor

        return create_extractor(self.extractor, **self.options)


def _fallback_cap(key: str, rule: int | str, name: str, features_root: str | Path | None, table: int) -> int:
    """The length cap of a checkpoint that does not record it: ``train.max_<key>_len`` when an int,
    else ``mean+3std`` of ``<features_root>/<key>/<name>/train``; else the model's position table."""
    from stage2_mer.features import FeatureReader, length_cap

    if isinstance(rule, int) and not isinstance(rule, bool):
        return length_cap([1], rule)
    folder = Path(features_root) / key / name / "train" if features_root else None
    if folder is not None and (folder / "index.jsonl").is_file():
        lengths = [n for n in FeatureReader(folder).lengths() if n > 0]
        return length_cap(lengths or [1], rule)
    log.warning("the checkpoint does not record its %s length cap and %s is not there: using the model's "
                "position table (%d frames)", key, folder, table)
    return table


def input_specs(info: dict, params: dict, model_cfg, train_cfg, features_root: str | Path | None = None
                ) -> dict[str, InputSpec]:
    """``{"audio": InputSpec, "visual": InputSpec}`` for the model's feature modalities."""
    from stage2_mer.features.extract import FeatureStageConfig

    recorded = info.get("inputs") or {}
    specs: dict[str, InputSpec] = {}
    for letter, key in _FEATURE_KEYS:
        if letter not in model_cfg.modality_tuple:
            continue
        rec = recorded.get(key) or {}
        table = int(getattr(model_cfg, f"max_{key}_len"))
        if rec.get("extractor"):
            cap = rec.get("max_len")
            specs[key] = InputSpec(key, rec["extractor"], dict(rec.get("options") or {}), rec.get("dtype") or "float16",
                                   int(cap) if cap else table, "checkpoint")
            continue
        section = (params.get("features") or {}).get(key)
        if section is None:
            raise PredictError(f"the checkpoint does not record its {key} extractor and the params file has no "
                               f"features.{key} section (pass --params with the file the model was trained with)")
        cfg = from_dict(FeatureStageConfig, section, f"features.{key}")
        cap = _fallback_cap(key, getattr(train_cfg, f"max_{key}_len"), cfg.name, features_root, table)
        specs[key] = InputSpec(key, cfg.name, cfg.options, cfg.dtype, cap, "params")
    return specs


def jpeg_roundtrip(crops: np.ndarray, quality: int) -> np.ndarray:
    """The crops as the stage-1 shards give them back (JPEG encode + decode, the store's settings)."""
    from stage1_face_extraction.store import decode_jpeg, encode_jpeg

    if not len(crops):
        return crops
    return np.stack([decode_jpeg(encode_jpeg(c, quality)) for c in crops])


_TURN = re.compile(r"^\s*([^:\n]{1,40}?):\s+(\S.*)$", re.DOTALL)


def parse_turn(line: str) -> tuple[str | None, str]:
    """A context turn ``"Name: text"`` -> ``("Name", "text")``; without a name prefix ``(None, line)``."""
    m = _TURN.match(line)
    return (m.group(1).strip(), m.group(2).strip()) if m else (None, line.strip())


def _turn_text(speaker: str | None, text: str, speaker_names: bool) -> str:
    """The string the dialogue tokenizer encodes (its ``speaker_names`` prefix, when known)."""
    return f"{speaker}: {text}" if speaker_names and speaker else text


def speaker_boxes(result) -> dict[int, tuple[float, float, float, float]]:
    """Source frame -> the speaker's box ``(x1, y1, x2, y2)``: every frame of the selected tracks
    (stage 1's track rows), and the manifest frames' boxes where no track row is known."""
    rec = result.record
    selected = {t["track"] for t in rec.get("tracks", []) if t.get("selected")}
    out: dict[int, tuple[float, float, float, float]] = {}
    for t in getattr(result, "tracks", None) or []:
        if t.track_id in selected:
            for f, b in zip(t.frames.tolist(), t.boxes.tolist()):
                out[int(f)] = tuple(float(v) for v in b)
    for fr in rec.get("frames", []):
        out.setdefault(int(fr["frame"]), tuple(float(v) for v in fr["box"]))
    return out


@dataclass
class Prediction:
    """What :meth:`Predictor.predict` returns (``to_json`` is the ``.prediction.json`` content)."""

    video: str
    text: str
    speaker: str | None
    context: list[tuple[str | None, str]]
    probs: np.ndarray  # (7,) float32, EMOTIONS order
    stage1: Any  # stage1_face_extraction.pipeline.ClipResult
    checkpoint: str
    modalities: str
    inputs: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wave: np.ndarray | None = None  # (n,) float32 at WAVE_SR, for the annotated MP4

    @property
    def label(self) -> str:
        return EMOTIONS[int(np.argmax(self.probs))]

    @property
    def probability(self) -> float:
        return float(np.max(self.probs))

    def ranked(self) -> list[tuple[str, float]]:
        """``(emotion, probability)`` sorted by probability, highest first."""
        return sorted(zip(EMOTIONS, map(float, self.probs)), key=lambda x: -x[1])

    def boxes(self) -> dict[int, tuple[float, float, float, float]]:
        return speaker_boxes(self.stage1)

    def to_json(self) -> dict[str, Any]:
        rec = self.stage1.record
        frames = rec.get("frames", [])
        return {
            "video": self.video,
            "text": self.text,
            "speaker": self.speaker,
            "context": [{"speaker": s, "text": t} for s, t in self.context],
            "predicted": self.label,
            "probability": round(self.probability, 6),
            "probabilities": {e: round(float(p), 6) for e, p in zip(EMOTIONS, self.probs)},
            "checkpoint": self.checkpoint,
            "modalities": self.modalities,
            "speaker_track": {
                "status": rec.get("status"),
                "reason": rec.get("reason"),
                "fps": rec.get("fps"),
                "n_frames": rec.get("n_frames"),
                "face_frames": len(frames),
                "first_face_frame": frames[0]["frame"] if frames else None,
                "last_face_frame": frames[-1]["frame"] if frames else None,
                "tracks": [t for t in rec.get("tracks", []) if t.get("selected")],
            },
            "inputs": self.inputs,
            "notes": list(self.notes),
        }


class _Dialogues:
    """The minimal dataset :meth:`Trainer.predict` iterates (what MELDDialogues offers)."""

    def __init__(self, items: Sequence) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]

    def n_utterances(self, i: int) -> int:
        return len(self.items[i].utt_ids)


def _as_stored(feats: np.ndarray, dtype: str) -> np.ndarray:
    """The features as the feature store gives them back (rounded to its dtype, read as float32)."""
    return np.asarray(feats, dtype).astype(np.float32)


def _clip_key(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem) or "clip"


class Predictor:
    """The checkpoint's model, its FER network, tokenizer and extractors, and stage 1, loaded once.

    Args:
        checkpoint: a train-stage checkpoint folder.
        params: the params.yaml mapping: ``stage1`` (face extraction), ``train`` (batching,
            precision, and what the checkpoint does not record; its text, length-cap and FER-filter
            settings win, as in ``evaluate``), and ``features.<modality>`` only for checkpoints that
            do not record their extractors. Missing sections take the defaults.
        features_root: the features stage's output (``data/features``): only read for the length
            cap of a checkpoint that does not record it while ``train.max_*_len`` is ``mean+3std``.
        tokenizer: a transformers tokenizer to use instead of the text encoder folder's.

    Raises:
        PredictError: a missing or unreadable checkpoint file, an extractor whose dimension does not
            fit the model, a text model without a tokenizer, a bad params section.
    """

    def __init__(self, checkpoint: str | Path, params: dict | None = None, features_root: str | Path | None = None,
                 tokenizer=None) -> None:
        from stage1_face_extraction.section import Stage1Config
        from stage2_mer.train import TrainConfig, Trainer, apply_preset, checkpoint_train_config, load_models

        params = dict(params or {})
        self.checkpoint = Path(checkpoint)
        self.info = check_checkpoint(self.checkpoint)
        try:
            self.train_cfg = dataclasses.replace(apply_preset(from_dict(TrainConfig, params.get("train"), "train")),
                                                 workers=0)
            self.stage1_cfg = from_dict(Stage1Config, with_runtime(params, "stage1", params.get("stage1")), "stage1")
        except (ConfigError, ValueError, TypeError) as exc:
            raise PredictError(f"params: {exc}") from None
        self.stage1_cfg.identity.scope = "none"  # naming needs a dialogue or reference photos
        try:
            model, self.model_cfg, fer, fer_cfg, _ = load_models(self.checkpoint)
        except (ConfigError, FileNotFoundError, ValueError) as exc:
            raise PredictError(f"cannot load the checkpoint {self.checkpoint}: {exc}") from None
        self.mods = self.model_cfg.modality_tuple
        # the data settings the checkpoint records (text, length caps, frame filter), as evaluate does
        self.train_cfg, _ = checkpoint_train_config(self.train_cfg, self.info, self.checkpoint)
        try:
            self.specs = input_specs(self.info, params, self.model_cfg, self.train_cfg, features_root)
        except ConfigError as exc:
            raise PredictError(str(exc)) from None
        text = (self.info.get("inputs") or {}).get("text") or {}
        self.max_tokens = int(text.get("max_tokens", self.train_cfg.max_tokens))
        self.speaker_names = bool(text.get("speaker_names", self.train_cfg.speaker_names))
        self.text_context = str(text.get("context", self.train_cfg.text_context))
        self.tokenizer, pad = None, 0
        if "T" in self.mods:
            self.tokenizer = self._dialogue_tokenizer(tokenizer)
            pad = self.tokenizer.pad
        self.extractors = {}
        for key, spec in self.specs.items():
            log.info("%s features: %s %s (from the %s)", key, spec.extractor, spec.options, spec.source)
            try:
                ext = spec.create()
            except (ConfigError, FileNotFoundError, ValueError) as exc:
                raise PredictError(f"{key} extractor {spec.extractor!r}: {exc}") from None
            want = int(getattr(self.model_cfg, f"{key}_dim"))
            if ext.dim != want:
                raise PredictError(f"the {key} extractor {spec.extractor!r} gives {ext.dim}-d features but the model "
                                   f"was trained on {want}-d ones (use the extractor the model was trained with)")
            self.extractors[key] = ext
        self.trainer = Trainer.for_inference(model, self.train_cfg, fer=fer, fer_cfg=fer_cfg,
                                             model_config=self.info["model"], pad_id=pad)  # as evaluate's
        self._pipe = None

    def _dialogue_tokenizer(self, tokenizer):
        from stage2_mer.data import DialogueTokenizer

        if tokenizer is None:
            src = self.model_cfg.text_encoder
            if src is None:
                raise PredictError("the checkpoint's text encoder is a random model.text_config one, which has no "
                                   "tokenizer: pass a tokenizer (Predictor(tokenizer=...))")
            from transformers import AutoTokenizer

            try:
                from stage2_mer.model.facialmmt import resolve_text_encoder

                tokenizer = AutoTokenizer.from_pretrained(resolve_text_encoder(src), local_files_only=True)
            except OSError as exc:
                raise PredictError(f"cannot load the tokenizer of the text encoder {src}: {exc}") from None
        return DialogueTokenizer(tokenizer, max_tokens=self.max_tokens, speaker_names=self.speaker_names,
                                 context=self.text_context)

    # ------------------------------------------------------------------------------ steps

    def find_speaker(self, video: str | Path, speaker: str | None = None):
        """Stage 1 on the clip -> :class:`~stage1_face_extraction.pipeline.ClipResult`."""
        from stage1_face_extraction.pipeline import FacePipeline

        if self._pipe is None:
            self._pipe = FacePipeline(self.stage1_cfg)
        video = Path(video)
        return self._pipe.process(video, utt_id=_clip_key(video), speaker=speaker, clip=str(video))

    def _audio(self, video: Path, sr: int, notes: list[str]) -> np.ndarray:
        from stage1_face_extraction.video import DecodeError, NoAudioError, read_audio

        try:
            return read_audio(video, sr)
        except (NoAudioError, DecodeError) as exc:  # as the features stage: an empty audio input
            notes.append(f"no audio ({exc}): the audio input is empty")
            return np.zeros(0, np.float32)

    def predict(self, video: str | Path, text: str, speaker: str | None = None,
                context: Sequence[tuple[str | None, str]] = ()) -> Prediction:
        """The emotion distribution of the utterance ``text`` spoken in ``video``.

        ``context``: earlier turns of the dialogue, ``(speaker or None, text)``, oldest first; they
        only reach the model through the text encoder (no clip: empty audio and visual inputs).
        """
        from stage2_mer.data import DialogueItem

        video = Path(video)
        if not video.is_file():
            raise PredictError(f"video not found: {video}")
        notes: list[str] = []
        context = [(s, t) for s, t in context]
        if context and "T" not in self.mods:
            notes.append(f"context ignored: the model ({'+'.join(self.mods)}) has no text branch")
            context = []
        log.info("stage 1: finding the speaker's face in %s", video)
        res = self.find_speaker(video, speaker)
        rec = res.record
        from stage1_face_extraction.store import NO_FRAMES

        if rec["status"] in NO_FRAMES:
            raise PredictError(f"{video}: {rec['status']} ({rec.get('reason', '')})")
        crops = jpeg_roundtrip(res.crops, self.stage1_cfg.jpeg_quality)
        log.info("stage 1: status %s, %d face crops", rec["status"], len(crops))
        if not len(crops):
            notes.append(f"no speaker face found (stage 1 status {rec['status']}"
                         f"{': ' + rec['reason'] if rec.get('reason') else ''}): the visual input is empty, as for "
                         "MELD utterances without faces; the prediction rests on "
                         + " and ".join(n for m, n in (("T", "text"), ("A", "audio")) if m in self.mods))
        n_ctx = len(context)
        key = _clip_key(video)
        item = DialogueItem(f"predict/{key}", [f"{key}-context{i}" for i in range(n_ctx)] + [key], [0] * (n_ctx + 1))
        inputs: dict[str, dict] = {}
        if self.tokenizer is not None:
            if self.speaker_names and not speaker:
                notes.append("the model was trained with speaker names in the text (train.speaker_names) but no "
                             "--speaker was given: the utterance has no name prefix")
            turns = [*context, (speaker, text)]
            enc = self.tokenizer.encode([_turn_text(s, t, self.speaker_names) for s, t in turns])
            item.set_text(enc)  # text context past:N: a row per turn
            inputs["text"] = {"tokens": len(enc.token_rows()[-1]),
                              "utterance_tokens": enc.spans[-1][1] - enc.spans[-1][0],
                              "context_turns": n_ctx, "truncated": enc.truncated, "speaker_names": self.speaker_names}
        if "visual" in self.specs:
            spec, ext = self.specs["visual"], self.extractors["visual"]
            kept = crops[: spec.max_len]
            log.info("visual features: %s on %d faces", spec.extractor, len(kept))
            feats = ext.extract(kept) if len(kept) else np.zeros((0, ext.dim), np.float32)
            item.visual = [np.zeros((0, ext.dim), np.float32)] * n_ctx + [_as_stored(feats, spec.dtype)]
            if self.model_cfg.fer_dim > 0:
                size = self.stage1_cfg.face_size
                item.faces = [np.zeros((0, size, size, 3), np.uint8)] * n_ctx + [kept]
            inputs["visual"] = {"extractor": spec.extractor, "source": spec.source, "rows": len(kept),
                                "faces_found": len(crops), "max_len": spec.max_len}
        wave = self._audio(video, WAVE_SR, notes if "audio" in self.specs else [])
        if "audio" in self.specs:
            spec, ext = self.specs["audio"], self.extractors["audio"]
            sr = ext.contract.sample_rate
            w = wave if sr == WAVE_SR else self._audio(video, sr, [])
            log.info("audio features: %s on %.2f s", spec.extractor, len(w) / sr)
            feats = ext.extract_batch([w])[0][: spec.max_len]
            item.audio = [np.zeros((0, ext.dim), np.float32)] * n_ctx + [_as_stored(feats, spec.dtype)]
            inputs["audio"] = {"extractor": spec.extractor, "source": spec.source, "rows": len(feats),
                               "seconds": round(len(w) / sr, 3), "max_len": spec.max_len}
        log.info("model: %s", "+".join(self.mods))
        probs = self.trainer.predict(_Dialogues([item]))["probs"][-1].astype(np.float32)
        for n in notes:
            log.warning("%s", n)
        return Prediction(video=str(video), text=text, speaker=speaker, context=context, probs=probs, stage1=res,
                          checkpoint=str(self.checkpoint.resolve()), modalities="+".join(self.mods), inputs=inputs,
                          notes=notes, wave=wave)
