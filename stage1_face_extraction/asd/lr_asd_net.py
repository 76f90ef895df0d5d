"""LR-ASD as a PyTorch module whose state-dict keys are the published checkpoints'.

LR-ASD - Liao et al., "LR-ASD: Lightweight and Robust Network for Active Speaker Detection",
IJCV 2025 (repository Junhua-Liao/LR-ASD, MIT; checkpoints ``pretrain_AVA.model`` and
``finetuning_TalkSet.model``), the successor of Light-ASD. About 0.84 M parameters. Written from
the checkpoints' keys and shapes and the facts of the public model description (layer order,
kernel sizes, pooling, how the branches are joined), not from its code.

Same input contract as Light-ASD (``asd.nets.LightASD``): per track T grey 112x112 face crops at
25 fps in [0, 1] (normalised inside with the same pixel mean / std) and 4T rows of 13-dim MFCC at
100 Hz; two logits (not speaking, speaking) per video frame. What differs from Light-ASD:

* **Encoders**: each block is ONE sequential (2+1)-D path instead of Light-ASD's two parallel
  paths plus a 1x1 mixer. Visual block: spatial 5x5 (to half the output width; stride 2 in the
  first block) -> spatial 3x3 -> temporal 5 -> temporal 3, each conv -> BN -> ReLU (keys ``s_1``,
  ``s_norm_1``, ``s_2``, ``s_norm_2``, ``t_1``, ``t_norm_1``, ``t_2``, ``t_norm_2``). Audio block
  on the (13, 4T) MFCC image: MFCC-axis 5 (half width) -> 3, then time 5 -> 3 (``m_1`` ... ``t_2``).
  Pooling between blocks and the final spatial max / MFCC-axis mean are Light-ASD's; both
  encoders end at 128 channels per frame.
* **Fusion** (``model.fusion``): audio and visual embeddings are concatenated (audio first,
  256 channels) and gated per channel and frame by ``sigmoid(BN(conv1x1(x)))`` (``attention``,
  ``bn``), instead of Light-ASD's sum.
* **Detector** (``model.detector``): two GRUs of width 64 over the fused 256-d sequence, one
  forward in time (``gru_forward``) and one over the time-reversed sequence (``gru_backward``,
  its output flipped back), both reading the fused input (not stacked as in Light-ASD), their
  outputs concatenated (forward first, 128 channels) and gated by a second 1x1-conv + BN + sigmoid
  gate (``attention.attention``, ``attention.bn``). No GELU. Dropout (training only) before the
  GRUs.
* Heads as Light-ASD: ``lossAV.FC`` (128 -> 2) on the detector output, ``lossV.FC`` (128 -> 2) on
  the visual embedding alone.

The separable Conv3d layers run as 2-D convolutions with the Conv3d weights (same numbers), as
in ``asd.nets`` (PyTorch's CPU Conv3d is slow for these shapes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .nets import _bn, _Head, _normalise, _spatial, _temporal


class _VisualBlock(nn.Module):
    """Spatial k1 x k1 (to c_out // 2), spatial k2 x k2, temporal k1, temporal k2; conv -> BN -> ReLU each."""

    def __init__(self, c_in: int, c_out: int, k1: int = 5, k2: int = 3, down: bool = False) -> None:
        super().__init__()
        half = c_out // 2
        self.s_1 = nn.Conv3d(c_in, half, (1, k1, k1), stride=(1, 2, 2) if down else 1,
                             padding=(0, k1 // 2, k1 // 2), bias=False)
        self.s_norm_1 = _bn(half, 3)
        self.s_2 = nn.Conv3d(half, c_out, (1, k2, k2), padding=(0, k2 // 2, k2 // 2), bias=False)
        self.s_norm_2 = _bn(c_out, 3)
        self.t_1 = nn.Conv3d(c_out, c_out, (k1, 1, 1), padding=(k1 // 2, 0, 0), bias=False)
        self.t_norm_1 = _bn(c_out, 3)
        self.t_2 = nn.Conv3d(c_out, c_out, (k2, 1, 1), padding=(k2 // 2, 0, 0), bias=False)
        self.t_norm_2 = _bn(c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        x = F.relu(self.s_norm_1(_spatial(self.s_1, x)))
        x = F.relu(self.s_norm_2(_spatial(self.s_2, x)))
        x = F.relu(self.t_norm_1(_temporal(self.t_1, x)))
        return F.relu(self.t_norm_2(_temporal(self.t_2, x)))


class _AudioBlock(nn.Module):
    """On (B, C, 13, 4T): MFCC-axis k1 (to c_out // 2), MFCC-axis k2, time k1, time k2; conv -> BN -> ReLU each."""

    def __init__(self, c_in: int, c_out: int, k1: int = 5, k2: int = 3) -> None:
        super().__init__()
        half = c_out // 2
        self.m_1 = nn.Conv2d(c_in, half, (k1, 1), padding=(k1 // 2, 0), bias=False)
        self.m_norm_1 = _bn(half, 2)
        self.m_2 = nn.Conv2d(half, c_out, (k2, 1), padding=(k2 // 2, 0), bias=False)
        self.m_norm_2 = _bn(c_out, 2)
        self.t_1 = nn.Conv2d(c_out, c_out, (1, k1), padding=(0, k1 // 2), bias=False)
        self.t_norm_1 = _bn(c_out, 2)
        self.t_2 = nn.Conv2d(c_out, c_out, (1, k2), padding=(0, k2 // 2), bias=False)
        self.t_norm_2 = _bn(c_out, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.m_norm_1(self.m_1(x)))
        x = F.relu(self.m_norm_2(self.m_2(x)))
        x = F.relu(self.t_norm_1(self.t_1(x)))
        return F.relu(self.t_norm_2(self.t_2(x)))


class _VisualEncoder(nn.Module):
    """(B, 1, T, 112, 112) -> block1 (stride 2) 56 -> max-pool 28 -> block2 -> max-pool 14 ->
    block3 -> spatial max -> (B, T, 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = _VisualBlock(1, 32, down=True)
        self.block2 = _VisualBlock(32, 64)
        self.block3 = _VisualBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = {"kernel_size": (1, 3, 3), "stride": (1, 2, 2), "padding": (0, 1, 1)}
        x = F.max_pool3d(self.block1(x), **pool)
        x = F.max_pool3d(self.block2(x), **pool)
        x = self.block3(x)  # (B, 128, T, 14, 14)
        return x.amax(dim=(3, 4)).transpose(1, 2)


class _AudioEncoder(nn.Module):
    """(B, 4T, 13) -> (B, 1, 13, 4T) -> block1 -> time max-pool /2 -> block2 -> /2 -> block3 ->
    mean over the MFCC axis -> (B, T, 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = _AudioBlock(1, 32)
        self.block2 = _AudioBlock(32, 64)
        self.block3 = _AudioBlock(64, 128)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        pool = {"kernel_size": (1, 3), "stride": (1, 2), "padding": (0, 1)}
        x = mfcc.transpose(1, 2).unsqueeze(1)
        x = F.max_pool2d(self.block1(x), **pool)
        x = F.max_pool2d(self.block2(x), **pool)
        x = self.block3(x)  # (B, 128, 13, T)
        return x.mean(dim=2).transpose(1, 2)


class _Gate(nn.Module):
    """Concatenate two (B, T, C_i) sequences on the channels and scale every channel of every frame
    by ``sigmoid(BN(conv1x1(x)))`` of the concatenation: (B, T, C_1 + C_2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = nn.Conv1d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm1d(channels, momentum=0.01, eps=0.001)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        x = torch.cat([first, second], dim=2).transpose(1, 2)  # (B, C, T)
        return (x * torch.sigmoid(self.bn(self.attention(x)))).transpose(1, 2)


class _Detector(nn.Module):
    """Forward-time and reversed-time GRUs (width ``channels // 4``) over the same fused input,
    joined by a :class:`_Gate`: (B, T, channels) -> (B, T, channels // 2)."""

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        hidden = channels // 4
        self.gru_forward = nn.GRU(channels, hidden, num_layers=1, batch_first=True)
        self.gru_backward = nn.GRU(channels, hidden, num_layers=1, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.attention = _Gate(channels // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        ahead = self.gru_forward(x)[0]
        behind = self.gru_backward(x.flip(1))[0].flip(1)
        return self.attention(ahead, behind)


class _LRASDCore(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.visualEncoder = _VisualEncoder()
        self.audioEncoder = _AudioEncoder()
        self.fusion = _Gate(256)
        self.detector = _Detector(256)


class LRASD(nn.Module):
    """LR-ASD with the published checkpoint layout (``model.*``, ``lossAV.FC``, ``lossV.FC``)."""

    arch = "lr_asd"

    def __init__(self) -> None:
        super().__init__()
        self.model = _LRASDCore()
        self.lossAV = _Head(128)
        self.lossV = _Head(128)
        self._init_weights()

    def _init_weights(self) -> None:
        """The published training start: He-normal conv and GRU weights, zero GRU biases (with
        PyTorch's default init the four conv layers per block shrink the signal so much that an
        untrained network barely sees its input)."""
        for m in self.model.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.GRU):
                nn.init.kaiming_normal_(m.weight_ih_l0)
                nn.init.kaiming_normal_(m.weight_hh_l0)
                nn.init.zeros_(m.bias_ih_l0)
                nn.init.zeros_(m.bias_hh_l0)

    def forward(self, mfcc: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """mfcc (B, 4T, 13), video (B, T, 112, 112) in [0, 1] -> logits ``av``/``v`` (B, T, 2)."""
        v = self.model.visualEncoder(_normalise(video))  # (B, T, 128)
        a = self.model.audioEncoder(mfcc)  # (B, T, 128)
        av = self.model.detector(self.model.fusion(a, v))  # (B, T, 128)
        return {"av": self.lossAV(av), "v": self.lossV(v)}

    def forward_visual(self, video: torch.Tensor) -> torch.Tensor:
        """Visual-only logits (B, T, 2) from the ``lossV`` head (clips without audio)."""
        return self.lossV(self.model.visualEncoder(_normalise(video)))
