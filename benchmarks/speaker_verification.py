"""Speaker verification within and across corpora: train a speaker recipe for a wall-clock
budget, then EER and minDCF (p_target 0.01) on every trial list below that the data folder
holds, cosine scoring, raw and AS-norm (cohort: the recipe's training recordings):
- LibriSpeech test-other: all 4,950 pairs of its 100 utterances (10 speakers never seen),
  each utterance embedded whole (windows of the training crop, averaged);
- Speech Commands test speakers (ids 0-7), one-second clips: `speaker_trials.tsv` (40,000
  text-independent pairs);
- FSDD's 6 speakers, 8 kHz, ~0.4 s: 40,000 pairs drawn with a fixed seed, 20,000 of one
  speaker saying two different digits and 20,000 of two speakers (any digits).
Baselines in the same run, untrained: 20 MFCC and 40 log-mel mean+std vectors per recording,
standardised on LibriSpeech train-clean-100 or on the trial recordings themselves (no labels),
cosine; ours also with its embeddings centred on the trial recordings, for a like comparison.
Optional peer: Resemblyzer (pretrained GE2E; `.venv/bin/pip install -c constraints.txt
resemblyzer "setuptools<81"`: its webrtcvad imports pkg_resources), skipped where absent.

    .venv/bin/python benchmarks/speaker_verification.py --budget-minutes 20 --seeds 3 \\
        --out results/speakers.json [--config configs/speakers.toml] [--data-dir ../shared/data]

Writes JSON (per seed and the mean) and prints a markdown table. Skips (exit 0) when the data
is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from common.machine import describe, machine_info
from common.recipe import load_recipe

import siamese
from siamese.data.audio import load_waveforms
from siamese.data.datasets import load_audio_tree, load_dataset
from siamese.evaluation.score_norm import as_norm
from siamese.evaluation.verification import equal_error_rate, min_dcf

FSDD_PAIRS = 40_000


def all_pairs(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.array(list(combinations(range(len(y)), 2))).T
    return i, j, (y[i] == y[j]).astype(np.int64)


def scores_of(emb: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return (e[i] * e[j]).sum(1)


def fsdd_pairs(speaker: np.ndarray, digit: np.ndarray, n: int, seed: int = 0):
    """n//2 pairs of one speaker saying two different digits, n//2 of two speakers."""
    rng = np.random.default_rng(seed)
    pos, neg = set(), set()
    while len(pos) < n // 2 or len(neg) < n - n // 2:
        a, b = rng.integers(0, len(speaker), 2)
        key = (min(a, b), max(a, b))
        if speaker[a] == speaker[b] and digit[a] != digit[b] and len(pos) < n // 2:
            pos.add(key)
        elif speaker[a] != speaker[b] and len(neg) < n - n // 2:
            neg.add(key)
    pairs = np.array(sorted(pos) + sorted(neg))
    y = np.r_[np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)]
    return pairs[:, 0], pairs[:, 1], y


def trial_sets(data_dir: Path, rate: int) -> dict:
    """name -> (recordings as Waveforms, i, j, labels), for each list whose data is there."""
    out = {}
    ls = data_dir / "librispeech" / "test-other"
    if ls.is_dir():
        test = load_audio_tree(ls, rate)
        out["LibriSpeech test-other"] = (test.x, *all_pairs(test.y))
    sc = data_dir / "speech_commands"
    if (sc / "speaker_trials.tsv").is_file():
        rows = [r.split("\t") for r in (sc / "speaker_trials.tsv").read_text().splitlines()
                if r and not r.startswith("#")]
        paths = sorted({p for r in rows for p in r[1:3]})
        index = {p: k for k, p in enumerate(paths)}
        files = [str(sc / p) for p in paths]
        out["Speech Commands test speakers, 1 s"] = (
            load_waveforms(files, files, rate), np.array([index[r[1]] for r in rows]),
            np.array([index[r[2]] for r in rows]), np.array([int(r[0]) for r in rows]))
    fsdd = data_dir / "fsdd" / "recordings"
    if fsdd.is_dir():
        d = load_audio_tree(fsdd, rate, label_pattern=r"^\d_([a-z]+)_")
        digit = np.array([int(Path(s).name[0]) for s in d.sources])
        out["FSDD, 6 speakers, 8 kHz"] = (d.x, *fsdd_pairs(d.y, digit, FSDD_PAIRS))
    return out


