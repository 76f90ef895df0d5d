"""TalkNet and Light-ASD as PyTorch modules whose state-dict keys are the published checkpoints'
(LR-ASD, Light-ASD's successor, is in ``asd/lr_asd_net.py``; :func:`build_net` knows all three).

Written from the papers and the public repositories' facts (layer types, shapes, key names), not
their code:

* **TalkNet** - Tao et al., "Is Someone Speaking? Exploring Long-term Temporal Features for
  Audio-visual Active Speaker Detection", ACM MM 2021 (repository TaoRuijie/TalkNet-ASD;
  checkpoints ``pretrain_TalkSet.model``, ``pretrain_AVA.model``). About 15 M parameters.
* **Light-ASD** - Liao et al., "A Light Weight Model for Active Speaker Detection", CVPR 2023
  (repository Junhua-Liao/Light-ASD; checkpoints ``finetuning_TalkSet.model``,
  ``pretrain_AVA_CVPR.model``). About 1.0 M parameters.

Both take, per track, T grey 112x112 face crops at 25 fps and 4T rows of 13-dim MFCC at 100 Hz
(``asd.mfcc``) and give two logits (not speaking, speaking) per video frame. The published files
are ``torch.save`` of the training wrapper's ``state_dict()``: the network under ``model.``, the
classifier heads under ``lossAV.`` / ``lossV.`` (and ``lossA.`` for TalkNet), each head being one
``FC`` linear layer. :class:`TalkNet` and :class:`LightASD` have exactly that layout, so a
published file loads with ``load_state_dict(strict=True)``.

Frame pixels enter as [0, 1] floats (the pipeline's patches); the models' own normalisation
``(x - 0.4161) / 0.1688`` (of pixel / 255) is applied inside :meth:`forward`.

Deviation from the published code, on purpose: the original TalkNet visual front end folds the
batch into ONE sequence for its 3-D convolution (the 5-frame temporal kernel reaches across the
boundary between two batch items). It only ever ran batch 1 at inference; here every batch item is
its own sequence, which gives the same result at batch 1 and correct results for a batch of tracks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PIXEL_MEAN = 0.4161  # of pixel / 255
PIXEL_STD = 0.1688


def _normalise(video: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W) in [0, 1] -> standardised, (B, 1, T, H, W)."""
    return ((video - PIXEL_MEAN) / PIXEL_STD).unsqueeze(1)


