"""What a frozen, cached pretrained network saves on a CPU: seconds per training epoch with
MobileNetV2 frozen (its features computed once, the part on top trained) against the same
network fine-tuned whole (`--pretrained-train all`), on the same class folder, same batches.

    .venv/bin/python benchmarks/pretrained_speed.py --out results/pretrained_speed.json \\
        [--data-dir ../shared/data] [--epochs 3] [--draw 0]

The folder is small_data.py's objects draw (track_train target crops, 224 px). Reported: the
median seconds of an epoch's training steps (the card's history), the one-off cost of the
frozen run's features (its whole run minus its epochs and evaluation is not split out: the
run's wall time is given too), and the ratio of the epoch medians. Skips (exit 0) where the
data or the network file is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common.machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
MODES = {"frozen (cached)": ["--pretrained-train", "frozen"],
         "fine-tuned (all)": ["--pretrained-train", "all"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/pretrained_speed.json")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA",
                                                         ROOT.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--draw", type=int, default=0)
    ap.add_argument("--work", default="/tmp/siamese-pretrained-speed")
    args = ap.parse_args()
    data = Path(args.data_dir)
    if not (data / "track_train").is_dir() or \
            not (data / "pretrained" / "mobilenet_v2_imagenet.onnx").is_file():
        print(f"skipped: no track_train/ or pretrained/mobilenet_v2_imagenet.onnx under {data}")
        return 0
    from small_data import objects_draw

    folder = Path(args.work) / f"draw{args.draw}"
    if not folder.exists():
        objects_draw(data, np.random.default_rng([args.draw, 7]), folder)
    env = {**os.environ, "SIAMESE_PRETRAINED_PATH": str(data / "pretrained")}
    rows = {}
    for mode, flags in MODES.items():
        out = Path(args.work) / mode.split()[0]
        cmd = [sys.executable, "-m", "siamese", "train", "--data", str(folder), "--out",
               str(out), "--force", "--quiet", "--pretrained", "mobilenet_v2_imagenet",
               "--epochs", str(args.epochs), "--seed", str(args.draw),
               "--set", "split.validation=classes", *flags]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if r.returncode:
            print(r.stderr[-2000:], file=sys.stderr)
            return 1
        card = json.loads((out / "card.json").read_text())
        epochs = [h["seconds"] for h in card["history"] if "seconds" in h]
        rows[mode] = {"epoch_seconds": epochs, "median_epoch_seconds": statistics.median(epochs),
                      "images_per_epoch": card["history"][0]["images"],
                      "run_seconds": round(wall, 1),
                      "unseen_auc": card["metrics"]["unseen"]["verification"]["roc_auc"]}
    frozen, full = (rows[m]["median_epoch_seconds"] for m in MODES)
    result = {"machine": machine_info(), "args": vars(args) | {"data_dir": str(data)},
              "modes": rows, "speedup_per_epoch": round(full / frozen, 1)}
    lines = ["| mode | s / epoch (median) | images / epoch | whole run, s | unseen AUC |",
             "|---|---|---|---|---|"]
    for mode, r in rows.items():
        lines.append(f"| {mode} | {r['median_epoch_seconds']:.3f} | {r['images_per_epoch']} | "
                     f"{r['run_seconds']:.0f} | {r['unseen_auc']:.4f} |")
    lines.append(f"\nfrozen and cached: {result['speedup_per_epoch']}x faster an epoch")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(f"{describe(machine_info())}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