def stats_vectors(waves, rate: int, kind: str) -> np.ndarray:
    """Per recording: mean and std over time of 20 MFCC or 40 log-mel bands (librosa)."""
    import librosa

    out = []
    for k in range(len(waves)):
        x = waves.get(k).numpy()
        if kind == "mfcc":
            f = librosa.feature.mfcc(y=x, sr=rate, n_mfcc=20, n_fft=512, hop_length=160,
                                     win_length=400, n_mels=40)
        else:
            f = np.log(librosa.feature.melspectrogram(y=x, sr=rate, n_fft=512, hop_length=160,
                                                      win_length=400, n_mels=40) + 1e-6)
        out.append(np.concatenate([f.mean(1), f.std(1)]))
    return np.array(out)


def metrics(y: np.ndarray, s: np.ndarray) -> dict:
    return {"eer": equal_error_rate(y, s), "min_dcf": min_dcf(y, s, 0.01)}


def baselines(trials: dict, reference, rate: int) -> dict:
    """name -> system -> metrics, for the untrained statistics (and Resemblyzer if present):
    standardised on LibriSpeech train-clean-100, and on the trial recordings themselves (no
    labels; the stronger on short clips of other corpora)."""
    out = {name: {} for name in trials}
    for kind in ("mfcc", "logmel"):
        ref = stats_vectors(reference, rate, kind)
        for name, (x, i, j, y) in trials.items():
            v = stats_vectors(x, rate, kind)
            for where, base in (("LibriSpeech train", ref), ("the trials", v)):
                z = (v - base.mean(0)) / (base.std(0) + 1e-8)
                out[name][f"{kind} mean+std, standardised on {where}"] = metrics(
                    y, scores_of(z, i, j))
    try:
        from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError:
        print("Resemblyzer: not installed (pip install resemblyzer), skipped")
        return out
    enc = VoiceEncoder("cpu", verbose=False)
    for name, (x, i, j, y) in trials.items():
        e = np.array([enc.embed_utterance(preprocess_wav(x.get(k).numpy(), rate))
                      for k in range(len(x))])
        out[name]["Resemblyzer (pretrained)"] = metrics(y, scores_of(e, i, j))
    return out


