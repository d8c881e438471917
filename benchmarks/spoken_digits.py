"""Spoken digits (FSDD), one-shot across speakers: train configs/fsdd.toml on 4 of the 6
speakers, then 10-way 1-shot episodes on the 2 others, the support said by one of them and the
query by the other; and trained on digits 0-5 only, 4-way 1-shot on the unseen digits 6-9
(same speakers split). Baseline in the same run: MFCC + DTW nearest neighbour (13 MFCC with
per-utterance mean removal, the classic template matcher).

    .venv/bin/python benchmarks/spoken_digits.py --budget-minutes 5 --seeds 3 --splits 3 \\
        --out results/spoken_digits.json [--data-dir ../shared/data]

--splits N takes the first N of the 15 ways to hold out 2 speakers (in a fixed order). Writes
JSON and prints a markdown table (mean over splits and seeds; 95% CI over episodes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import tomllib
from itertools import combinations
from pathlib import Path

import numpy as np
from common.machine import describe, machine_info

import siamese
from siamese.data.audio import Waveforms, read_audio


def files_by(root: Path) -> dict[tuple[int, str], list[Path]]:
    out: dict[tuple[int, str], list[Path]] = {}
    for f in sorted(root.glob("*.wav")):
        digit, speaker, _ = f.stem.split("_")
        out.setdefault((int(digit), speaker), []).append(f)
    return out


def episodes(by: dict, speakers: list[str], digits: list[int], n: int, seed: int):
    """n episodes: for every digit one support take by speaker a, one query take by b != a."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        a, b = rng.permutation(speakers)[:2]
        support = [by[(d, a)][rng.integers(len(by[(d, a)]))] for d in digits]
        query = [by[(d, b)][rng.integers(len(by[(d, b)]))] for d in digits]
        yield support, query


def accuracy(correct: list[bool]) -> tuple[float, float]:
    a = np.array(correct, dtype=float)
    return float(a.mean()), float(1.96 * a.std(ddof=1) / np.sqrt(len(a)))


def score_model(model, eps, cache: dict) -> tuple[float, float]:
    def emb(files):
        missing = [f for f in files if f not in cache]
        if missing:
            w = Waveforms.from_arrays([read_audio(str(f), str(f), 8000) for f in missing])
            for f, e in zip(missing, model.embed_tensor(w).numpy(), strict=True):
                cache[f] = e
        return np.stack([cache[f] for f in files])

    correct = []
    for support, query in eps:
        s, q = emb(support), emb(query)
        correct += list((q @ s.T).argmax(1) == np.arange(len(query)))
    return accuracy(correct)


def score_dtw(eps, cache: dict) -> tuple[float, float]:
    import librosa

    def mfcc(f):
        if f not in cache:
            x = read_audio(str(f), str(f), 8000)
            m = librosa.feature.mfcc(y=x, sr=8000, n_mfcc=13, n_fft=256, hop_length=80,
                                     win_length=200, n_mels=32)
            cache[f] = m - m.mean(1, keepdims=True)
        return cache[f]

    correct = []
    for support, query in eps:
        for i, qf in enumerate(query):
            d = [librosa.sequence.dtw(mfcc(qf), mfcc(sf), metric="euclidean")[0][-1, -1]
                 / (mfcc(qf).shape[1] + mfcc(sf).shape[1]) for sf in support]
            correct.append(int(np.argmin(d)) == i)
    return accuracy(correct)


def train(cfg: dict, by: dict, speakers: list[str], digits: list[int], work: Path,
          out: Path):
    folder = work / "train"
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for (d, s), files in by.items():
        if s in speakers and d in digits:
            for f in files:
                os.symlink(f.resolve(), folder / f.name)
    cfg = json.loads(json.dumps(cfg))
    cfg["data"]["path"] = str(folder)
    return siamese.train(cfg, out, force=True, quiet=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-minutes", type=float, default=5.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--config", default="configs/fsdd.toml")
    ap.add_argument("--out", default="results/spoken_digits.json")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    args = ap.parse_args()
    root = Path(args.data_dir) / "fsdd" / "recordings"
    if not root.is_dir():
        print(f"skipped: {root} not found (set --data-dir or SIAMESE_DATA)")
        return
    by = files_by(root)
    speakers = sorted({s for _, s in by})
    cfg = tomllib.loads(Path(args.config).read_text())
    cfg["train"]["max_minutes"] = args.budget_minutes
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for held in list(combinations(speakers, 2))[:args.splits]:
            train_spk = [s for s in speakers if s not in held]
            eps10 = list(episodes(by, list(held), list(range(10)), args.episodes, 0))
            eps4 = list(episodes(by, list(held), [6, 7, 8, 9], args.episodes, 1))
            dtw_cache: dict = {}
            row = {"held_out": held, "dtw_10way": score_dtw(eps10, dtw_cache),
                   "dtw_unseen_4way": score_dtw(eps4, dtw_cache), "seeds": []}
            for seed in range(args.seeds):
                cfg["train"]["seed"] = seed
                m10 = train(cfg, by, train_spk, list(range(10)), work, work / "run10")
                m4 = train(cfg, by, train_spk, list(range(6)), work, work / "run6")
                row["seeds"].append({"seed": seed, "10way": score_model(m10, eps10, {}),
                                     "unseen_4way": score_model(m4, eps4, {}),
                                     "epochs": len(m10.card["history"])})
                print(held, row["seeds"][-1], flush=True)
            rows.append(row)
    mean = {k: statistics.mean(s[k][0] for r in rows for s in r["seeds"])
            for k in ("10way", "unseen_4way")}
    dtw = {k: statistics.mean(r[f"dtw_{k}"][0] for r in rows) for k in ("10way", "unseen_4way")}
    result = {"machine": machine_info(), "budget_minutes": args.budget_minutes,
              "episodes": args.episodes, "splits": rows, "mean": mean, "mean_dtw": dtw}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}; {args.budget_minutes:g}-minute budget, "
          f"{len(rows)} speaker splits x {args.seeds} seeds, {args.episodes} episodes each\n")
    print("| held-out speakers | 10-way 1-shot (MFCC+DTW) | 10-way 1-shot (ours) | "
          "unseen 6-9, 4-way (MFCC+DTW) | unseen 6-9, 4-way (ours) |\n|---|---|---|---|---|")
    for r in rows:
        ours10 = statistics.mean(s["10way"][0] for s in r["seeds"])
        ours4 = statistics.mean(s["unseen_4way"][0] for s in r["seeds"])
        print(f"| {' + '.join(r['held_out'])} | {100 * r['dtw_10way'][0]:.1f}% | "
              f"{100 * ours10:.1f}% | {100 * r['dtw_unseen_4way'][0]:.1f}% | "
              f"{100 * ours4:.1f}% |")
    print(f"| **mean** | {100 * dtw['10way']:.1f}% | **{100 * mean['10way']:.1f}%** | "
          f"{100 * dtw['unseen_4way']:.1f}% | **{100 * mean['unseen_4way']:.1f}%** |")


if __name__ == "__main__":
    main()
