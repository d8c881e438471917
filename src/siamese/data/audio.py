"""Audio: reading WAV/FLAC/OGG files into mono waveforms at one sample rate, and `Waveforms`, a
batch of utterances of different lengths.

- any sample rate, resampled with soxr (the resampler of SoX: high quality, fast);
- any channel count, mixed down to mono; any sample format, as float in [-1, 1];
- unreadable, empty and silent files are refused with a one-line `DataError` naming the file.

Training sees fixed-length crops (`crop`); evaluation embeds whole utterances in sliding
windows of that length (`windows`), averaged. In-graph helpers for encoders that take any
length: `resample` (band-limited, through the spectrum) and `pad_batch` (silence after).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
AUDIO_FORMAT_SUFFIX = {"WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg"}
MAX_SECONDS = 600.0  # per file: a longer recording is almost surely not one utterance
UNKNOWN_FRAMES = 2**40  # a frame count at least this large: the header did not say
SILENCE = 1e-4  # peak amplitude below which a recording holds nothing to learn from
BLOCK_SECONDS = 30.0  # read, mixed down and resampled at once


def is_audio_name(name: str) -> bool:
    return Path(name).suffix.lower() in AUDIO_SUFFIXES


class NotAudio(DataError):
    """The bytes are no audio file this reader takes."""


class TooLong(DataError):
    """A recording longer than the limit."""


def _open(source, name: str):
    import soundfile

    try:
        return soundfile.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise NotAudio(f"cannot read audio file {name} ({str(e).splitlines()[0][:80]}); give "
                       "a WAV, FLAC or OGG file") from None


def audio_header(source, name: str, max_seconds: float = MAX_SECONDS) -> tuple[str, float]:
    """-> (format, e.g. "WAV", and seconds) from the header alone; raises DataError for what
    is no audio file or lasts longer than max_seconds."""
    with _open(source, name) as f:
        # a stream whose header leaves its length out (a FLAC written on the fly) reports
        # libsndfile's largest count: its length is known only once read (read_audio stops
        # reading at the limit)
        seconds = 0.0 if f.frames >= UNKNOWN_FRAMES else f.frames / f.samplerate
        if f.format not in AUDIO_FORMAT_SUFFIX:
            raise NotAudio(f"audio file {name} is {f.format}; give a WAV, FLAC or OGG file")
        if seconds > max_seconds:
            raise TooLong(f"audio file {name} lasts {seconds:.0f} s; at most {max_seconds:.0f} s "
                          "per file: cut it into utterances")
        return f.format, seconds


_DATA_SIZE = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.M)
UNSIZED_WAV = 0x7FFF0000  # a declared size this large is a placeholder: a WAV written on the fly


def _check_whole(f, name: str) -> None:
    """A WAV cut short is refused, as a truncated image is (libsndfile would read the part that
    is left and say nothing). libsndfile notes the declared and the true size of the data
    chunk; a placeholder size (a WAV streamed out with its length unknown) is not a cut."""
    m = _DATA_SIZE.search(f.extra_info)
    if m and int(m[2]) < int(m[1]) < UNSIZED_WAV:
        raise DataError(f"audio file {name} is cut short: its header declares "
                        f"{int(m[1]):,} bytes of samples, it holds {int(m[2]):,}; replace it "
                        "with the whole file")


def audio_blocks(source, name: str, rate: int, max_seconds: float = MAX_SECONDS,
                 block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """A path or bytes -> its samples as mono float32 blocks at `rate` Hz, read, mixed down
    and resampled a block at a time: memory bounded by the block, not by the recording (a
    4-hour stream). Refused with a DataError naming `name`: no audio, cut short, longer than
    max_seconds, damaged, nan or inf samples (raised on reaching them); no samples at all or
    silent (known only at the end: raised after the last block)."""
    import soundfile
    import soxr

    with _open(source, name) as f:
        _check_whole(f, name)
        sr, sized = f.samplerate, f.frames < UNKNOWN_FRAMES
        most = int(max_seconds * sr)
        if sized and f.frames > most:
            raise TooLong(f"audio file {name} lasts {f.frames / sr:.0f} s; at most "
                          f"{max_seconds:g} s per file: cut it into utterances")
        block = max(1, int(block_seconds * sr))
        # libsndfile fails on the read that crosses the end of a stream whose header leaves
        # its length out (it seeks for a length it lacks): such a stream is read in small
        # steps, and ends there, less than a step before its true end (64 ms at 16 kHz)
        step = block if sized else 1024
        resample = soxr.ResampleStream(sr, rate, 1, dtype="float32") if sr != rate else None
        n, loud, parts, held = 0, 0.0, [], 0
        while True:
            try:
                x = f.read(step, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as e:
                if sized or n == 0:
                    raise DataError(f"audio file {name} is damaged ({str(e)[:60]})") from None
                x = np.zeros((0, f.channels), np.float32)
            end = len(x) < step
            if len(x):
                n += len(x)
                if n > most:
                    raise TooLong(f"audio file {name} lasts more than {max_seconds:g} s; at "
                                  f"most {max_seconds:g} s per file: cut it into utterances")
                mono = x.mean(axis=1)
                if not np.isfinite(mono).all():
                    raise DataError(f"audio file {name} holds nan or inf samples; re-encode it")
                loud = max(loud, float(np.abs(mono).max()))
                parts.append(mono)
                held += len(mono)
            if held >= block or (end and held):
                y = np.concatenate(parts) if len(parts) > 1 else parts[0]
                parts, held = [], 0
                yield np.ascontiguousarray(resample.resample_chunk(y) if resample else y,
                                           dtype=np.float32)
            if end:
                break
    if n == 0:
        raise DataError(f"audio file {name} holds no samples; remove it")
    if loud < SILENCE:
        raise DataError(f"audio file {name} is silent; remove it")
    if resample is not None:  # the resampler's last samples
        tail = resample.resample_chunk(np.zeros(0, np.float32), last=True)
        if len(tail):
            yield np.ascontiguousarray(tail, dtype=np.float32)


def read_audio(source, name: str, rate: int, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """A path or bytes -> (samples,) float32 mono at `rate` Hz (`audio_blocks`, joined)."""
    blocks = list(audio_blocks(source, name, rate, max_seconds))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


@dataclass(frozen=True)
class Waveforms:
    """Utterances of different lengths in one flat tensor: utterance i is
    data[start[i]:start[i] + length[i]]. Indexing and `take` give views (no copy)."""

    data: torch.Tensor  # (total samples,) float32
    start: torch.Tensor  # (N,) int64
    length: torch.Tensor  # (N,) int64

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray]) -> Waveforms:
        lengths = torch.tensor([len(a) for a in arrays], dtype=torch.int64)
        starts = torch.cumsum(lengths, 0) - lengths
        data = torch.from_numpy(np.concatenate(arrays)) if arrays else torch.zeros(0)
        return cls(data, starts, lengths)

    @classmethod
    def concat(cls, parts: list[Waveforms]) -> Waveforms:
        return cls.from_arrays([p.get(i).numpy() for p in parts for i in range(len(p))])

    def __len__(self) -> int:
        return len(self.start)

    def get(self, i: int) -> torch.Tensor:
        s = int(self.start[i])
        return self.data[s:s + int(self.length[i])]

    def __getitem__(self, index) -> Waveforms:
        index = torch.as_tensor(index, dtype=torch.int64).reshape(-1)
        return Waveforms(self.data, self.start[index], self.length[index])

    def compact(self) -> Waveforms:
        """Its utterances copied into a flat tensor of their own (a batch sent from a
        DataLoader worker then carries only its own samples, not the whole data set)."""
        return Waveforms.from_arrays([self.get(i).numpy() for i in range(len(self))])

    def take(self, index: np.ndarray) -> Waveforms:
        return self[torch.from_numpy(np.asarray(index, dtype=np.int64))]

    def reversed(self) -> Waveforms:
        """Every utterance played backwards: the flat tensor flipped once, the positions
        mirrored (one copy of the data, whatever the number of utterances)."""
        total = len(self.data)
        return Waveforms(self.data.flip(0), total - self.start - self.length, self.length)

    def segments(self, parts: np.ndarray) -> tuple[Waveforms, np.ndarray]:
        """Utterance i cut into parts[i] consecutive pieces of equal length (views) ->
        (the pieces, the utterance of each)."""
        parts = np.asarray(parts, dtype=np.int64)
        owner = np.repeat(np.arange(len(self)), parts)
        k = np.concatenate([np.arange(p) for p in parts]) if len(parts) else owner
        piece = self.length.numpy()[owner] // parts[owner]
        start = self.start.numpy()[owner] + k * piece
        return Waveforms(self.data, torch.from_numpy(start), torch.from_numpy(piece)), owner


def _fit(w: torch.Tensor, n: int) -> torch.Tensor:
    """A waveform shorter than n samples repeated until it is n long."""
    if len(w) >= n:
        return w
    return w.repeat(-(-n // len(w)))[:n]


def crop(w: Waveforms, n: int, gen: torch.Generator | None, offset: int = 0,
         total: int | None = None) -> torch.Tensor:
    """(B, n) crops: random positions drawn by `gen` for the rows offset.. of a batch of `total`
    (so that ranks agree on the global batch's crops), or the middle with gen None."""
    total = total or len(w)
    u = torch.rand(total, generator=gen)[offset:offset + len(w)] if gen is not None else \
        torch.full((len(w),), 0.5)
    out = torch.empty(len(w), n)
    for i in range(len(w)):
        x = _fit(w.get(i), n)
        s = int(u[i] * (len(x) - n + 1)) if len(x) > n else 0
        out[i] = x[s:s + n]
    return out


def auto_crop_seconds(lengths: np.ndarray, rate: int) -> float:
    """The training crop for data.crop_seconds 0: the median recording's length (to 0.01 s),
    between 0.5 and 2 s: one-second word clips are not cropped to a repeat of themselves, and
    long recordings give 2-s crops (several per recording)."""
    med = float(np.median(lengths)) / rate if len(lengths) else 2.0
    return float(min(2.0, max(0.5, round(med, 2))))


def speed_crop(w: Waveforms, n: int, speed: float, gen: torch.Generator, offset: int = 0,
               total: int | None = None) -> torch.Tensor:
    """(B, n) random crops, each played faster or slower by a factor f drawn in
    [1 - speed, 1 + speed] (Kaldi's speed perturbation: tempo and pitch together, so formants
    move as between speakers): n * f samples are cropped and resampled to n (linear)."""
    total = total or len(w)
    f = 1 + speed * (2 * torch.rand(total, generator=gen)[offset:offset + len(w)] - 1)
    long = crop(w, int(math.ceil(n * (1 + speed))), gen, offset, total)
    out = torch.empty(len(w), n)
    for i in range(len(w)):
        src = long[i, :max(2, int(round(n * float(f[i]))))]
        out[i] = F.interpolate(src[None, None], size=n, mode="linear", align_corners=False)[0, 0]
    return out


def add_noise(x: torch.Tensor, min_snr_db: float, gen: torch.Generator, offset: int = 0,
              total: int | None = None) -> torch.Tensor:
    """White noise at a random signal-to-noise ratio in [min_snr_db, min_snr_db + 20] dB and
    a random gain of +-6 dB on each crop (rows offset.. of a batch of `total`, as `crop`)."""
    total = total or len(x)
    u = torch.rand(total, 2, generator=gen)[offset:offset + len(x)]
    noise = torch.randn(total, x.shape[1], generator=gen)[offset:offset + len(x)]
    snr = min_snr_db + 20 * u[:, 0]
    power = x.pow(2).mean(1).clamp_min(1e-10)
    scale = (power / 10 ** (snr / 10)).sqrt()
    gain = 10 ** ((12 * u[:, 1] - 6) / 20)
    return (x + noise * scale[:, None]) * gain[:, None]


def windows(w: Waveforms, n: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every utterance cut into windows of n samples, `hop` apart (the last one ending at the
    utterance's end; a short utterance repeated to n): (M, n) windows and the (M,) utterance
    each belongs to."""
    out, owner = [], []
    for i in range(len(w)):
        x = _fit(w.get(i), n)
        starts = list(range(0, len(x) - n + 1, hop))
        if starts[-1] != len(x) - n:
            starts.append(len(x) - n)
        out += [x[s:s + n] for s in starts]
        owner += [i] * len(starts)
    if not out:
        return torch.zeros(0, n), torch.zeros(0, dtype=torch.int64)
    return torch.stack(out), torch.tensor(owner)


def load_waveforms(sources: list, names: list[str], rate: int, threads: int = 4) -> Waveforms:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        arrays = list(pool.map(lambda i: read_audio(sources[i], names[i], rate),
                               range(len(sources))))
    return Waveforms.from_arrays(arrays)


def resample(x: torch.Tensor, rate: int, to: int) -> torch.Tensor:
    """(B, T) -> (B, T * to / rate) through the spectrum (band-limited, exact for a
    whole-number ratio): zeros above the old Nyquist when going up."""
    if rate == to:
        return x
    n = x.shape[1]
    m = max(1, round(n * to / rate))
    spectrum = torch.fft.rfft(x, dim=1)
    keep = min(spectrum.shape[1], m // 2 + 1)
    out = torch.zeros(x.shape[0], m // 2 + 1, dtype=spectrum.dtype, device=x.device)
    out[:, :keep] = spectrum[:, :keep]
    return torch.fft.irfft(out, n=m, dim=1) * (m / n)


def pad_batch(clips: list[torch.Tensor]) -> torch.Tensor:
    """Recordings of different lengths -> (B, longest), silence after the shorter ones."""
    out = torch.zeros(len(clips), max(len(c) for c in clips))
    for i, c in enumerate(clips):
        out[i, :len(c)] = c
    return out