def rebase(path, data_dir: Path):
    """A recipe's ../shared/data/... path(s) moved under --data-dir."""
    if isinstance(path, list):
        return [rebase(p, data_dir) for p in path]
    p = str(path)
    return str(data_dir / p.split("shared/data/", 1)[1]) if "shared/data/" in p else p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-minutes", type=float, default=20.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true",
                    help="evaluate the runs already in <runs>_seed<k> instead of training")
    ap.add_argument("--as-norm-top", type=int, default=100,
                    help="AS-norm: top cohort scores per side (cohort: the training recordings)")
    ap.add_argument("--config", default="configs/speakers.toml")
    ap.add_argument("--out", default="results/speakers.json")
    ap.add_argument("--runs", default="runs/speakers", help="run folders: <runs>_seed<k>")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--no-baselines", action="store_true", help="only the trained model's rows")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change the recipe (e.g. augment.reverb=0)")
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    if not (data_dir / "librispeech" / "train-clean-100").is_dir():
        print(f"skipped: {data_dir}/librispeech not found (set --data-dir or SIAMESE_DATA)")
        return
    cfg = load_recipe(args.config, [f"train.max_minutes={args.budget_minutes}", *args.set])
    cfg["data"]["path"] = rebase(cfg["data"]["path"], data_dir)
    rate = cfg["data"]["sample_rate"]
    trials = trial_sets(data_dir, rate)
    d = cfg["data"]
    cohort = load_dataset(d["path"], sample_rate=rate, label_pattern=d.get("label_pattern", ""),
                          include=d.get("include", ""), exclude=d.get("exclude", ""))
    result = {"machine": machine_info(), "budget_minutes": args.budget_minutes, "recipe": cfg,
              "trials": {k: {"pairs": len(v[3]), "same": int(v[3].sum())}
                         for k, v in trials.items()},
              "baselines": {} if args.no_baselines else
              baselines(trials, load_audio_tree(data_dir / "librispeech" / "train-clean-100",
                                                rate).x, rate),
              "seeds": []}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        cfg["train"]["seed"] = seed
        t0 = time.time()
        run = f"{args.runs}_seed{seed}"
        model = siamese.load(run) if args.reuse else siamese.train(cfg, run, force=True)
        seconds = time.time() - t0 if not args.reuse else None
        ref = model.embed_tensor(cohort.x).numpy()
        hist = model.card["history"]
        crop = model.card["config"]["data"]["crop_seconds"]
        r = {"seed": seed, "epochs": len(hist), "seconds": seconds and round(seconds, 1),
             "audio_seconds_per_second": sum(h["images"] for h in hist) * crop /
             max(sum(h["seconds"] for h in hist), 1e-9), "trials": {}}
        for name, (x, i, j, y) in trials.items():
            emb = model.embed_tensor(x).numpy()
            m = metrics(y, scores_of(emb, i, j))
            n = metrics(y, as_norm(emb, i, j, ref, args.as_norm_top))
            c = metrics(y, scores_of(emb - emb.mean(0), i, j))  # as the baselines' 2nd rows
            r["trials"][name] = {**m, "as_norm_eer": n["eer"], "as_norm_min_dcf": n["min_dcf"],
                                 "centred_eer": c["eer"], "centred_min_dcf": c["min_dcf"]}
            print(f"seed {seed}, {name}: EER {100 * m['eer']:.2f}%, AS-norm "
                  f"{100 * n['eer']:.2f}%", flush=True)
        result["seeds"].append(r)
    result["mean"] = {name: {k: statistics.mean(r["trials"][name][k] for r in result["seeds"])
                             for k in ("eer", "min_dcf", "as_norm_eer", "as_norm_min_dcf",
                                       "centred_eer", "centred_min_dcf")}
                      for name in trials}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}; {args.budget_minutes:g}-minute budget, "
          f"{args.config}\n")
    names = list(trials)
    print("| system | " + " | ".join(f"{n} EER (minDCF)" for n in names) + " |\n|---" * 1 +
          "|---" * len(names) + "|")
    cell = lambda m: f"{100 * m['eer']:.2f}% ({m['min_dcf']:.3f})"  # noqa: E731
    systems = sorted({s for v in result["baselines"].values() for s in v})
    for s in systems:
        print(f"| {s} | " + " | ".join(cell(result["baselines"][n][s]) for n in names) + " |")
    for r in result["seeds"]:
        print(f"| ours, seed {r['seed']} ({r['epochs']} epochs) | " +
              " | ".join(cell(r["trials"][n]) for n in names) + " |")
    m = result["mean"]
    print(f"| **ours, mean of {len(result['seeds'])}** | " +
          " | ".join(f"**{cell(m[n])}**" for n in names) + " |")
    for key, what in (("as_norm", "AS-norm (cohort: the training recordings)"),
                      ("centred", "embeddings centred on the trial recordings")):
        print(f"| ours, mean, {what} | " + " | ".join(
            cell({"eer": m[n][f"{key}_eer"], "min_dcf": m[n][f"{key}_min_dcf"]})
            for n in names) + " |")


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
