"""Audio (per-encoder-frame) extractors: ``wav2vec2`` / ``hf_audio`` and ``fbank``.

Input: one utterance's mono waveform ``(n,) float32`` in [-1, 1] at 16 kHz. Output ``(L, D)
float32``, one row per encoder frame (wav2vec2: 50 frames/s, D = 768 for base; fbank: 100
frames/s, D = num_mel_bins).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.common.local_weights import LocalWeights, Place, WeightCheck, fmt_bytes, folder_bytes

from .registry import AudioExtractor, Contract, register_extractor, resolve_device

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _looks_like_path(model: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (``./x``, ``/abs``, ``a/b/c``) is a folder."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model or Path(model).exists()


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


def _hidden_size(folder: Path) -> int | None:
    """``hidden_size`` of the folder's config.json (None when it cannot be read)."""
    import json

    try:
        conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return int(conf["hidden_size"]) if "hidden_size" in conf else None
    except (OSError, ValueError):
        return None


@register_extractor("hf_audio")
class HFAudioExtractor(AudioExtractor):
    """Any transformers audio encoder (wav2vec2, HuBERT, WavLM, data2vec-audio) via AutoModel.

    Args:
        model: a local folder written by ``save_pretrained`` (config + weights +
            ``preprocessor_config.json``) or a hub id (``facebook/wav2vec2-base-960h``); with
            ``HF_HUB_OFFLINE=1`` a hub id must already be in the local HF cache.
        layer: ``-1`` = ``last_hidden_state``; ``k >= 0`` = ``hidden_states[k]`` (0 = the
            projected CNN features before the transformer, k = output of transformer layer k).
        device, amp: ``auto`` = CUDA when present; AMP (fp16 autocast) on CUDA only.
        max_seconds: waves longer than this are encoded in consecutive chunks (memory bound).
        random_init: ``wav2vec2`` only: the base architecture (``Wav2Vec2Config()``, 768-d) with
            random weights and no file at all (the demo pipeline; warns: meaningless features).
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """The ``model`` folder (config, preprocessor, weights) or the hub id in the local Hugging Face
        cache; its hidden size and parameter count when they can be read. random_init WARNs."""
        if cfg.get("random_init"):
            return LocalWeights([WeightCheck(
                "WARN", "random_init: true (demo only): a random base-size encoder, meaningless audio features",
                f"on real MELD set random_init: false and {key}.model to a local save_pretrained folder "
                "(models/wav2vec2-base-960h)", ".random_init")])
        model = str(cfg.get("model", "facebook/wav2vec2-base-960h"))
        folder = place.path(model)
        if folder.is_dir():
            gone = [f for f in ("config.json", "preprocessor_config.json") if not (folder / f).is_file()]
            size = folder_bytes(folder)
            if gone or not size:
                return LocalWeights([WeightCheck("FAIL", f"{folder} is not a complete save_pretrained folder "
                                                 f"(missing {', '.join(gone) or 'weight files'})",
                                                 hub_hint(model, "audio"), ".model")])
            dim = _hidden_size(folder)
            return LocalWeights([WeightCheck("OK", f"{folder} ({fmt_bytes(size)}, {dim or 768}-d)")], dim=dim,
                                params=size / 4)  # fp32 bytes -> parameters
        cached = None
        if not _looks_like_path(model):  # ``name`` or ``org/name``: also a hub id
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(model, "config.json")
            except Exception:  # noqa: BLE001 - any hub-library problem means "not found locally"
                cached = None
        if isinstance(cached, str):
            return LocalWeights([WeightCheck("OK", f"hub id {model} in the local Hugging Face cache "
                                             f"({Path(cached).parent})")], dim=_hidden_size(Path(cached).parent))
        if _looks_like_path(model) or _offline() or (place.root / Path(model).parts[0]).is_dir():
            hub = "" if _looks_like_path(model) else " (nor a hub id in the local Hugging Face cache)"
            return LocalWeights([WeightCheck("FAIL", f"{place.show(model)} does not exist{hub}",
                                             hub_hint(model, "audio"), ".model")])
        return LocalWeights([WeightCheck("WARN", f"hub id {model} is not cached: the features stage downloads it",
                                         f"save it once to models/ for offline runs: {hub_hint(model, 'audio')}",
                                         ".model")])

    def __init__(
        self,
        *,
        model: str = "facebook/wav2vec2-base-960h",
        layer: int = -1,
        device: str = "auto",
        amp: bool = True,
        max_seconds: float = 60.0,
        random_init: bool = False,
    ) -> None:
        import torch

        self.model_id = str(model)
        self.device = resolve_device(device)
        self.amp = bool(amp) and self.device.startswith("cuda")
        self.max_seconds = float(max_seconds)
        if self.max_seconds <= 0:
            raise ConfigError(f"max_seconds must be > 0, got {max_seconds}")
        if random_init:
            src = self._random_init()
        else:
            src = self._load(self.model_id)
        cfg = self.module.config
        n_layers = int(getattr(cfg, "num_hidden_layers", 0))
        if not (layer == -1 or 0 <= int(layer) <= n_layers):
            raise ConfigError(f"layer must be -1 or in 0..{n_layers} for {src!r}, got {layer}")
        self.layer = int(layer)
        sr = int(getattr(self.processor, "sampling_rate", SAMPLE_RATE))
        if sr != SAMPLE_RATE:
            logger.warning("%s expects %d Hz input; waves must be resampled to it", src, sr)
        strides = getattr(cfg, "conv_stride", None)
        hop = math.prod(strides) if strides else 320
        self._contract = Contract(
            modality="audio",
            dim=int(cfg.hidden_size),
            frame_rate=sr / hop,
            sample_rate=sr,
            normalization="feature extractor of the model (zero mean / unit variance when do_normalize)",
        )
        self.module.to(self.device)
        self._torch = torch
        logger.info("hf_audio: %s (%s, layer %d) on %s", src, type(self.module).__name__, self.layer, self.device)

    def _load(self, model_id: str) -> str:
        from transformers import AutoFeatureExtractor, AutoModel

        local = Path(os.path.expanduser(model_id))
        if _looks_like_path(model_id) and not local.is_dir():
            raise FileNotFoundError(f"audio model folder not found: {local}")
        kw = {"local_files_only": True} if (_offline() or local.is_dir()) else {}
        src = str(local) if local.is_dir() else model_id
        try:
            self.processor = AutoFeatureExtractor.from_pretrained(src, **kw)
            self.module = AutoModel.from_pretrained(src, **kw).eval()
        except OSError as e:
            where = "folder" if local.is_dir() else ("hub id (offline: only the local HF cache is searched)"
                                                     if _offline() else "hub id")
            raise FileNotFoundError(f"cannot load audio encoder from {where} {src!r}: {e}") from e
        return src

    def _random_init(self) -> str:
        raise ConfigError(f"random_init is only available for the wav2vec2 extractor, not {self.name!r}")

    @property
    def contract(self) -> Contract:
        return self._contract

    def extract_batch(self, waves) -> list[np.ndarray]:
        """Several utterances per forward, each with exactly the features it gets alone.

        Each wave is normalised alone (the model's feature extractor). Layer-norm encoders
        (``feat_extract_norm: layer``: wav2vec2-large-lv60, HuBERT-large, WavLM, data2vec-audio)
        run zero-padded batches with the attention mask (padded frames are zeroed before the
        positional convolution and never attended to). Group-norm encoders (wav2vec2-base, whose
        first convolution normalises each channel over the whole time axis, so padding would shift
        every frame of a shorter utterance) are batched pad-free: only waves of the same length
        share a forward. Waves longer than ``max_seconds`` or too short for one frame are encoded
        alone. ``tests/test_features.py`` checks batched against one-at-a-time features.
        """
        waves = [self.check_wave(w) for w in waves]
        limit = int(self.max_seconds * self._contract.sample_rate)
        alone = [i for i, w in enumerate(waves) if w.shape[0] < 400 or w.shape[0] > limit]
        batch = [i for i in range(len(waves)) if i not in alone]
        out: dict[int, np.ndarray] = {i: self.extract(waves[i]) for i in alone}
        if getattr(self.module.config, "feat_extract_norm", "layer") == "group":
            groups: dict[int, list[int]] = {}
            for i in batch:
                groups.setdefault(int(waves[i].shape[0]), []).append(i)
            parts = list(groups.values())  # pad-free: equal lengths only
        else:
            parts = [batch] if batch else []
        for part in parts:
            if len(part) == 1:
                out[part[0]] = self.extract(waves[part[0]])
            else:
                out.update(zip(part, self._forward_padded([waves[i] for i in part])))
        return [out[i] for i in range(len(waves))]

    def _forward_padded(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """One forward of zero-padded waves with their attention mask -> each wave's (L_i, D)."""
        torch = self._torch
        sr = self._contract.sample_rate
        norm = [self.processor(w, sampling_rate=sr, return_tensors="np")["input_values"][0] for w in waves]
        n = max(len(v) for v in norm)
        x = np.zeros((len(norm), n), np.float32)  # (B, n)
        mask = np.zeros((len(norm), n), np.int64)
        for b, v in enumerate(norm):
            x[b, : len(v)] = v
            mask[b, : len(v)] = 1
        lens = self.module._get_feat_extract_output_lengths(torch.tensor([len(v) for v in norm]))
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            res = self.module(torch.from_numpy(x).to(self.device),
                              attention_mask=torch.from_numpy(mask).to(self.device),
                              output_hidden_states=self.layer >= 0)
            h = res.last_hidden_state if self.layer < 0 else res.hidden_states[self.layer]  # (B, L, D)
        h = h.float().cpu().numpy()
        return [np.ascontiguousarray(h[b, : int(lens[b])], dtype=np.float32) for b in range(len(norm))]

    def _encode(self, wave: np.ndarray) -> np.ndarray:
        torch = self._torch
        inputs = self.processor(wave, sampling_rate=self._contract.sample_rate, return_tensors="pt")
        x = inputs["input_values"].to(self.device)  # (1, n)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            out = self.module(x, output_hidden_states=self.layer >= 0)
            h = out.last_hidden_state if self.layer < 0 else out.hidden_states[self.layer]  # (1, L, D)
        return h[0].float().cpu().numpy()

    def extract(self, wave: np.ndarray) -> np.ndarray:
        wave = self.check_wave(wave)  # (n,)
        hop = int(round(self._contract.sample_rate / self._contract.frame_rate))
        if wave.shape[0] < 400:  # shorter than the conv receptive field: no frame
            return np.zeros((0, self.dim), np.float32)
        chunk = int(self.max_seconds * self._contract.sample_rate) // hop * hop
        parts = [self._encode(wave[i : i + chunk]) for i in range(0, wave.shape[0], chunk)
                 if wave[i : i + chunk].shape[0] >= 400]
        return np.concatenate(parts, 0).astype(np.float32, copy=False)  # (L, D)


@register_extractor("wav2vec2")
class Wav2Vec2Extractor(HFAudioExtractor):
    """``hf_audio`` defaulting to FacialMMT's ``facebook/wav2vec2-base-960h`` (768-d, 50 frames/s)."""

    def _random_init(self) -> str:
        import warnings

        from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

        warnings.warn("wav2vec2 with random_init=True: features are meaningless (demo/tests only)", stacklevel=3)
        import torch

        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same random encoder every run (deterministic demo outputs)
            self.module = Wav2Vec2Model(Wav2Vec2Config()).eval()
        self.processor = Wav2Vec2FeatureExtractor()
        return "random wav2vec2-base"


@register_extractor("fbank")
class FbankExtractor(AudioExtractor):
    """Kaldi log-mel filterbank (``torchaudio.compliance.kaldi.fbank``), no weights.

    Args:
        num_mel_bins: D (default 80).
        frame_length_ms, frame_shift_ms: 25 / 10 -> 100 frames/s; L = 1 + (n - 400) // 160.
        dither: 0 keeps the output deterministic.
        scale: the wave is multiplied by this first (32768: Kaldi's int16 range).
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        return LocalWeights([WeightCheck("OK", "no weights (Kaldi filterbank)")], dim=int(cfg.get("num_mel_bins", 80)))

    def __init__(
        self,
        *,
        num_mel_bins: int = 80,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        dither: float = 0.0,
        scale: float = 32768.0,
    ) -> None:
        if int(num_mel_bins) < 1:
            raise ConfigError(f"num_mel_bins must be >= 1, got {num_mel_bins}")
        if frame_shift_ms <= 0 or frame_length_ms <= 0:
            raise ConfigError("frame_length_ms and frame_shift_ms must be > 0")
        self.num_mel_bins = int(num_mel_bins)
        self.frame_length_ms = float(frame_length_ms)
        self.frame_shift_ms = float(frame_shift_ms)
        self.dither = float(dither)
        self.scale = float(scale)

    @property
    def contract(self) -> Contract:
        return Contract(
            modality="audio",
            dim=self.num_mel_bins,
            frame_rate=1000.0 / self.frame_shift_ms,
            sample_rate=SAMPLE_RATE,
            normalization=f"wave * {self.scale:g}, Kaldi log-mel fbank",
        )

    def extract(self, wave: np.ndarray) -> np.ndarray:
        import torch
        from torchaudio.compliance import kaldi

        wave = self.check_wave(wave)  # (n,)
        if wave.shape[0] < int(SAMPLE_RATE * self.frame_length_ms / 1000):
            return np.zeros((0, self.num_mel_bins), np.float32)
        x = torch.from_numpy(wave * self.scale).unsqueeze(0)  # (1, n)
        feats = kaldi.fbank(
            x,
            num_mel_bins=self.num_mel_bins,
            frame_length=self.frame_length_ms,
            frame_shift=self.frame_shift_ms,
            dither=self.dither,
            sample_frequency=float(SAMPLE_RATE),
        )  # (L, num_mel_bins)
        return feats.numpy().astype(np.float32, copy=False)
