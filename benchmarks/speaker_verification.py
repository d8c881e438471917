"""Speaker verification on LibriSpeech excerpts: train configs/librispeech.toml on
train-clean-100 (251 speakers) for a wall-clock budget, then EER and minDCF (p_target 0.01) on
all 4,950 pairs of the 100 test-other utterances (10 speakers never seen), each utterance
embedded whole (windows of the training crop, averaged). Baselines in the same run, untrained:
20 MFCC and 40 log-mel mean+std vectors per utterance, standardised on train-clean-100, cosine.

    .venv/bin/python benchmarks/speaker_verification.py --budget-minutes 30 --seeds 3 \\
        --out results/speaker_verification.json [--data-dir ../shared/data]

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
from machine import describe, machine_info
from recipe import load_recipe

import siamese
from siamese.data.datasets import load_audio_tree
from siamese.evaluation.score_norm import as_norm
from siamese.evaluation.verification import equal_error_rate, min_dcf


def all_pairs(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.array(list(combinations(range(len(y)), 2))).T
    return i, j, (y[i] == y[j]).astype(np.int64)


def scores_of(emb: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return (e[i] * e[j]).sum(1)


def stats_vectors(waves, rate: int, kind: str) -> np.ndarray:
    """Per utterance: mean and std over time of 20 MFCC or 40 log-mel bands (librosa)."""
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


def baselines(train, test, rate: int) -> dict:
    i, j, y = all_pairs(test.y)
    out = {}
    for kind in ("mfcc", "logmel"):
        tr, te = stats_vectors(train.x, rate, kind), stats_vectors(test.x, rate, kind)
        te = (te - tr.mean(0)) / (tr.std(0) + 1e-8)
        s = scores_of(te, i, j)
        out[f"{kind} mean+std, cosine"] = {"eer": equal_error_rate(y, s),
                                           "min_dcf": min_dcf(y, s, 0.01)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-minutes", type=float, default=30.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true",
                    help="evaluate the runs already in <runs>_seed<k> instead of training")
    ap.add_argument("--as-norm-top", type=int, default=100,
                    help="AS-norm: top cohort scores per side (cohort: the training speakers)")
    ap.add_argument("--config", default="configs/librispeech.toml")
    ap.add_argument("--out", default="results/speaker_verification.json")
    ap.add_argument("--runs", default="runs/speakers", help="run folders: <runs>_seed<k>")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change the recipe (e.g. model.encoder=\"audio_resnet\")")
    args = ap.parse_args()
    root = Path(args.data_dir) / "librispeech"
    if not (root / "test-other").is_dir():
        print(f"skipped: {root} not found (set --data-dir or SIAMESE_DATA)")
        return
    cfg = load_recipe(args.config, [f"data.path={json.dumps(str(root / 'train-clean-100'))}",
                                    f"train.max_minutes={args.budget_minutes}", *args.set])
    rate = cfg["data"]["sample_rate"]
    test = load_audio_tree(root / "test-other", rate)
    train = load_audio_tree(root / "train-clean-100", rate)
    i, j, y = all_pairs(test.y)
    result = {"machine": machine_info(), "budget_minutes": args.budget_minutes,
              "recipe": cfg,
              "pairs": len(y), "same_speaker_pairs": int(y.sum()),
              "baselines": baselines(train, test, rate), "seeds": []}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        cfg["train"]["seed"] = seed
        t0 = time.time()
        run = f"{args.runs}_seed{seed}"
        model = siamese.load(run) if args.reuse else siamese.train(cfg, run, force=True)
        seconds = time.time() - t0 if not args.reuse else None
        emb = model.embed_tensor(test.x).numpy()
        s = scores_of(emb, i, j)
        normed = as_norm(emb, i, j, model.embed_tensor(train.x).numpy(), args.as_norm_top)
        hist = model.card["history"]
        audio_s = sum(h["images"] for h in hist) * cfg["data"]["crop_seconds"]
        train_s = sum(h["seconds"] for h in hist)
        result["seeds"].append({"seed": seed, "eer": equal_error_rate(y, s),
                                "min_dcf": min_dcf(y, s, 0.01), "epochs": len(hist),
                                "as_norm_eer": equal_error_rate(y, normed),
                                "as_norm_min_dcf": min_dcf(y, normed, 0.01),
                                "seconds": seconds and round(seconds, 1),
                                "audio_seconds_per_second": audio_s / max(train_s, 1e-9)})
        r = result["seeds"][-1]
        print(f"seed {seed}: EER {100 * r['eer']:.2f}%, with AS-norm "
              f"{100 * r['as_norm_eer']:.2f}%", flush=True)
    for key in ("eer", "min_dcf", "as_norm_eer", "as_norm_min_dcf", "audio_seconds_per_second"):
        result[f"mean_{key}"] = statistics.mean(r[key] for r in result["seeds"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}; {args.budget_minutes:g}-minute budget, "
          f"{len(y)} pairs ({int(y.sum())} same speaker)\n")
    print("| system | EER | minDCF (0.01) | EER, AS-norm | minDCF, AS-norm |\n"
          "|---|---|---|---|---|")
    for name, m in result["baselines"].items():
        print(f"| {name} (untrained) | {100 * m['eer']:.2f}% | {m['min_dcf']:.3f} | | |")
    for r in result["seeds"]:
        print(f"| {cfg['model']['encoder']} + {cfg['loss']['name']}, seed {r['seed']} "
              f"({r['epochs']} epochs, {r['audio_seconds_per_second']:.0f} s of audio/s) | "
              f"{100 * r['eer']:.2f}% | {r['min_dcf']:.3f} | {100 * r['as_norm_eer']:.2f}% | "
              f"{r['as_norm_min_dcf']:.3f} |")
    m = result
    print(f"| **mean of {len(m['seeds'])} seeds** | **{100 * m['mean_eer']:.2f}%** | "
          f"**{m['mean_min_dcf']:.3f}** | **{100 * m['mean_as_norm_eer']:.2f}%** | "
          f"**{m['mean_as_norm_min_dcf']:.3f}** |")


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
