"""The trainer: Accelerate (device, precision, DDP), dialogue batches, two learning rates, warmup +
linear decay, clipping of UNSCALED gradients, every RNG seeded, best checkpoint by dev weighted F1
with early stopping, and the facial-expression (FER) branch interleaved by a step ratio.

    trainer = Trainer(model, TrainConfig(...), fer=fer_model, fer_cfg=..., aux_data=affwild_dataset)
    best = trainer.fit(train_dialogues, dev_dialogues, out_dir)   # -> best dev metrics
    preds = trainer.predict(test_dialogues)                       # utt_ids, labels, predictions, probs

FacialMMT's defects fixed here: any batch size is correct (whole dialogues per
batch, per-utterance masks, no index arithmetic), each dialogue is encoded once per step, one
frame-distribution rule for training and evaluation (``train.fer_samples``; seeded noise at
evaluation), gradients are unscaled before
clipping (``accelerator.clip_grad_norm_``), Python/NumPy/torch are seeded, early stopping with
patience. The two tasks interleave by step (``train.aux_schedule: interleave``) or, as in
FacialMMT, one full Aff-Wild2 pass opens every epoch (``epoch_pass``).
``train.preset: facialmmt`` (:func:`apply_preset`) replaces the section's values by FacialMMT's.
``train.fer_joint`` decides whether MER gradients update the FER network (else it runs frozen,
in eval mode, under no_grad during MER steps).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stage1_face_extraction.common.config import ConfigError

from .checkpoint import save_checkpoint
from .metrics import classification_metrics

log = logging.getLogger(__name__)

__all__ = ["PRESETS", "TrainConfig", "Trainer", "apply_preset", "make_accelerator"]

PRECISIONS = ("fp32", "bf16", "fp16")  # not "no": YAML writers (dvc exp run -S) turn it into false
AUX_SCHEDULES = ("interleave", "epoch_pass")
AUX_AUGMENTS = ("project", "facialmmt")

#: ``train.preset`` -> the ``train`` values it sets (FacialMMT's published training settings).
#: FacialMMT trains on one utterance at a time with 4 accumulated (4 per optimizer step); batches
#: here are whole dialogues, so the closest is one dialogue per step (~9.6 MELD utterances).
PRESETS: dict[str, dict[str, Any]] = {
    "facialmmt": {
        "speaker_names": False,  # the utterance text alone
        "lr_encoder": 7e-6,  # one learning rate (trg_lr) for every MER parameter
        "lr": 7e-6,
        "weight_decay": 0.01,
        "warmup": 0.1,
        "clip": 0.8,
        "batch_dialogues": 1,
        "max_utterances": 4,
        "grad_accum": 1,
        "seed": 1111,
        "max_tokens": 512,
        "max_audio_len": "mean+3std",
        "max_visual_len": "mean+3std",
        "aux_schedule": "epoch_pass",  # a full Aff-Wild2 pass per epoch ...
        "aux_batch": 150,  # ... at batch 150
        "aux_lr": 5e-5,
        "aux_augment": "facialmmt",  # grayscale 0.8, jitter 0.2 (hue 0.4), blur 0.5
        "fer_joint": False,  # MER gradients never update the Swin
        "fer_tau": 1.0,
        "fer_threshold": 0.2,
        "fer_samples": 1,  # one Gumbel-softmax sample, in training and evaluation
        "ema": 0.0,  # the trained weights themselves are evaluated
    },
}


@dataclass
class TrainConfig:
    """``train`` section of params.yaml."""

    epochs: int = 10
    batch_dialogues: int = 4  # dialogues per batch (all their utterances are classified)
    max_utterances: int = 64  # ... and at most this many utterances (unless one dialogue is larger)
    grad_accum: int = 1
    lr_encoder: float = 1e-5  # the pretrained text encoder
    lr: float = 1e-4  # every new layer
    weight_decay: float = 0.01
    fused_adamw: bool = True  # torch's fused AdamW kernel (one pass over all parameters; ~4x faster on a CPU)
    warmup: float = 0.1  # share of the optimizer steps
    clip: float = 1.0  # max gradient norm (of unscaled gradients)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 needs a GPU; bf16 also runs on CPU)
    seed: int = 1111
    seeds: list[int] = field(default_factory=list)  # several runs: mean and std are reported
    patience: int = 3  # epochs without a better dev weighted F1 before stopping
    eval_every: int = 0  # optimizer steps between dev evaluations (0: once per epoch)
    ema: float = 0.0  # decay of an exponential moving average of the weights, evaluated and saved instead (0: off)
    max_tokens: int = 512  # dialogue token budget
    max_audio_len: int | str = "mean+3std"  # frames kept per utterance: an int or mean+3std of train
    max_visual_len: int | str = "mean+3std"
    speaker_names: bool = False  # "Name: utterance" in the text
    text_context: str = "dialogue"  # dialogue (one row, past + future turns) | past:N[,future:M] (row per utterance)
    workers: int = 0  # DataLoader processes
    cpu: bool = False  # force the CPU even with a GPU
    # facial-expression branch
    aux_ratio: float = 1.0  # Aff-Wild2 steps per MER step (0: no auxiliary training)
    aux_batch: int = 32
    aux_lr: float = 5e-5
    fer_joint: bool = False  # True: MER gradients update the FER network too (joint training)
    fer_tau: float = 1.0  # softmax temperature of the frame distributions
    fer_threshold: float = 0.2  # frames whose importance (sum of squared probabilities) is lower are dropped
    fer_batch: int = 64  # faces per FER forward
    fer_samples: int = 0  # frame distributions in training AND evaluation: 0 softmax, K mean of K Gumbel samples
    aux_schedule: str = "interleave"  # interleave (aux_ratio steps per MER step) | epoch_pass (FacialMMT)
    aux_augment: str = "project"  # Aff-Wild2 augmentation: project | facialmmt (its effective probabilities)
    preset: str | None = None  # facialmmt: FacialMMT's settings replace this section's (apply_preset)
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.epochs < 1 or self.batch_dialogues < 1 or self.grad_accum < 1 or self.max_utterances < 1:
            raise ConfigError("train: epochs, batch_dialogues, grad_accum and max_utterances must be >= 1")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"train.ema must be in [0, 1) (0: off), got {self.ema}")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"train.warmup must be in [0, 1), got {self.warmup}")
        if self.aux_ratio < 0 or self.patience < 1:
            raise ConfigError("train: aux_ratio >= 0 and patience >= 1")
        from stage2_mer.data.text import parse_context

        try:
            parse_context(self.text_context)
        except ValueError as exc:
            raise ConfigError(f"train.text_context: {exc}") from None
        if self.fer_samples < 0:
            raise ConfigError(f"train.fer_samples must be >= 0, got {self.fer_samples}")
        for key, allowed in (("aux_schedule", AUX_SCHEDULES), ("aux_augment", AUX_AUGMENTS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"train.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"train.preset must be null or one of {sorted(PRESETS)}, got {self.preset!r}")
        from stage2_mer.features.store import length_cap

        for key in ("max_audio_len", "max_visual_len"):
            try:
                length_cap([1], getattr(self, key))
            except ValueError as exc:
                raise ConfigError(f"train.{key}: {exc}") from None


def apply_preset(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its preset's values (:data:`PRESETS`) in place of the section's; each changed key
    is logged. No preset: ``cfg`` itself. Call it once, where the section is read."""
    if cfg.preset is None:
        return cfg
    values = PRESETS[cfg.preset]
    changed = {k: (getattr(cfg, k), v) for k, v in values.items() if getattr(cfg, k) != v}
    for k, (old, new) in sorted(changed.items()):
        log.info("train.preset %s: train.%s %r -> %r", cfg.preset, k, old, new)
    return dataclasses.replace(cfg, **values)


