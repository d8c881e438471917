"""Spotting an enrolled word in a stream: one or a few recorded examples of a word, and a long
recording; where does the word occur?

The stream is cut into windows as long as the examples (their median length), `hop` seconds
apart; each window is embedded as an utterance is (models trained on audio) and scored against
every example (the model's similarity in [0, 1]; the best example counts). Windows at or above
the threshold are detections; overlapping ones are one detection, reported at its best
window. The threshold, in this order: the one given; else calibrated on the examples against
negative recordings (`negatives`: clips of other words or of the background): the most
accurate between example-vs-example scores and example-vs-negative-window scores; else the
run's verification threshold (calibrated when it trained, on pairs of classes it never saw).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data.audio import Waveforms, audio_blocks, read_audio
from .errors import ConfigError, DataError
from .evaluation.verification import best_threshold
from .outputs import check_number

MAX_STREAM_SECONDS = 4 * 3600.0
MAX_EXAMPLE_SECONDS = 5.0  # an example is a word or a short phrase
MIN_HOP_SECONDS, MAX_HOP_SECONDS = 0.01, 10.0  # between windows (a smaller hop: more windows)
DEFAULT_HOP_SECONDS = 0.1
MAX_OVERLAP = 10  # windows over any instant: the hop is at least a 10th of the window, so that
# the audio embedded is at most 10 times the stream, whatever the examples' length
WINDOW_CHUNK, CHUNK_SAMPLES = 256, 2**21  # windows embedded at once: at most these many


class Cancelled(Exception):
    """`stop()` said to give up (the service's client has gone)."""


@dataclass
class Detection:
    start: float  # seconds from the stream's start
    end: float
    score: float


def hop_samples(hop_seconds: float | None, n: int, rate: int) -> int:
    """The hop in samples: the one given (checked), or 0.1 s, at least a MAX_OVERLAP-th of the
    window either way (a window of n samples)."""
    least = max(MIN_HOP_SECONDS, n / rate / MAX_OVERLAP)
    if hop_seconds is None:
        hop_seconds = max(DEFAULT_HOP_SECONDS, least)
    hop_seconds = check_number("hop (seconds)", hop_seconds, MIN_HOP_SECONDS, MAX_HOP_SECONDS)
    if hop_seconds < least * (1 - 1e-9):
        raise ConfigError(f"a hop of {hop_seconds:g} s lays more than {MAX_OVERLAP} windows of "
                          f"{n / rate:.2f} s over each instant; give a hop of at least "
                          f"{least:.3f} s (a {MAX_OVERLAP}th of the examples' length)")
    # rounded up: a hop of `least` seconds stays at least `least` in samples
    return max(1, math.ceil(hop_seconds * rate - 1e-6))


def window_scores(model, examples: list[np.ndarray], stream: np.ndarray | Iterable[np.ndarray],
                  hop_seconds: float | None,
                  stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """-> (each window's best score against the examples, window starts in samples, window
    length in samples). stream: the samples, or an iterable of consecutive blocks of them
    (read as they come: memory bounded by a block and a chunk of windows, not by the
    stream). stop: called between chunks; True raises Cancelled."""
    n = int(np.median([len(e) for e in examples]))
    hop = hop_samples(hop_seconds, n, model.preprocessing.sample_rate)
    emb_ex = model.embed_tensor(Waveforms.from_arrays(examples))
    # windows cut and embedded a chunk at a time, spanning at most CHUNK_SAMPLES (2M)
    chunk = max(1, min(WINDOW_CHUNK, CHUNK_SAMPLES // max(n, hop)))
    scores, starts = [], []
    buf, offset, first = np.zeros(0, np.float32), 0, 0  # buf[0] is sample `offset`
    blocks = [stream] if isinstance(stream, np.ndarray) else stream
    for block in _then_none(blocks):  # None: the stream has ended
        if block is not None:
            buf = np.concatenate([buf, block]) if len(buf) else np.asarray(block, np.float32)
        ready = np.arange(first, offset + len(buf) - n + 1, hop)
        while len(ready) >= chunk or (block is None and len(ready)):
            if stop is not None and stop():
                raise Cancelled()
            part, ready = ready[:chunk], ready[chunk:]
            emb = model.embed_windows(buf, part - offset, n)
            scores.append(np.stack([model.score_embeddings(emb, e.expand_as(emb))
                                    for e in emb_ex]).max(0))
            starts.append(part)
            first = int(part[-1]) + hop
        if first > offset:  # no window needs what lies before `first` any more
            buf, offset = buf[first - offset:], first
    if not scores:
        return np.zeros(0, np.float32), np.zeros(0, np.int64), n
    return np.concatenate(scores).astype(np.float32), np.concatenate(starts), n


def _then_none(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray | None]:
    yield from blocks
    yield None


def calibrate(model, examples: list[np.ndarray], negatives: list[np.ndarray]) -> float:
    """The most accurate threshold between example-vs-example pairs (same word) and
    example-vs-negative pairs (windows of the negatives as long as the examples)."""
    if len(examples) < 2:
        raise ConfigError("calibrating on negatives needs 2 or more examples of the word "
                          "(their pairs are the positives); give another --example")
    n = int(np.median([len(e) for e in examples]))
    emb = model.embed_tensor(Waveforms.from_arrays(examples))
    i, j = np.triu_indices(len(examples), 1)
    pos = model.score_embeddings(emb[i], emb[j])
    neg_windows = []
    for a in negatives:
        a = a if len(a) >= n else np.resize(a, n)
        neg_windows += [a[s:s + n] for s in range(0, len(a) - n + 1, max(1, n // 2))]
    neg_emb = model.embed_tensor(Waveforms.from_arrays(neg_windows))
    neg = np.concatenate([model.score_embeddings(neg_emb, e.expand_as(neg_emb)) for e in emb])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    return float(best_threshold(labels, np.concatenate([pos, neg])))


def detect(scores: np.ndarray, starts: np.ndarray, n: int, rate: int,
           threshold: float) -> list[Detection]:
    """Windows at or above the threshold; windows that overlap one another are one
    detection, at its best window."""
    out: list[Detection] = []
    group: list[int] = []

    def close() -> None:
        if group:
            k = max(group, key=lambda g: scores[g])
            out.append(Detection(round(starts[k] / rate, 3), round((starts[k] + n) / rate, 3),
                                 round(float(scores[k]), 4)))

    for k in np.flatnonzero(scores >= threshold):
        if group and starts[k] >= starts[group[-1]] + n:  # no overlap with the group: a new one
            close()
            group = []
        group.append(int(k))
    close()
    return out


def spot(model, examples: list, audio, negatives: list | None = None,
         threshold: float | None = None, hop_seconds: float | None = None,
         names: tuple[list[str], str, list[str]] | None = None,
         stop: Callable[[], bool] | None = None,
         max_stream_seconds: float = MAX_STREAM_SECONDS) -> dict:
    """examples: paths or bytes of recordings of the word (each at most MAX_EXAMPLE_SECONDS);
    audio: the stream (a path or bytes, at most MAX_STREAM_SECONDS), read a block at a time;
    negatives: recordings without the word (for the threshold); hop_seconds: between windows
    (default 0.1 s, or a 10th of the examples' length if more) -> {"detections": [{start,
    end, score}], "threshold", "threshold_from", "windows", "window_seconds", "hop_seconds",
    "stream_seconds"}. names: the inputs' names for messages (default: the paths). stop:
    polled between chunks of windows; True gives up (Cancelled). max_stream_seconds: the
    stream's limit (the service's is lower)."""
    pre = model.preprocessing
    if pre.kind != "audio":
        raise ConfigError(f"{model.run or 'this model'} compares {pre.kind}s; spotting needs a "
                          "model trained on audio (a word or speaker model)")
    if not examples:
        raise ConfigError("give at least one recording of the word (--example)")
    if threshold is not None:
        threshold = check_number("threshold", threshold, 0, 1)
    if hop_seconds is not None:
        hop_seconds = check_number("hop (seconds)", hop_seconds, MIN_HOP_SECONDS,
                                   MAX_HOP_SECONDS)
    ex_names, audio_name, neg_names = names or ([str(e) for e in examples], str(audio),
                                                [str(x) for x in negatives or []])
    rate = pre.sample_rate
    # (examples and stream may be at any rates: each is resampled to the model's, as
    # everywhere else)
    ex = [read_audio(e, name, rate, MAX_EXAMPLE_SECONDS)
          for e, name in zip(examples, ex_names, strict=True)]
    n = int(np.median([len(e) for e in ex]))
    hop = hop_samples(hop_seconds, n, rate)  # checked before the stream is read
    if threshold is not None:
        source = "given"
    elif negatives:
        negs = [read_audio(x, name, rate) for x, name in zip(negatives, neg_names, strict=True)]
        threshold, source = calibrate(model, ex, negs), "examples against negatives"
    else:
        threshold, source = model.threshold, "the run's verification threshold"
    total = [0]

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for b in blocks:
            total[0] += len(b)
            yield b

    blocks = counted(audio_blocks(audio, audio_name, rate, max_stream_seconds))
    scores, starts, n = window_scores(model, ex, blocks, hop / rate, stop)
    if total[0] < n:
        raise DataError(f"{audio_name} lasts {total[0] / rate:.2f} s, shorter than the "
                        f"examples ({n / rate:.2f} s): give a longer recording to search")
    found = detect(scores, starts, n, rate, threshold)
    return {"detections": [asdict(d) for d in found], "threshold": float(threshold),
            "threshold_from": source, "windows": int(len(scores)),
            "window_seconds": round(n / rate, 3), "hop_seconds": round(hop / rate, 4),
            "stream_seconds": round(total[0] / rate, 3)}


def format_detections(result: dict, audio: str | Path) -> str:
    lines = [f"{len(result['detections'])} detection(s) in {audio} "
             f"({result['stream_seconds']:.1f} s, threshold {result['threshold']:.3f}: "
             f"{result['threshold_from']})"]
    lines += [f"{d['start']:8.2f} - {d['end']:8.2f} s  score {d['score']:.3f}"
              for d in result["detections"]]
    return "\n".join(lines)
