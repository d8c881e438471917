"""Speech: the log-mel front end (part of the encoder, so it runs on the training device and
travels with the weights) and two encoders over (mel x time) with attentive statistics pooling.

    waveform (B, T) ──► LogMel ──► (B, 1, mels, frames) ──► audio_resnet | ecapa ──► (B, F)

The filterbank is Slaney's mel scale with Slaney area normalisation, the same matrix as
`librosa.filters.mel` (checked in the tests). Frames: 25 ms windows every 10 ms; log of the mel
power; the mean over time is subtracted from every band (per-utterance mean normalisation).
SpecAugment (Park et al. 2019) masks one band range and one time range of each training crop.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .encoders import ENCODERS, BasicBlock


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's scale: linear below 1 kHz (3 / 200 mel per Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log = f >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0),
                    mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)),
                    m * (200.0 / 3))


def mel_filterbank(rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, each of unit area (Slaney)."""
    f_max = rate / 2 if f_max is None else f_max
    fft_f = np.linspace(0, rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """(B, T) waveforms -> (B, 1, n_mels, frames) mean-normalised log-mel energies."""

    def __init__(self, rate: int, n_mels: int = 64, freq_mask: int = 0,
                 time_mask: int = 0) -> None:
        super().__init__()
        self.rate, self.n_mels = rate, n_mels
        self.win = int(round(0.025 * rate))
        self.hop = int(round(0.010 * rate))
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.freq_mask, self.time_mask = freq_mask, time_mask
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(rate, self.n_fft, n_mels)),
                             persistent=False)

    def frames(self, samples: int) -> int:
        return samples // self.hop + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            spec = torch.stft(x.float(), self.n_fft, self.hop, self.win, self.window,
                              center=True, pad_mode="reflect", return_complex=True)
            power = spec.real.pow(2) + spec.imag.pow(2)  # (B, freq, frames)
            m = torch.log(self.mel @ power + 1e-6)
            m = m - m.mean(-1, keepdim=True)
        if self.training and (self.freq_mask or self.time_mask):
            m = self._spec_augment(m)
        return m[:, None]

    def _spec_augment(self, m: torch.Tensor) -> torch.Tensor:
        """One band range (up to freq_mask bands) and one time range (up to time_mask frames)
        of each crop set to 0 (its mean after normalisation)."""
        b, n_f, n_t = m.shape
        keep = torch.ones_like(m)
        for size, n, axis in ((self.freq_mask, n_f, 1), (self.time_mask, n_t, 2)):
            if not size:
                continue
            width = torch.randint(0, size + 1, (b,), device=m.device)
            start = (torch.rand(b, device=m.device) * (n - width + 1)).long()
            pos = torch.arange(n, device=m.device)[None]
            hit = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # (B, n)
            keep = keep * (~hit).float().unsqueeze(3 - axis)
        return m * keep


class AttentiveStatsPool(nn.Module):
    """(B, C, T) -> (B, 2C): the attention-weighted mean and standard deviation over time
    (Okabe, Koshinaka, Shinoda 2018), so that informative frames count more."""

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.Conv1d(channels, hidden, 1), nn.Tanh(),
                                       nn.Conv1d(hidden, channels, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.attention(h), dim=-1)
        mean = (w * h).sum(-1)
        var = (w * h.pow(2)).sum(-1) - mean.pow(2)
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], 1)


class AudioEncoder(nn.Module):
    """The front end followed by an encoder over its (1, mels, frames) output."""

    def __init__(self, frontend: LogMel, body: nn.Module) -> None:
        super().__init__()
        self.frontend, self.body = frontend, body
        self.num_features = body.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.frontend(x))


class _ResNetSpeech(nn.Module):
    def __init__(self, n_mels: int, w: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(True))
        self.blocks = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, 2 * w, 2),
                                    BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w, 2))
        channels = 4 * w * math.ceil(n_mels / 8)
        self.pool = AttentiveStatsPool(channels)
        self.num_features = 2 * channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))  # (B, 4w, mels / 8, frames / 8)
        return self.pool(h.flatten(1, 2))


@ENCODERS.register("audio_resnet")
def audio_resnet(input_shape: tuple[int, ...], width: int = 64) -> nn.Module:
    """A small ResNet over (1, mels, frames): width, 2w, 4w, 4w channels, frequency and time
    halved three times, then attentive statistics pooling over time."""
    return _ResNetSpeech(input_shape[1], width)


class _SERes2Block(nn.Module):
    """ECAPA-TDNN's block: 1x1 conv, a dilated Res2 conv (scale 4), 1x1 conv, squeeze-and-
    excitation, residual."""

    def __init__(self, c: int, dilation: int, scale: int = 4) -> None:
        super().__init__()
        self.scale, width = scale, c // scale
        self.conv1 = nn.Sequential(nn.Conv1d(c, c, 1), nn.ReLU(True), nn.BatchNorm1d(c))
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(width, width, 3, dilation=dilation, padding=dilation),
                          nn.ReLU(True), nn.BatchNorm1d(width)) for _ in range(scale - 1))
        self.conv3 = nn.Sequential(nn.Conv1d(c, c, 1), nn.ReLU(True), nn.BatchNorm1d(c))
        self.se = nn.Sequential(nn.Linear(c, c // 8), nn.ReLU(True), nn.Linear(c // 8, c),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(self.conv1(x), self.scale, dim=1)
        out, prev = [parts[0]], None
        for part, conv in zip(parts[1:], self.convs, strict=True):
            prev = conv(part if prev is None else part + prev)
            out.append(prev)
        h = self.conv3(torch.cat(out, 1))
        return x + h * self.se(h.mean(-1))[..., None]


class _ECAPA(nn.Module):
    def __init__(self, n_mels: int, c: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(n_mels, c, 5, padding=2), nn.ReLU(True),
                                  nn.BatchNorm1d(c))
        self.blocks = nn.ModuleList(_SERes2Block(c, d) for d in (2, 3, 4))
        self.mfa = nn.Sequential(nn.Conv1d(3 * c, 3 * c, 1), nn.ReLU(True))
        self.pool = AttentiveStatsPool(3 * c, 128)
        self.bn = nn.BatchNorm1d(6 * c)
        self.num_features = 6 * c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x[:, 0])
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        return self.bn(self.pool(self.mfa(torch.cat(outs, 1))))


@ENCODERS.register("ecapa")
def ecapa(input_shape: tuple[int, ...], width: int = 64) -> nn.Module:
    """ECAPA-TDNN (Desplanques, Thienpondt, Demuynck 2020), small: 4 x width channels, three
    SE-Res2 blocks (dilation 2, 3, 4), multi-layer aggregation, attentive statistics pooling."""
    return _ECAPA(input_shape[1], 4 * width)


def build_audio_encoder(name: str, rate: int, n_mels: int, width: int, freq_mask: int = 0,
                        time_mask: int = 0) -> AudioEncoder:
    from .encoders import create_encoder

    frontend = LogMel(rate, n_mels, freq_mask, time_mask)
    return AudioEncoder(frontend, create_encoder(name, (1, n_mels, 0), width))

