"""Coupling the FER branch to the MER model: per-frame emotion distributions, frame filtering.

FacialMMT's frame filter, with its defects fixed:

1. The real face frames of every utterance in a batch go through the Swin together (only real
   frames, no padded images; resized on the device: :func:`faces_to_input`).
2. Each frame's 7-way distribution, by ONE rule in training and evaluation (``train.fer_samples``):
   ``samples=0`` the deterministic ``softmax(logits / tau)``; ``samples=K`` the mean of K
   Gumbel-softmax samples ``softmax((logits + g) / tau)`` (FacialMMT: K = 1, in both phases; at
   evaluation the caller passes a seeded generator so scores do not depend on the RNG):
   :func:`frame_distributions`. Noise in one phase only would train the model on frames that pass
   the threshold and test it on frames that do not (at tau 1 a Gumbel sample of a uniform
   distribution has sum p^2 ~0.37, the clean softmax 0.14).
3. A frame's importance is ``sum_k p_k^2`` (1/7 for a uniform distribution, 1 for one-hot):
   :func:`importance`.
4. Frames with importance > threshold (0.2) are kept; an utterance where none passes keeps all its
   valid frames: :func:`keep_mask`, one vectorised (U, Lv) mask, no per-utterance index
   arithmetic (FacialMMT's offsets were only right for batch size 1).
5. Kept frames are packed to the front in order, padded positions zeroed, and a new mask is built:
   :func:`pack_kept`; :func:`filter_frames` does 4 + 5 on ``[features ; distribution]``;
   :func:`filter_counts` counts what the filter did (the kept-frame fraction of the metrics).

How the Swin takes part in the MER step is an explicit choice (FacialMMT left it implicit), :func:`fer_distributions`:
``joint=False`` (default) runs it frozen, in eval mode under ``no_grad`` (no drop-path, no
BatchNorm drift towards MELD faces, no wasted backward); ``joint=True`` leaves the mode to the
caller and lets MER gradients reach the Swin, for a true joint loss with the Swin parameters in
the MER optimiser. An utterance with no face frame simply has an all-False mask: the
downstream pooling must accept it.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from .swin import CHANNEL_ORDERS, FER_MEAN, FER_STD

logger = logging.getLogger(__name__)

__all__ = [
    "IMPORTANCE_THRESHOLD",
    "faces_to_input",
    "fer_distributions",
    "filter_counts",
    "filter_frames",
    "frame_distributions",
    "importance",
    "keep_mask",
    "pack_kept",
    "scatter_frames",
]

#: FacialMMT's ``--FacialEmoImpor_threshold``.
IMPORTANCE_THRESHOLD = 0.2


def faces_to_input(
    crops: np.ndarray | torch.Tensor, *, size: int = 224, device: torch.device | str | None = None,
    channel_order: str = "rgb",
) -> torch.Tensor:
    """Face crops (N, H, W, 3) uint8 RGB -> Swin input (N, 3, size, size) float32, (x - 0.5) / 0.5,
    channels in ``channel_order`` (``bgr``: swapped, what the face-pretrained Swin was trained on).

    Resized with ``F.interpolate`` (bicubic, antialiased when shrinking, clamped to [0, 1]) on the
    tensor's device, or on ``device`` (the uint8 crops are moved first: 4x less to transfer).
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    x = torch.as_tensor(crops)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"crops must be (N, H, W, 3) uint8 RGB, got {x.dtype} {tuple(x.shape)}")
    if device is not None:
        x = x.to(device, non_blocking=True)
    if channel_order == "bgr":
        x = x.flip(-1)
    x = x.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)  # (N, 3, H, W) in [0, 1]
    if x.shape[0] and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp_(0.0, 1.0)
    elif x.shape[0] == 0:
        x = x.new_zeros((0, 3, size, size))
    mean = torch.tensor(FER_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(FER_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std  # (N, 3, size, size)


def frame_distributions(
    logits: torch.Tensor, tau: float = 1.0, *, samples: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-frame emotion distributions: logits (..., 7) -> probabilities (..., 7), float32.

    ``samples=0``: the deterministic ``softmax(logits / tau)``. ``samples=K >= 1``: the mean of K
    Gumbel-softmax soft samples ``softmax((logits + g) / tau)``, g ~ Gumbel(0, 1) (drawn from
    ``generator`` when given; it must live on the logits' device). The same rule must be used in
    training and evaluation (module docstring).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    z = logits.float()
    if samples == 0:
        return torch.softmax(z / tau, dim=-1)
    out = torch.zeros_like(z)
    for _ in range(samples):
        e = torch.empty_like(z).exponential_(generator=generator).clamp_(min=torch.finfo(z.dtype).tiny)
        out += torch.softmax((z - e.log()) / tau, dim=-1)  # + Gumbel(0, 1) noise
    return out / samples


def importance(probs: torch.Tensor) -> torch.Tensor:
    """Frame importance ``sum_k p_k^2``: probs (..., K) -> (...,). Uniform: 1/K; one-hot: 1."""
    return probs.square().sum(dim=-1)


def keep_mask(probs: torch.Tensor, mask: torch.Tensor, threshold: float = IMPORTANCE_THRESHOLD) -> torch.Tensor:
    """Which frames to keep: probs (U, Lv, K), mask (U, Lv) bool (valid frames) -> (U, Lv) bool.

    A valid frame is kept when its importance exceeds ``threshold``; an utterance where no valid
    frame passes keeps all its valid frames (FacialMMT's fallback). Padded frames are never kept.
    """
    mask = mask.bool()
    passes = (importance(probs) > threshold) & mask  # (U, Lv)
    any_pass = passes.any(dim=-1, keepdim=True)  # (U, 1)
    return torch.where(any_pass, passes, mask)


def filter_counts(probs: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor,
                  threshold: float = IMPORTANCE_THRESHOLD) -> dict[str, int]:
    """What :func:`keep_mask` did: probs (U, Lv, K), mask and keep (U, Lv) -> counts ``valid``
    (real frames), ``passing`` (importance > threshold), ``kept`` (used: passing, or all of a
    fallback utterance's), ``utterances`` (with a frame) and ``fallback`` (utterances where none passed)."""
    mask = mask.bool()
    passes = (importance(probs) > threshold) & mask
    has = mask.any(dim=-1)
    return {"valid": int(mask.sum()), "passing": int(passes.sum()), "kept": int((keep.bool() & mask).sum()),
            "utterances": int(has.sum()), "fallback": int((has & ~passes.any(dim=-1)).sum())}


def pack_kept(x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move kept frames to the front, in order: x (U, Lv, D), keep (U, Lv) bool ->
    (x_packed (U, Lv, D) with zeros after the kept frames, mask (U, Lv) bool).

    A stable argsort of ``~keep`` along time puts kept positions first without reordering them.
    """
    keep = keep.bool()
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)  # (U, Lv)
    packed = x.gather(1, order.unsqueeze(-1).expand_as(x))  # (U, Lv, D)
    new_mask = keep.gather(1, order)  # (U, Lv): a prefix of True per row
    packed = torch.where(new_mask.unsqueeze(-1), packed, torch.zeros((), dtype=x.dtype, device=x.device))
    return packed, new_mask


def filter_frames(
    feats: torch.Tensor, probs: torch.Tensor, mask: torch.Tensor, threshold: float = IMPORTANCE_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """The visual MER input: feats (U, Lv, D), probs (U, Lv, K), mask (U, Lv) ->
    (x (U, Lv, D + K) = kept ``[feats ; probs]`` packed to the front, zero-padded; mask (U, Lv))."""
    keep = keep_mask(probs, mask, threshold)
    x = torch.cat([feats, probs.to(feats.dtype)], dim=-1)  # (U, Lv, D + K)
    return pack_kept(x, keep)


def scatter_frames(flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-frame rows of the real frames back into padded form: flat (M, K), mask (U, Lv) with M
    True entries (row-major: utterance by utterance, frames in order) -> (U, Lv, K), zeros at pads."""
    mask = mask.bool()
    n = int(mask.sum())
    if flat.shape[0] != n:
        raise ValueError(f"{flat.shape[0]} frame rows for a mask with {n} valid frames")
    out = flat.new_zeros((*mask.shape, *flat.shape[1:]))
    out[mask] = flat
    return out


def fer_distributions(
    model: torch.nn.Module,
    crops: np.ndarray | torch.Tensor,
    *,
    tau: float = 1.0,
    samples: int = 0,
    joint: bool = False,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    size: int | None = None,
    channel_order: str | None = None,
) -> torch.Tensor:
    """Emotion distributions of real face frames: crops (M, H, W, 3) uint8 RGB -> (M, 7) float32.

    Args:
        model: a :class:`~stage2_mer.fer.swin.SwinFER` (its ``cfg.image_size`` and
            ``cfg.channel_order`` set the input size and channel order).
        crops: all real frames of a batch of utterances, concatenated (see :func:`scatter_frames`).
        tau: softmax temperature.
        samples: 0 = deterministic softmax; K = mean of K Gumbel-softmax samples
            (:func:`frame_distributions`; the same value in training and evaluation).
        joint: False -> the Swin runs frozen (eval mode, ``no_grad``; its mode is restored);
            True -> gradients flow into the Swin and its current train/eval mode is kept.
        generator: for the Gumbel noise.
        batch_size: frames per Swin forward.
        size, channel_order: None = the model's ``cfg`` values (pass them when the model is
            wrapped, e.g. by DDP, which hides ``cfg``).
    """
    param = next(model.parameters())
    inner_cfg = getattr(getattr(model, "module", model), "cfg", None)  # DDP / Accelerate wrappers
    if size is None:
        size = int(getattr(inner_cfg, "image_size", 224))
    if channel_order is None:
        channel_order = str(getattr(inner_cfg, "channel_order", "rgb"))
    m = len(crops)
    was_training = model.training
    if not joint:
        model.eval()
    try:
        with torch.set_grad_enabled(joint and torch.is_grad_enabled()):
            chunks = [
                model(faces_to_input(crops[i:i + batch_size], size=size, device=param.device,
                                     channel_order=channel_order).to(param.dtype))
                for i in range(0, m, batch_size)
            ]  # each (b, 7)
    finally:
        model.train(was_training)
    logits = torch.cat(chunks) if chunks else torch.zeros((0, int(getattr(model, "num_labels", 7))),
                                                          device=param.device)
    return frame_distributions(logits, tau, samples=samples, generator=generator)  # (M, 7)
