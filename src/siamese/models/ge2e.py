"""The GE2E speaker encoder (Wan et al. 2018) as Resemblyzer defines and ships it (catalogue
`ge2e_resemblyzer`, its `pretrained.pt` state dict): the architecture and the input it was
trained on, so that its weights start a speaker run (`model.pretrained ge2e_resemblyzer`).

    waveform (B, T) at data.sample_rate ─► 16 kHz ─► volume raised to -30 dBFS (never lowered)
    ─► mel power, 40 bands (25 ms windows every 10 ms; no log) ─► partials of 160 frames
    (1.6 s), 1.3 a second, the last kept when 75% covered ─► LSTM 40 -> 3 x 256 ─► the last
    hidden state ─► Linear 256 -> 256 ─► ReLU ─► unit length ─► mean of the partials ─► (B, 256)

as Resemblyzer's `VoiceEncoder.embed_utterance` on `normalize_volume`'s output (its VAD
trimming of long silences is left out: webrtcvad is not a need of the library). Trailing
samples that are exactly zero are the padding of a shorter recording in the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.audio import resample
from .audio import mel_filterbank

RATE, N_FFT, HOP, MELS = 16000, 400, 160, 40
PARTIAL = 160  # frames
PARTIALS_A_SECOND, MIN_COVERAGE = 1.3, 0.75
TARGET_DBFS = -30.0


def partial_starts(n_samples: int) -> list[int]:
    """Resemblyzer's `compute_partial_slices`: the first frame of each partial."""
    n_frames = math.ceil((n_samples + 1) / HOP)
    step = int(round(RATE / PARTIALS_A_SECOND / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts


class GE2E(nn.Module):
    """(B, samples) waveforms at `rate` -> (B, 256) unit-length speaker embeddings."""

    whole_utterances = True  # a recording is cut into its own partials here

    def __init__(self, rate: int) -> None:
        super().__init__()
        self.rate = rate
        self.lstm = nn.LSTM(MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(RATE, N_FFT, MELS)),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.num_features = 256

    def embed_partials(self, mels: torch.Tensor) -> torch.Tensor:
        """(P, 160, 40) mel power frames -> (P, 256) unit-length embeddings."""
        _, (hidden, _) = self.lstm(mels)
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = resample(x.float(), self.rate, RATE)
        nonzero = (x != 0).float()
        lengths = torch.where(nonzero.any(1), x.shape[1] - nonzero.flip(1).argmax(1),
                              torch.ones_like(x[:, 0], dtype=torch.int64))
        rows, owner = [], []
        for i, n in enumerate(lengths.tolist()):
            w = x[i, :n]
            dbfs = 10 * torch.log10((w * w).mean().clamp_min(1e-20))
            w = w * torch.pow(10.0, ((TARGET_DBFS - dbfs) / 20).clamp_min(0))  # raise only
            starts = partial_starts(n)
            w = F.pad(w, (0, max(0, (starts[-1] + PARTIAL) * HOP - n)))
            spec = torch.stft(w, N_FFT, HOP, window=self.window, center=True,
                              pad_mode="constant", return_complex=True).abs() ** 2
            frames = (self.mel @ spec).T  # (frames, 40)
            rows += [frames[s:s + PARTIAL] for s in starts]
            owner += [i] * len(starts)
        e = self.embed_partials(torch.stack(rows))
        owner_t = torch.tensor(owner, device=e.device)
        total = torch.zeros(len(x), e.shape[1], device=e.device).index_add_(0, owner_t, e)
        return F.normalize(total, dim=1)
