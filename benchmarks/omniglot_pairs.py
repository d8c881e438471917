"""The LFW verification protocol on Omniglot's evaluation characters (never seen in training):
an LFW-style pairs.txt of 10 character-disjoint folds x (300 same + 300 different pairs),
scored by `siamese evaluate RUN --pairs`.

    .venv/bin/python benchmarks/omniglot_pairs.py --run runs/omniglot \\
        --out results/omniglot_pairs.json [--tta 32] [--data-dir ../shared/data] [--seed 0]

or, to train from pairs alone first (no classes: `siamese train --pairs`, the recipe of
configs/omniglot.toml without its class-based parts) on N pairs of background characters
(half same, half different within an alphabet), for M minutes:

    .venv/bin/python benchmarks/omniglot_pairs.py --train-pairs 40000 --train-minutes 5 \\
        --loss pair --run runs/omniglot_from_pairs --out results/omniglot_from_pairs.json

The 659 evaluation characters are split into 10 groups by the seed; fold f draws its 300 same
pairs (two drawings of one character) and 300 different pairs (drawings of two characters, in
the same alphabet where it can: the hard case) from group f only. Images are laid out as LFW
does (`<name>/<name>_0001.png`, hard links). Writes JSON (plain and with --tta) and prints a
markdown table. Skips (exit 0) when the zip is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from common.image_copies import extracted
from common.machine import describe, machine_info

import siamese
from siamese.data.pairs import read_pairs
from siamese.evaluation.pairs import evaluate_pairs

FOLDS, PER = 10, 300


def lfw_tree(source: Path, root: Path) -> dict[str, tuple[str, int]]:
    """name -> (alphabet, drawings), the images hard-linked as <name>/<name>_<k:04d>.png."""
    out = {}
    for alphabet in sorted(p for p in source.iterdir() if p.is_dir()):
        for char in sorted(p for p in alphabet.iterdir() if p.is_dir()):
            name = f"{alphabet.name}-{char.name}".replace(" ", "_")
            files = sorted(char.glob("*.png"))
            (root / name).mkdir(parents=True, exist_ok=True)
            for k, f in enumerate(files, start=1):
                dst = root / name / f"{name}_{k:04d}.png"
                if not dst.exists():
                    os.link(f, dst)
            out[name] = (alphabet.name, len(files))
    return out


def pairs_txt(chars: dict[str, tuple[str, int]], path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = np.array(sorted(chars))
    groups = np.array_split(rng.permutation(names), FOLDS)
    lines = [f"{FOLDS}\t{PER}"]
    for group in groups:
        for _ in range(PER):
            c = rng.choice(group)
            i, j = rng.choice(chars[c][1], 2, replace=False) + 1
            lines.append(f"{c}\t{i}\t{j}")
        for _ in range(PER):
            c = rng.choice(group)
            same_alpha = [g for g in group if g != c and chars[g][0] == chars[c][0]]
            d = rng.choice(same_alpha or [g for g in group if g != c])
            lines.append(f"{c}\t{rng.integers(chars[c][1]) + 1}\t{d}\t"
                         f"{rng.integers(chars[d][1]) + 1}")
    path.write_text("\n".join(lines) + "\n")


def train_pairs_csv(background: Path, path: Path, n: int, seed: int) -> None:
    """n pairs of background drawings: n/2 same character, n/2 two characters of one alphabet."""
    rng = np.random.default_rng([seed, 5])
    alphabets = {}
    for alphabet in sorted(p for p in background.iterdir() if p.is_dir()):
        chars = [sorted(c.glob("*.png")) for c in sorted(alphabet.iterdir()) if c.is_dir()]
        alphabets[alphabet.name] = [c for c in chars if len(c) >= 2]
    names = sorted(alphabets)
    lines = ["a,b,label"]
    for k in range(n):
        chars = alphabets[names[rng.integers(len(names))]]
        c = int(rng.integers(len(chars)))
        if k % 2 == 0:
            i, j = rng.choice(len(chars[c]), 2, replace=False)
            a, b, label = chars[c][i], chars[c][j], 1
        else:
            d = int(rng.choice([x for x in range(len(chars)) if x != c]))
            a, b, label = rng.choice(chars[c]), rng.choice(chars[d]), 0
        lines.append(f"{a},{b},{label}")
    path.write_text("\n".join(lines) + "\n")


def train_from_pairs(args, work: Path) -> None:
    import tomllib

    background = extracted(Path(args.data_dir) / "omniglot" / "images_background.zip",
                           work / "omniglot")
    csv_path = work / f"omniglot_train_pairs_{args.train_pairs}_seed{args.seed}.csv"
    train_pairs_csv(background, csv_path, args.train_pairs, args.seed)
    cfg = tomllib.loads(Path("configs/omniglot.toml").read_text())
    for key in ("path", "class_rotations"):  # no classes: no class folders, no rotated classes
        cfg["data"].pop(key, None)
    for key in ("batch_size", "samples_per_class", "group_batches", "val_pairs"):
        cfg["train"].pop(key, None)  # P x K batches and their validation pairs need classes
    cfg["data"]["pairs"] = str(csv_path)
    cfg["loss"] = {"name": args.loss}
    cfg["split"] = {"val_fraction": 0.05}
    cfg["train"].update(max_minutes=args.train_minutes, seed=args.seed, batch_size=128)
    siamese.train(cfg, args.run, force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", default="results/omniglot_pairs.json")
    ap.add_argument("--tta", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "siamese-bench"))
    ap.add_argument("--train-pairs", type=int, default=0, help="first train --run from this "
                    "many background pairs")
    ap.add_argument("--train-minutes", type=float, default=5.0)
    ap.add_argument("--loss", default="pair", help="with --train-pairs: pair | contrastive | mse")
    args = ap.parse_args()
    zip_path = Path(args.data_dir) / "omniglot" / "images_evaluation.zip"
    if not zip_path.exists():
        print(f"skipped: {zip_path} not found (set --data-dir or SIAMESE_DATA)")
        return
    work = Path(args.work)
    if args.train_pairs:
        train_from_pairs(args, work)
    chars = lfw_tree(extracted(zip_path, work / "omniglot_eval"), work / "omniglot_lfw")
    txt = work / f"omniglot_pairs_seed{args.seed}.txt"
    pairs_txt(chars, txt, args.seed)
    pairs = read_pairs(txt, work / "omniglot_lfw")
    model = siamese.load(args.run)
    rows = {}
    for views in sorted({0, model.views, args.tta}):
        metrics, _ = evaluate_pairs(model, pairs, views=views)
        name = "plain" if views == 0 else f"tta {views}"
        rows[f"as deployed ({views} views)" if views and views == model.views else name] = metrics
    result = {"machine": machine_info(), "run": args.run, "pairs": len(pairs),
              "trained_from_pairs": {"pairs": args.train_pairs, "minutes": args.train_minutes,
                                     "loss": args.loss} if args.train_pairs else None,
              "characters": len(chars), "seed": args.seed, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}; {len(chars)} characters, {len(pairs)} pairs\n")
    print("| scoring | 10-fold accuracy | ROC AUC | EER | TAR@FAR=1e-3 |\n|---|---|---|---|---|")
    for name, m in rows.items():
        p, v = m["protocol"], m["verification"]
        print(f"| {name} | {100 * p['accuracy']:.2f}% +- {100 * p['accuracy_std']:.2f} | "
              f"{v['roc_auc']:.4f} | {100 * v['eer']:.2f}% | {100 * v['tar@far=1e-3']:.1f}% |")


if __name__ == "__main__":
    main()
