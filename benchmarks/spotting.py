"""Spotting a word enrolled from one example in a stream, on generated streams: for each trial
a digit (unseen by configs/words.toml) is enrolled from one clip of a Speech Commands test
speaker, and a stream is built from `--clips` one-second clips of the other test speakers
(ids 0-7): `--occurrences` of the digit, the rest other words (any of the 34), end to end, in
white noise at 20 dB SNR. A detection (overlapping windows above the threshold are one, as
`siamese spot` reports) is a hit when it overlaps an occurrence's second, else a false alarm.
One threshold for all trials (swept); reported: the share of occurrences found at 1, 10 and
100 false alarms per hour of stream, and the curve in a plot beside the JSON (.png).

Systems, in the same run: the word model's windows scored against the example (what
`siamese spot` does), and MFCC + subsequence DTW (13 MFCC, CMVN; the example's silence trimmed;
score = minus the alignment cost per example frame, at every stream frame).

    .venv/bin/python benchmarks/spotting.py --run runs/words_seed0 --trials 30 \\
        --out results/spotting.json [--data-dir ../shared/data]

Writes JSON and prints a markdown table. Skips (exit 0) when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from common.machine import describe, machine_info
from oneshot_words import DIGITS, mfcc_cmvn

import siamese
from siamese.data.audio import read_audio
from siamese.spot import detect, window_scores

RATE = 8000


def test_clips(root: Path) -> dict[str, list[Path]]:
    """word -> clips of the test speakers (ids 0-7)."""
    return {w.name: sorted(f for f in w.glob("*.flac") if f.name[0] in "01234567")
            for w in sorted((root / "test").iterdir()) if w.is_dir()}


def make_trial(clips: dict, word: str, n_clips: int, occurrences: int, rng):
    """-> (example, stream, occurrence intervals in seconds)."""
    speaker = lambda f: f.name.split("_")[0]  # noqa: E731
    example = clips[word][rng.integers(len(clips[word]))]
    own = [f for f in clips[word] if speaker(f) != speaker(example)]
    others = [f for w, fs in clips.items() if w != word for f in fs
              if speaker(f) != speaker(example)]
    picks = list(rng.choice(own, occurrences, replace=len(own) < occurrences)) + \
        list(rng.choice(others, n_clips - occurrences, replace=False))
    order = rng.permutation(len(picks))
    parts, spans, t = [], [], 0.0
    for k in order:
        x = read_audio(str(picks[k]), str(picks[k]), RATE)
        x = np.pad(x, (0, max(0, RATE - len(x))))[:RATE]
        parts.append(x)
        if k < occurrences:
            spans.append((t, t + 1.0))
        t += 1.0
    stream = np.concatenate(parts)
    power = np.mean(stream ** 2)
    stream = stream + rng.normal(0, np.sqrt(power / 10 ** 2), len(stream)).astype(np.float32)
    return read_audio(str(example), str(example), RATE), stream.astype(np.float32), spans


def dtw_scores(example: np.ndarray, stream: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Subsequence DTW of the example's MFCC over the stream's -> (score per stream frame,
    the start of each frame's window in frames, the example's length in frames)."""
    import librosa

    q, s = mfcc_cmvn(example, RATE), mfcc_cmvn(stream, RATE, trim=False)
    acc = librosa.sequence.dtw(q, s, metric="euclidean", subseq=True, backtrack=False)
    n = q.shape[1]
    return -acc[-1] / n, np.maximum(np.arange(acc.shape[1]) - n + 1, 0), n


def sweep(trials: list[dict], hours: float) -> dict:
    """Occurrences found at 1 and 10 false alarms per hour (one threshold for all trials)."""
    allscores = np.concatenate([t["scores"] for t in trials])
    thresholds = np.unique(np.quantile(allscores, np.linspace(0.5, 1.0, 400)))
    curve = []
    for th in thresholds:
        hits = fas = total = 0
        for t in trials:
            det = detect(t["scores"], t["starts"], t["n"], t["rate"], th)
            found = [any(d.start < e and d.end > s for d in det) for s, e in t["spans"]]
            hits += sum(found)
            total += len(found)
            fas += sum(not any(d.start < e and d.end > s for s, e in t["spans"]) for d in det)
        curve.append((float(th), hits / total, fas / hours))
    out = {}
    for rate in (1, 10, 100):
        ok = [c for c in curve if c[2] <= rate]
        out[f"found_at_{rate}_fa_per_hour"] = max((c[1] for c in ok), default=0.0)
    out["curve"] = curve
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/words_seed0", help="a word model's run folder")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--clips", type=int, default=100, help="one-second clips per stream")
    ap.add_argument("--occurrences", type=int, default=10)
    ap.add_argument("--out", default="results/spotting.json")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    args = ap.parse_args()
    root = Path(args.data_dir) / "speech_commands"
    if not (root / "test").is_dir():
        print(f"skipped: {root} not found (set --data-dir or SIAMESE_DATA)")
        return
    model = siamese.load(args.run)
    clips = test_clips(root)
    rng = np.random.default_rng(0)
    systems: dict[str, list[dict]] = {"ours": [], "mfcc_dtw": []}
    for k in range(args.trials):
        word = DIGITS[k % len(DIGITS)]
        example, stream, spans = make_trial(clips, word, args.clips, args.occurrences, rng)
        scores, starts, n = window_scores(model, [example], stream, 0.1)
        systems["ours"].append({"scores": scores, "starts": starts, "n": n, "rate": RATE,
                                "spans": spans})
        scores, starts, n = dtw_scores(example, stream)
        systems["mfcc_dtw"].append({"scores": scores, "starts": starts, "n": n, "rate": 100,
                                    "spans": spans})
        print(f"trial {k + 1}/{args.trials} ({word})", flush=True)
    hours = args.trials * args.clips / 3600
    result = {"machine": machine_info(), "run": args.run, "trials": args.trials,
              "stream_hours": hours, "occurrences": args.trials * args.occurrences,
              "systems": {name: sweep(t, hours) for name, t in systems.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}; {args.trials} streams, {60 * hours:.0f} minutes, "
          f"{result['occurrences']} occurrences\n")
    print("| system | found at 1 false alarm / hour | at 10 / hour | at 100 / hour |\n"
          "|---|---|---|---|")
    for name, r in result["systems"].items():
        print(f"| {name} | " + " | ".join(f"{100 * r[f'found_at_{k}_fa_per_hour']:.1f}%"
                                         for k in (1, 10, 100)) + " |")
    plot(result, Path(args.out).with_suffix(".png"))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in result["systems"].items():
        c = np.array(r["curve"])
        keep = c[:, 2] > 0
        ax.plot(c[keep, 2], 100 * c[keep, 1], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("occurrences found (%)")
    ax.set_title(f"one-example spotting, {result['trials']} streams")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