def linear_warmup_decay(step: int, total: int, warmup: int) -> float:
    """LR multiplier: 0 -> 1 over ``warmup`` steps, then linearly to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def adamw(params, fused: bool = True, **kwargs):
    """``torch.optim.AdamW`` over ``params``; ``fused``: torch's fused kernel, which updates every
    parameter in one pass instead of a Python loop over tensors (on a 2-core CPU 0.02 s instead of
    0.09 s per step for a 22.7M-parameter encoder; the same update up to float rounding)."""
    import torch

    return torch.optim.AdamW(params, fused=fused, **kwargs)


def _cycle(loader) -> Iterator:
    while True:
        yield from loader


def make_accelerator(precision: str, cpu: bool = False):
    """An ``accelerate.Accelerator`` for ``train.precision`` / ``train.cpu``.

    Accelerate keeps ONE state per process and refuses a second Accelerator with another precision
    ("AcceleratorState has already been initialized"): a bf16 Trainer after an fp32 one in the same
    Python process (a notebook, a sweep, the tests) would fail. Outside a distributed run the state
    is reset so that every Trainer gets what its config asks; inside one it is a ConfigError (every
    process of a run must use the same settings)."""
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState

    mixed = "no" if precision == "fp32" else precision
    try:
        return Accelerator(mixed_precision=mixed, cpu=cpu)
    except ValueError as e:
        if "already been initialized" not in str(e):
            raise
        if PartialState().use_distributed:
            raise ConfigError(f"train.precision {precision!r} / train.cpu {cpu} differ from what this distributed "
                              "run was started with; all of its trainers must use the same") from e
    log.debug("accelerate state reset for precision %s, cpu %s", precision, cpu)
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=mixed, cpu=cpu)


class Trainer:
    """Fit / evaluate one MER model (optionally with its FER network)."""

    def __init__(self, model, cfg: TrainConfig, fer=None, fer_cfg: Any = None, aux_data=None,
                 model_config: dict | None = None, fer_config: dict | None = None,
                 meta: dict | None = None, pad_id: int = 0,
                 on_log: Callable[[dict], None] | None = None) -> None:
        from accelerate.utils import set_seed

        self.cfg = cfg
        set_seed(cfg.seed)
        self.acc = make_accelerator(cfg.precision, cfg.cpu)
        self.model, self.fer, self.fer_cfg, self.aux_data = model, fer, fer_cfg, aux_data
        self.model_config, self.fer_config = model_config or {}, fer_config
        self.meta, self.pad_id, self.on_log = dict(meta or {}), pad_id, on_log
        # the FER input size, read before Accelerate may wrap the module (DDP hides .cfg)
        self._fer_size = int(getattr(getattr(fer, "cfg", None), "image_size", 224)) if fer is not None else 224
        self._fer_channels = str(getattr(getattr(fer, "cfg", None), "channel_order", "rgb"))
        self._eval_generator = None  # set by predict when fer_samples > 0
        self._filter_counts: dict[str, int] = {}

    @classmethod
    def for_inference(cls, model, cfg: TrainConfig, fer=None, fer_cfg: Any = None, model_config: dict | None = None,
                      pad_id: int = 0) -> Trainer:
        """A trainer that only predicts (the ``evaluate`` stage, ``facialmmt predict``): the model and
        the FER network are placed by Accelerate (device, precision) as :meth:`fit` places them."""
        trainer = cls(model, cfg, fer=fer, fer_cfg=fer_cfg, model_config=model_config, pad_id=pad_id)
        trainer.model = trainer.acc.prepare(model)
        if fer is not None:
            trainer.fer = trainer.acc.prepare(fer)
        return trainer

    # ------------------------------------------------------------------------------- batches

    def _loader(self, dataset, shuffle: bool, epoch_seed: int = 0):
        import torch
        from torch.utils.data import DataLoader

        from stage2_mer.data import DialogueBatchSampler, collate

        sampler = DialogueBatchSampler(dataset, self.cfg.batch_dialogues, self.cfg.max_utterances,
                                       shuffle=shuffle, seed=self.cfg.seed + epoch_seed)
        pad = self.pad_id
        # an evaluation loader draws its base seed from its own generator, not the global RNG: predicting
        # (dev evaluations included) never changes the random numbers the training uses next
        generator = None if shuffle else torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=lambda items: collate(items, pad),
                          num_workers=self.cfg.workers, generator=generator), sampler

    def _face_inputs(self, batch: dict, training: bool) -> None:
        """Run the FER network over the batch's real face crops and replace the visual input with
        the kept frames' ``[features ; 7-d distribution]`` packed to the front (FacialMMT's filter, with
        Gumbel noise only in training and per-utterance masks instead of index arithmetic)."""
        if self.fer is None or "faces" not in batch or "visual" not in batch:
            return
        import torch

        from stage2_mer.fer import fer_distributions, filter_counts, keep_mask, pack_kept, scatter_frames

        cfg = self.cfg
        visual, mask = batch["visual"], batch["visual_mask"]  # (U, Lv, Dv), (U, Lv)
        faces = batch["faces"]  # (M, S, S, 3) uint8, M = mask.sum()
        if faces.shape[0] != int(mask.sum()):
            raise ValueError(f"{faces.shape[0]} face crops for {int(mask.sum())} visual frames")
        if faces.shape[0]:
            joint = training and cfg.fer_joint
            self.fer.train(joint)
            # the same rule in both phases; at evaluation the noise (if any) comes from a seeded generator
            flat = fer_distributions(self.fer, faces, tau=cfg.fer_tau, samples=cfg.fer_samples, joint=joint,
                                     generator=None if training else self._eval_generator,
                                     batch_size=cfg.fer_batch, size=self._fer_size,
                                     channel_order=self._fer_channels)  # (M, 7)
            probs = scatter_frames(flat.to(visual.dtype), mask)  # (U, Lv, 7)
        else:
            probs = visual.new_zeros((*mask.shape, 7))
        keep = keep_mask(probs, mask, threshold=cfg.fer_threshold)  # (U, Lv)
        if not training:
            for k, v in filter_counts(probs, mask, keep, cfg.fer_threshold).items():
                self._filter_counts[k] = self._filter_counts.get(k, 0) + v
        packed, new_mask = pack_kept(torch.cat([visual, probs], dim=-1), keep)  # (U, Lv, Dv + 7)
        d = visual.shape[-1]
        batch["visual"], batch["face_probs"], batch["visual_mask"] = packed[..., :d], packed[..., d:], new_mask

    def _to_device(self, batch: dict) -> dict:
        import torch

        return {k: v.to(self.acc.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # ---------------------------------------------------------------------------------- train

    def fit(self, train_ds, dev_ds, out_dir: str | Path) -> dict:
        """Train; the best dev checkpoint goes to ``out_dir``; returns its dev metrics (+ epoch)."""
        import torch

        cfg = self.cfg
        loader, sampler = self._loader(train_ds, shuffle=True)
        groups = self.model.param_groups() if hasattr(self.model, "param_groups") else (
            [], [p for p in self.model.parameters() if p.requires_grad])
        enc, new = groups
        param_groups = [{"params": new, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
        if enc:
            param_groups.append({"params": enc, "lr": cfg.lr_encoder, "weight_decay": cfg.weight_decay})
        if self.fer is not None and cfg.fer_joint:
            param_groups.append({"params": list(self.fer.parameters()), "lr": cfg.aux_lr, "weight_decay": 0.0})
        opt = adamw(param_groups, fused=cfg.fused_adamw)
        steps_per_epoch = math.ceil(len(sampler) / cfg.grad_accum)
        total = steps_per_epoch * cfg.epochs
        warm = int(cfg.warmup * total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_warmup_decay(s, total, warm))
        aux = None
        if self.fer is not None and self.aux_data is not None and cfg.aux_ratio > 0:
            aux = self._aux_setup(total)
        self.model, opt, loader, sched = self.acc.prepare(self.model, opt, loader, sched)
        if self.fer is not None:
            self.fer = self.acc.prepare(self.fer)
        loss_fn = torch.nn.CrossEntropyLoss()
        from .ema import ParameterEMA

        ema = ParameterEMA(self.acc.unwrap_model(self.model), cfg.ema) if cfg.ema > 0 else None
        best: dict = {"weighted_f1": -1.0}
        bad_epochs, step, aux_debt, aux_loss = 0, 0, 0.0, float("nan")
        for epoch in range(cfg.epochs):
            sampler.set_epoch(epoch)
            improved_in_epoch, validated_at = False, -1
            if aux is not None and cfg.aux_schedule == "epoch_pass":
                aux_loss = self._aux_epoch(aux, epoch)
            self.model.train()
            for k, batch in enumerate(loader):
                batch = self._to_device(batch)
                self._face_inputs(batch, training=True)
                with self.acc.accumulate(self.model):
                    logits = self.model(batch)  # (U, 7)
                    loss = loss_fn(logits.float(), batch["labels"])
                    self.acc.backward(loss / cfg.grad_accum if cfg.grad_accum > 1 else loss)
                    last = (k + 1) % cfg.grad_accum == 0 or k + 1 == len(loader)
                    if last:
                        if cfg.clip > 0:
                            params = list(self.model.parameters())
                            if self.fer is not None and cfg.fer_joint:
                                params += list(self.fer.parameters())
                            self.acc.clip_grad_norm_(params, cfg.clip)  # unscaled first
                        opt.step()
                        sched.step()
                        opt.zero_grad(set_to_none=True)
                        if ema is not None:
                            ema.update()
                        step += 1
                if last and aux is not None and cfg.aux_schedule == "interleave":
                    aux_debt += cfg.aux_ratio
                    while aux_debt >= 1.0:
                        aux_loss = self._aux_step(aux)
                        aux_debt -= 1.0
                    if step % cfg.log_every == 0:
                        self._log({"step": step, "aux_loss": aux_loss})
                if step % cfg.log_every == 0 and last:
                    self._log(
                        {"epoch": epoch, "step": step, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0]}
                    )
                if cfg.eval_every and last and step % cfg.eval_every == 0:
                    best, improved = self._validate(dev_ds, best, out_dir, epoch, step, ema)
                    improved_in_epoch, validated_at = improved_in_epoch or improved, step
            if validated_at != step:  # not validated at this very step already (eval_every dividing it)
                best, improved = self._validate(dev_ds, best, out_dir, epoch, step, ema)
                improved_in_epoch = improved_in_epoch or improved
            bad_epochs = 0 if improved_in_epoch else bad_epochs + 1
            if bad_epochs >= cfg.patience:
                log.info("early stop after epoch %d: no better dev weighted F1 for %d epochs", epoch, bad_epochs)
                break
        return best

    def _aux_setup(self, total: int) -> dict:
        import torch
        from torch.utils.data import DataLoader

        cfg = self.cfg
        loader = DataLoader(
            self.aux_data,
            batch_size=cfg.aux_batch,
            shuffle=True,
            drop_last=len(self.aux_data) > cfg.aux_batch,
            num_workers=cfg.workers,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        opt = adamw(self.fer.parameters(), fused=cfg.fused_adamw, lr=cfg.aux_lr, weight_decay=0.0)
        if cfg.aux_schedule == "epoch_pass":  # FacialMMT: one whole pass over Aff-Wild2 per epoch
            n_aux = max(1, cfg.epochs * len(loader))
        else:
            n_aux = max(1, int(total * cfg.aux_ratio))
        warm = int(cfg.warmup * n_aux)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_warmup_decay(s, n_aux, warm))
        loader, opt, sched = self.acc.prepare(loader, opt, sched)
        return {"it": _cycle(loader), "loader": loader, "opt": opt, "sched": sched}

    def _aux_epoch(self, aux: dict, epoch: int) -> float:
        """One full pass over the Aff-Wild2 loader (``aux_schedule: epoch_pass``); the mean loss."""
        losses = [self._aux_step(aux, batch) for batch in aux["loader"]]
        mean = float(np.mean(losses)) if losses else float("nan")
        self._log({"epoch": epoch, "aux_steps": len(losses), "aux_loss": mean})
        return mean

    def _aux_step(self, aux: dict, batch: tuple | None = None) -> float:
        import torch

        images, labels = batch if batch is not None else next(aux["it"])
        self.fer.train()
        logits = self.fer(images)  # (N, 7)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        self.acc.backward(loss)
        if self.cfg.clip > 0:
            self.acc.clip_grad_norm_(self.fer.parameters(), self.cfg.clip)
        aux["opt"].step()
        aux["sched"].step()
        aux["opt"].zero_grad(set_to_none=True)
        return float(loss.detach())

    def _validate(self, dev_ds, best: dict, out_dir, epoch: int, step: int, ema=None) -> tuple[dict, bool]:
        """Dev metrics (of the weight average when there is one); a better model is saved (the same weights)."""
        if ema is not None:
            with ema.applied():
                return self._validate(dev_ds, best, out_dir, epoch, step)
        pred = self.predict(dev_ds)
        m = classification_metrics(pred["labels"], pred["predictions"])
        rec = {"epoch": epoch, "step": step, "dev_weighted_f1": m["weighted_f1"], "dev_macro_f1": m["macro_f1"]}
        if pred.get("fer_filter"):
            rec["dev_kept_frame_fraction"] = pred["fer_filter"]["kept_fraction"]
        self._log(rec)
        if m["weighted_f1"] <= best["weighted_f1"]:
            return best, False
        best = {**m, "epoch": epoch, "step": step}
        if pred.get("fer_filter"):
            best["fer_filter"] = pred["fer_filter"]
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            save_checkpoint(
                out_dir,
                self.acc.unwrap_model(self.model),
                self.model_config,
                fer=self.acc.unwrap_model(self.fer) if self.fer is not None else None,
                fer_config=self.fer_config,
                metrics={k: m[k] for k in ("weighted_f1", "macro_f1", "accuracy")},
                epoch=epoch,
                step=step,
                seed=self.cfg.seed,
                **self.meta,
            )
        return best, True

    # -------------------------------------------------------------------------------- predict

    def predict(self, dataset) -> dict:
        """``utt_ids``, ``labels``, ``predictions`` (lists) and ``probs`` (U, 7) over ``dataset``
        (eval mode, deterministic: Gumbel noise, with ``fer_samples`` > 0, is drawn from a generator
        seeded by ``train.seed``), and with a FER network ``fer_filter``: what the frame filter
        did (:func:`stage2_mer.fer.filter_counts` summed, plus ``passing_fraction`` and
        ``kept_fraction`` of the real frames)."""
        import torch

        loader, _ = self._loader(dataset, shuffle=False)
        model = self.model.to(self.acc.device)  # also before fit / without prepare
        self._filter_counts = {}
        self._eval_generator = None
        if self.fer is not None:
            self.fer.to(self.acc.device)
            if self.cfg.fer_samples > 0:
                self._eval_generator = torch.Generator(device=self.acc.device).manual_seed(self.cfg.seed)
        model.eval()
        utt_ids, labels, probs = [], [], []
        with torch.inference_mode():
            for batch in loader:
                ids = batch["utt_ids"]
                batch = self._to_device(batch)
                self._face_inputs(batch, training=False)
                p = torch.softmax(model(batch).float(), dim=-1)  # (U, 7)
                utt_ids.extend(ids)
                labels.extend(batch["labels"].tolist())
                probs.append(p.cpu().numpy())
        model.train()
        p = np.concatenate(probs, 0) if probs else np.zeros((0, 7), np.float32)
        out = {"utt_ids": utt_ids, "labels": labels, "predictions": p.argmax(1).tolist(), "probs": p}
        if self._filter_counts:
            c = dict(self._filter_counts)
            valid = max(1, c["valid"])
            out["fer_filter"] = {**c, "passing_fraction": round(c["passing"] / valid, 4),
                                 "kept_fraction": round(c["kept"] / valid, 4)}
        return out

    def _log(self, rec: dict) -> None:
        if self.on_log is not None and self.acc.is_main_process:
            self.on_log(rec)
        log.info("%s", " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()))
