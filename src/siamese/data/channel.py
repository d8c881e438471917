"""Channel augmentation for audio crops: the microphone, the line and the room, drawn at random
so that a speaker or word model learns the voice rather than one corpus's recording chain.

Three independent effects, each applied to a crop with its own probability, all in one FFT
filter per crop (linear convolution, zero-padded):
- band-limiting: a low-pass at 3.0-4.0 kHz (a recording at 8 kHz played back at 16 kHz; a
  telephone) with a high-pass at 0-300 Hz;
- equalisation: a smooth random gain of up to +-`eq_db` dB at 8 log-spaced frequencies
  (100 Hz to Nyquist), interpolated over log frequency (microphones, their placement);
- reverberation: a synthetic room response, a direct path plus exponentially decaying noise
  with a reverberation time RT60 in [0.15, 0.9] s and a random direct-to-reverberant ratio
  (-3 to +12 dB).
Each crop keeps its loudness (its RMS before and after are equal): gain is `add_noise`'s.
Random draws follow `crop`'s convention (rows offset.. of a batch of `total`), so that
distributed ranks agree on the global batch.
"""

from __future__ import annotations

import math

import torch
from scipy.fft import next_fast_len

RIR_SECONDS = 0.5  # the room response is cut here (an RT60 of 0.9 s has decayed 33 dB by then)


def _log_eq(freqs: torch.Tensor, gains_db: torch.Tensor, rate: int) -> torch.Tensor:
    """(B, F) linear gains: gains_db (B, 8) at 8 log-spaced frequencies, 100 Hz to Nyquist,
    interpolated linearly over log frequency (constant outside)."""
    knots = torch.linspace(math.log(100.0), math.log(rate / 2), gains_db.shape[1])
    lf = freqs.clamp_min(100.0).log().clamp_max(knots[-1])
    pos = (lf - knots[0]) / (knots[1] - knots[0])
    lo = pos.floor().long().clamp(0, len(knots) - 2)
    t = (pos - lo).clamp(0, 1)
    g = gains_db[:, lo] * (1 - t) + gains_db[:, lo + 1] * t
    return 10 ** (g / 20)


def room_response(rt60: torch.Tensor, drr_db: torch.Tensor, length: int, rate: int,
                  gen: torch.Generator | None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """(B, length) synthetic room impulse responses: 1 at t=0, then Gaussian noise decaying by
    60 dB in rt60 seconds, its energy -drr_db dB relative to the direct path."""
    b = len(rt60)
    if noise is None:
        noise = torch.randn(b, length, generator=gen)
    t = torch.arange(length, dtype=torch.float32) / rate
    tail = noise * torch.exp(-6.9078 * t[None] / rt60[:, None])  # ln(1000): 60 dB in rt60
    tail[:, 0] = 0.0
    energy = tail.pow(2).sum(1).clamp_min(1e-12)
    tail = tail * (10 ** (-drr_db / 10) / energy).sqrt()[:, None]
    tail[:, 0] = 1.0
    return tail


def channel(x: torch.Tensor, rate: int, bandlimit: float, eq: float, reverb: float,
            gen: torch.Generator, offset: int = 0, total: int | None = None,
            eq_db: float = 10.0) -> torch.Tensor:
    """(B, n) crops through random channels: each effect with its probability (see above)."""
    total = total or len(x)
    rows = slice(offset, offset + len(x))
    b, n = x.shape
    u = torch.rand(total, 9, generator=gen)[rows]
    gains = (2 * torch.rand(total, 8, generator=gen) - 1)[rows] * eq_db
    rir_len = int(RIR_SECONDS * rate)
    rir_noise = torch.randn(total, rir_len, generator=gen)[rows] if reverb > 0 else None
    use_band, use_eq, use_rev = u[:, 0] < bandlimit, u[:, 1] < eq, u[:, 2] < reverb
    rows_on = torch.nonzero(use_band | use_eq | use_rev).flatten()
    if not len(rows_on):
        return x
    # only the crops that meet a channel are filtered, at an FFT size of small primes
    u, gains, sel = u[rows_on], gains[rows_on], x[rows_on]
    use_band, use_eq, use_rev = use_band[rows_on], use_eq[rows_on], use_rev[rows_on]
    nfft = next_fast_len(n + (rir_len if use_rev.any() else 0), real=True)
    freqs = torch.fft.rfftfreq(nfft, 1 / rate)
    h = torch.ones(len(rows_on), len(freqs), dtype=torch.complex64)
    if use_band.any():
        low = 3000.0 + 1000.0 * u[:, 3]
        high = 300.0 * u[:, 4]
        keep = ((freqs[None] <= low[:, None]) & (freqs[None] >= high[:, None])).float()
        h = torch.where(use_band[:, None], h * keep, h)
    if use_eq.any():
        h = torch.where(use_eq[:, None], h * _log_eq(freqs, gains, rate), h)
    if use_rev.any():
        rt60 = 0.15 + 0.75 * u[:, 5]
        drr = -3.0 + 15.0 * u[:, 6]
        rir = room_response(rt60, drr, rir_len, rate, None, rir_noise[rows_on])
        h = torch.where(use_rev[:, None], h * torch.fft.rfft(rir, nfft), h)
    y = torch.fft.irfft(torch.fft.rfft(sel, nfft) * h, nfft)[:, :n]
    before = sel.pow(2).mean(1).clamp_min(1e-12).sqrt()
    after = y.pow(2).mean(1).clamp_min(1e-12).sqrt()
    out = x.clone()
    out[rows_on] = y * (before / after)[:, None]
    return out
