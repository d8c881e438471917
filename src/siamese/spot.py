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

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data.audio import Waveforms, read_audio
from .errors import ConfigError, DataError
from .evaluation.verification import best_threshold
from .outputs import check_number

MAX_STREAM_SECONDS = 4 * 3600.0
MIN_HOP_SECONDS, MAX_HOP_SECONDS = 0.01, 10.0  # between windows (a smaller hop: more windows)
WINDOW_CHUNK, CHUNK_SAMPLES = 256, 2**22  # windows embedded at once: at most these many


@dataclass
class Detection:
    start: float  # seconds from the stream's start
    end: float
    score: float


def window_scores(model, examples: list[np.ndarray], stream: np.ndarray,
                  hop_seconds: float) -> tuple[np.ndarray, np.ndarray, int]:
    """-> (each window's best score against the examples, window starts in samples, window
    length in samples)."""
    n = int(np.median([len(e) for e in examples]))
    hop = max(1, int(round(hop_seconds * model.preprocessing.sample_rate)))
    starts = np.arange(0, len(stream) - n + 1, hop)
    emb_ex = model.embed_tensor(Waveforms.from_arrays(examples))
    scores = np.empty(len(starts), np.float32)
    chunk = max(1, min(WINDOW_CHUNK, CHUNK_SAMPLES // n))
    for k in range(0, len(starts), chunk):  # windows cut a chunk at a time: memory bounded
        part = starts[k:k + chunk]  # by the chunk (4M samples), not by the stream
        emb = model.embed_tensor(Waveforms.from_arrays([stream[s:s + n] for s in part]))
        scores[k:k + len(part)] = np.stack([model.score_embeddings(emb, e.expand_as(emb))
                                            for e in emb_ex]).max(0)
    return scores, starts, n


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
         threshold: float | None = None, hop_seconds: float = 0.1,
         names: tuple[list[str], str, list[str]] | None = None) -> dict:
    """examples: paths or bytes of recordings of the word; audio: the stream (a path or
    bytes); negatives: recordings without the word (for the threshold) -> {"detections":
    [{start, end, score}], "threshold", "threshold_from", "windows", "window_seconds"}.
    names: the inputs' names for messages (default: the paths)."""
    pre = model.preprocessing
    if pre.kind != "audio":
        raise ConfigError(f"{model.run or 'this model'} compares {pre.kind}s; spotting needs a "
                          "model trained on audio (a word or speaker model)")
    if not examples:
        raise ConfigError("give at least one recording of the word (--example)")
    if threshold is not None:
        threshold = check_number("threshold", threshold, 0, 1)
    hop_seconds = check_number("hop (seconds)", hop_seconds, MIN_HOP_SECONDS, MAX_HOP_SECONDS)
    ex_names, audio_name, neg_names = names or ([str(e) for e in examples], str(audio),
                                                [str(x) for x in negatives or []])
    rate = pre.sample_rate
    ex = [read_audio(e, name, rate) for e, name in zip(examples, ex_names, strict=True)]
    # (examples and stream may be at any rates: each is resampled to the model's, as
    # everywhere else)
    stream = read_audio(audio, audio_name, rate, MAX_STREAM_SECONDS)
    n = int(np.median([len(e) for e in ex]))
    if len(stream) < n:
        raise DataError(f"{audio_name} lasts {len(stream) / rate:.2f} s, shorter than the "
                        f"examples ({n / rate:.2f} s): give a longer recording to search")
    if threshold is not None:
        source = "given"
    elif negatives:
        negs = [read_audio(x, name, rate) for x, name in zip(negatives, neg_names, strict=True)]
        threshold, source = calibrate(model, ex, negs), "examples against negatives"
    else:
        threshold, source = model.threshold, "the run's verification threshold"
    scores, starts, n = window_scores(model, ex, stream, hop_seconds)
    found = detect(scores, starts, n, rate, threshold)
    return {"detections": [asdict(d) for d in found], "threshold": float(threshold),
            "threshold_from": source, "windows": int(len(scores)),
            "window_seconds": round(n / rate, 3), "stream_seconds": round(len(stream) / rate, 3)}


def format_detections(result: dict, audio: str | Path) -> str:
    lines = [f"{len(result['detections'])} detection(s) in {audio} "
             f"({result['stream_seconds']:.1f} s, threshold {result['threshold']:.3f}: "
             f"{result['threshold_from']})"]
    lines += [f"{d['start']:8.2f} - {d['end']:8.2f} s  score {d['score']:.3f}"
              for d in result["detections"]]
    return "\n".join(lines)