class _Head(nn.Module):
    """One classifier head of the published wrappers (``lossAV`` / ``lossA`` / ``lossV``): ``FC``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.FC = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.FC(x)  # (..., dim) -> (..., 2)


# ================================================================================================
# TalkNet


def _bn2d_visual(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.01, eps=0.001)


class _TalkNetResLayer(nn.Module):
    """Two residual units of the lip-reading ResNet-18 trunk (keys ``conv1a`` ... ``outbnb``).

    unit a: conv3x3(stride) -> BN -> ReLU -> conv3x3, plus the input (1x1 strided conv when the
    stride is not 1), then BN -> ReLU; unit b: the same at stride 1 with the identity. The 1x1
    ``downsample`` conv exists in every layer (also where it is unused) because the checkpoints hold it.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1a = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1a = _bn2d_visual(c_out)
        self.conv2a = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.downsample = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        self.outbna = _bn2d_visual(c_out)
        self.conv1b = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1b = _bn2d_visual(c_out)
        self.conv2b = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.outbnb = _bn2d_visual(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.stride == 1 else self.downsample(x)
        mid = self.conv2a(F.relu(self.bn1a(self.conv1a(x)))) + skip  # pre-BN sum, reused below
        y = F.relu(self.outbna(mid))
        y = self.conv2b(F.relu(self.bn1b(self.conv1b(y)))) + mid
        return F.relu(self.outbnb(y))


class _TalkNetResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = _TalkNetResLayer(64, 64, 1)
        self.layer2 = _TalkNetResLayer(64, 128, 2)
        self.layer3 = _TalkNetResLayer(128, 256, 2)
        self.layer4 = _TalkNetResLayer(256, 512, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 64, 28, 28) -> (N, 512, 4, 4) -> 4x4 average -> (N, 512)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.avg_pool2d(x, kernel_size=4, stride=1).flatten(1)


class _TalkNetVisualFrontend(nn.Module):
    """3-D conv stem (5x7x7, stride 1x2x2, BN, ReLU, 1x3x3 max-pool) + ResNet-18 trunk: 512-d per frame."""

    def __init__(self) -> None:
        super().__init__()
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, 64, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(64, momentum=0.01, eps=0.001),
            nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.resnet = _TalkNetResNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape[:3]  # (B, 1, T, 112, 112)
        x = self.frontend3D(x)  # (B, 64, T, 28, 28)
        x = x.transpose(1, 2).reshape(b * t, 64, x.shape[-2], x.shape[-1])
        return self.resnet(x).view(b, t, 512)  # (B, T, 512)


class _GlobalLayerNorm(nn.Module):
    """Normalise (B, C, T) over channels AND time per item; ``gamma``/``beta`` are (1, C, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        return self.gamma * (x - mean) / torch.sqrt(var + 1e-8) + self.beta


class _DepthwiseSeparableBlock(nn.Module):
    """V-TCN unit: ReLU, BN, depthwise conv k3, PReLU, gLN, pointwise conv, plus the input.

    Indices of ``net`` are those of the checkpoints (1 = BN, 2 = depthwise, 3 = PReLU, 4 = gLN,
    5 = pointwise)."""

    def __init__(self, c: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(c),
            nn.Conv1d(c, c, 3, padding=1, groups=c, bias=False),
            nn.PReLU(),
            _GlobalLayerNorm(c),
            nn.Conv1d(c, c, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class _Seq(nn.Module):
    """A module whose only child is ``net`` (the checkpoints' ``visualTCN.net.*`` / ``visualConv1D.net.*``)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _SEResBlock(nn.Module):
    """Audio SE-ResNet unit: conv3x3(stride) -> ReLU -> BN (this order, as trained) -> conv3x3 -> BN
    -> squeeze-excitation (reduction 8) + shortcut -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int] | int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = _SqueezeExcite(c_out, 8)
        # the reference builds a shortcut projection whenever stride != 1 (a tuple counts) or widths differ
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(F.relu(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class _SqueezeExcite(nn.Module):
    def __init__(self, c: int, reduction: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, c // reduction), nn.ReLU(), nn.Linear(c // reduction, c), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))  # (B, C)
        return x * w[:, :, None, None]


class _TalkNetAudioEncoder(nn.Module):
    """SE-ResNet-34 layout ([3, 4, 6, 3] units, widths 16/32/64/128) over (B, 1, 13, 4T) MFCC images.

    Stem 7x7 conv with stride 2 on the MFCC axis only; layers 2 and 3 stride 2 on both axes, so time
    goes 4T -> T; the MFCC axis is averaged at the end: (B, T, 128)."""

    def __init__(self, units: tuple[int, ...] = (3, 4, 6, 3), widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 7, stride=(2, 1), padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        strides: list[tuple[int, int] | int] = [1, (2, 2), (2, 2), (1, 1)]
        c_in = widths[0]
        for i, (n, c, s) in enumerate(zip(units, widths, strides), start=1):
            blocks = [_SEResBlock(c_in, c, s)] + [_SEResBlock(c, c) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = c

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        x = mfcc.transpose(1, 2).unsqueeze(1)  # (B, 4T, 13) -> (B, 1, 13, 4T)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 128, 2, T)
        return x.mean(dim=2).transpose(1, 2)  # (B, T, 128)


class _CrossAttention(nn.Module):
    """Transformer layer where ``query`` attends over ``source`` (self-attention when they are the
    same): residual on ``source``, post-norm, ReLU feed-forward of width 4 * d, dropout 0.1."""

    def __init__(self, d: int, heads: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d, 4 * d)
        self.linear2 = nn.Linear(4 * d, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, source: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        # (B, T, d) each; the attention output has the query's length, added to the source
        attended = self.self_attn(query, source, source, need_weights=False)[0]
        x = self.norm1(source + self.dropout1(attended))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ff))


class _TalkNetCore(nn.Module):
    """The checkpoints' ``model.*``: visual and audio temporal encoders, cross- and self-attention."""

    def __init__(self) -> None:
        super().__init__()
        self.visualFrontend = _TalkNetVisualFrontend()
        self.visualTCN = _Seq(*[_DepthwiseSeparableBlock(512) for _ in range(5)])
        self.visualConv1D = _Seq(
            nn.Conv1d(512, 256, 5, padding=2), nn.BatchNorm1d(256), nn.ReLU(), nn.Conv1d(256, 128, 1)
        )
        self.audioEncoder = _TalkNetAudioEncoder()
        self.crossA2V = _CrossAttention(128)
        self.crossV2A = _CrossAttention(128)
        self.selfAV = _CrossAttention(256)


class TalkNet(nn.Module):
    """TalkNet with the published checkpoint layout (``model.*``, ``lossAV.FC``, ``lossA.FC``, ``lossV.FC``)."""

    arch = "talknet"

    def __init__(self) -> None:
        super().__init__()
        self.model = _TalkNetCore()
        self.lossAV = _Head(256)
        self.lossA = _Head(128)
        self.lossV = _Head(128)

    def forward(self, mfcc: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """mfcc (B, 4T, 13), video (B, T, 112, 112) in [0, 1] -> logits ``av``/``a``/``v`` (B, T, 2)."""
        m = self.model
        v = m.visualFrontend(_normalise(video))  # (B, T, 512)
        v = m.visualConv1D(m.visualTCN(v.transpose(1, 2))).transpose(1, 2)  # (B, T, 128)
        a = m.audioEncoder(mfcc)  # (B, T, 128)
        a_c = m.crossA2V(a, v)  # audio enriched by attending from the visual side
        v_c = m.crossV2A(v, a)
        av = torch.cat([a_c, v_c], dim=2)  # (B, T, 256)
        av = m.selfAV(av, av)
        return {"av": self.lossAV(av), "a": self.lossA(a_c), "v": self.lossV(v_c)}


# ================================================================================================
# Light-ASD


def _bn(c: int, dims: int) -> nn.Module:
    return (nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(c, momentum=0.01, eps=0.001)


class _LightVisualBlock(nn.Module):
    """Two parallel (2+1)-D paths, 3x3 then 3 frames and 5x5 then 5 frames (``s_k`` spatial with
    ``bn_s_k``, ``t_k`` temporal with ``bn_t_k``, each conv -> BN -> ReLU), summed, then a 1x1x1
    conv ``last`` + ``bn_last`` + ReLU. ``down``: the spatial convs use stride 2."""

    def __init__(self, c_in: int, c_out: int, down: bool = False) -> None:
        super().__init__()
        s = (1, 2, 2) if down else (1, 1, 1)
        self.s_3 = nn.Conv3d(c_in, c_out, (1, 3, 3), stride=s, padding=(0, 1, 1), bias=False)
        self.bn_s_3 = _bn(c_out, 3)
        self.t_3 = nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.bn_t_3 = _bn(c_out, 3)
        self.s_5 = nn.Conv3d(c_in, c_out, (1, 5, 5), stride=s, padding=(0, 2, 2), bias=False)
        self.bn_s_5 = _bn(c_out, 3)
        self.t_5 = nn.Conv3d(c_out, c_out, (5, 1, 1), padding=(2, 0, 0), bias=False)
        self.bn_t_5 = _bn(c_out, 3)
        self.last = nn.Conv3d(c_out, c_out, 1, bias=False)
        self.bn_last = _bn(c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T, H, W). The separable convs run as 2-D convolutions with the Conv3d weights
        # (same numbers; PyTorch's CPU Conv3d falls back to a slow kernel for these shapes).
        y3 = F.relu(self.bn_t_3(_temporal(self.t_3, F.relu(self.bn_s_3(_spatial(self.s_3, x))))))
        y5 = F.relu(self.bn_t_5(_temporal(self.t_5, F.relu(self.bn_s_5(_spatial(self.s_5, x))))))
        return F.relu(self.bn_last(_temporal(self.last, y3 + y5)))


def _spatial(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A (1, k, k) Conv3d on (B, C, T, H, W) computed frame by frame as a Conv2d."""
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    y = F.conv2d(frames, conv.weight.squeeze(2), None, conv.stride[1:], conv.padding[1:])
    return y.reshape(b, t, y.shape[1], y.shape[2], y.shape[3]).transpose(1, 2)  # (B, C', T, H', W')


def _temporal(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A (k, 1, 1) Conv3d on (B, C, T, H, W) computed as a (k, 1) Conv2d over (T, H * W)."""
    b, c, t, h, w = x.shape
    y = F.conv2d(x.reshape(b, c, t, h * w), conv.weight.squeeze(-1), None, (1, 1), (conv.padding[0], 0))
    return y.reshape(b, y.shape[1], t, h, w)


class _LightAudioBlock(nn.Module):
    """The audio counterpart on (B, C, 13, 4T): ``m_k`` (k x 1 over the MFCC axis) then ``t_k``
    (1 x k over time) for k = 3, 5, summed, then ``last`` 1x1; conv -> BN -> ReLU everywhere."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.m_3 = nn.Conv2d(c_in, c_out, (3, 1), padding=(1, 0), bias=False)
        self.bn_m_3 = _bn(c_out, 2)
        self.t_3 = nn.Conv2d(c_out, c_out, (1, 3), padding=(0, 1), bias=False)
        self.bn_t_3 = _bn(c_out, 2)
        self.m_5 = nn.Conv2d(c_in, c_out, (5, 1), padding=(2, 0), bias=False)
        self.bn_m_5 = _bn(c_out, 2)
        self.t_5 = nn.Conv2d(c_out, c_out, (1, 5), padding=(0, 2), bias=False)
        self.bn_t_5 = _bn(c_out, 2)
        self.last = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn_last = _bn(c_out, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y3 = F.relu(self.bn_t_3(self.t_3(F.relu(self.bn_m_3(self.m_3(x))))))
        y5 = F.relu(self.bn_t_5(self.t_5(F.relu(self.bn_m_5(self.m_5(x))))))
        return F.relu(self.bn_last(self.last(y3 + y5)))


class _LightVisualEncoder(nn.Module):
    """(B, 1, T, 112, 112) -> block1 (stride 2) 56 -> max-pool 28 -> block2 -> max-pool 14 -> block3
    -> spatial max -> (B, T, 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = _LightVisualBlock(1, 32, down=True)
        self.block2 = _LightVisualBlock(32, 64)
        self.block3 = _LightVisualBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = {"kernel_size": (1, 3, 3), "stride": (1, 2, 2), "padding": (0, 1, 1)}
        x = F.max_pool3d(self.block1(x), **pool)
        x = F.max_pool3d(self.block2(x), **pool)
        x = self.block3(x)  # (B, 128, T, 14, 14)
        return x.amax(dim=(3, 4)).transpose(1, 2)  # (B, T, 128)


class _LightAudioEncoder(nn.Module):
    """(B, 4T, 13) -> (B, 1, 13, 4T) -> block1 -> time max-pool /2 -> block2 -> /2 -> block3 ->
    mean over the MFCC axis -> (B, T, 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = _LightAudioBlock(1, 32)
        self.block2 = _LightAudioBlock(32, 64)
        self.block3 = _LightAudioBlock(64, 128)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        pool = {"kernel_size": (1, 3), "stride": (1, 2), "padding": (0, 1)}
        x = mfcc.transpose(1, 2).unsqueeze(1)
        x = F.max_pool2d(self.block1(x), **pool)
        x = F.max_pool2d(self.block2(x), **pool)
        x = self.block3(x)  # (B, 128, 13, T)
        return x.mean(dim=2).transpose(1, 2)


class _BidirectionalGRU(nn.Module):
    """A forward GRU, GELU, then a second GRU run on the time-reversed sequence, GELU (``gru_forward``,
    ``gru_backward``; one layer of width 128 each)."""

    def __init__(self, c: int = 128) -> None:
        super().__init__()
        self.gru_forward = nn.GRU(c, c, num_layers=1, batch_first=True)
        self.gru_backward = nn.GRU(c, c, num_layers=1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.gru_forward(x)[0])
        x = self.gru_backward(x.flip(1))[0].flip(1)
        return F.gelu(x)


class _LightASDCore(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.visualEncoder = _LightVisualEncoder()
        self.audioEncoder = _LightAudioEncoder()
        self.GRU = _BidirectionalGRU(128)


class LightASD(nn.Module):
    """Light-ASD with the published checkpoint layout (``model.*``, ``lossAV.FC``, ``lossV.FC``)."""

    arch = "light_asd"

    def __init__(self) -> None:
        super().__init__()
        self.model = _LightASDCore()
        self.lossAV = _Head(128)
        self.lossV = _Head(128)

    def forward(self, mfcc: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """mfcc (B, 4T, 13), video (B, T, 112, 112) in [0, 1] -> logits ``av``/``v`` (B, T, 2)."""
        v = self.model.visualEncoder(_normalise(video))  # (B, T, 128)
        a = self.model.audioEncoder(mfcc)  # (B, T, 128)
        av = self.model.GRU(a + v)
        return {"av": self.lossAV(av), "v": self.lossV(v)}

    def forward_visual(self, video: torch.Tensor) -> torch.Tensor:
        """Visual-only logits (B, T, 2) from the ``lossV`` head (clips without audio)."""
        return self.lossV(self.model.visualEncoder(_normalise(video)))


ARCHS: dict[str, type[nn.Module]] = {"talknet": TalkNet, "light_asd": LightASD}


def build_net(arch: str) -> nn.Module:
    """A freshly initialised network of ``arch`` (``talknet`` | ``light_asd`` | ``lr_asd``)."""
    if "lr_asd" not in ARCHS:  # asd/lr_asd_net.py builds on this module's layers: imported on first use
        from .lr_asd_net import LRASD

        ARCHS["lr_asd"] = LRASD
    try:
        return ARCHS[arch]()
    except KeyError:
        raise ValueError(f"unknown ASD network {arch!r}; known: {', '.join(sorted(ARCHS))}") from None
