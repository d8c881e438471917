"""Training throughput as a run scales out on one machine: images on disk read by DataLoader
workers against images in memory, and 2 processes (torchrun, gloo) against 1.

    .venv/bin/python benchmarks/scale_out.py streaming --repeats 3 --budget-minutes 1 \\
        --out results/streaming_throughput.json [--data-dir ../shared/data] [--workers 2]
    .venv/bin/python benchmarks/scale_out.py distributed --repeats 3 \\
        --out results/distributed.json [--data-dir ../shared/data]

streaming: configs/omniglot.toml on the extracted images_background folder (19,280 PNGs) for
`--budget-minutes`, in turn cache "memory" (0 workers), "none" (PNGs decoded per batch by N
workers) and "disk" (decoded once to a uint8 file, made in the first repeat, read by N
workers); images/s of the training steps (validation excluded), median over the repeats, and
the ratios to memory.
distributed: configs/digits.toml (the demo: fixed work, 10 epochs) on 1 process (torch's
threads) and on `torchrun --standalone --nproc-per-node 2` (1 thread each, torchrun's default),
same seed: images/s, the per-epoch loss curves and the unseen-digit ROC AUC of each; then the
Omniglot recipe for `--budget-minutes` on each (images/s). Every run is a fresh process.
Writes JSON with the machine, prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common.image_copies import extracted
from common.machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


def train(config: str, out: Path, ranks: int, *flags: str) -> dict:
    cmd = ([*TORCHRUN, str(ranks)] if ranks > 1 else [sys.executable]) + \
        ["-m", "siamese", "train", "--config", str(ROOT / "configs" / config), "--out",
         str(out), "--force", "--quiet", *flags]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    card = json.loads((out / "card.json").read_text())
    h = card["history"]
    unseen = card["metrics"].get("unseen", {}).get("verification", {}).get("roc_auc")
    return {"images_per_s": sum(e["images"] for e in h) / sum(e["seconds"] for e in h),
            "losses": [e["loss"] for e in h], "unseen_auc": unseen, "engine": card["engine"]}


def streaming(args, work: Path) -> dict:
    folder = extracted(Path(args.data_dir) / "omniglot" / "images_background.zip",
                       work / "omniglot")
    runs = {"memory": [], "none": [], "disk": []}
    for rep in range(args.repeats):
        for cache in runs:
            w = 0 if cache == "memory" else args.workers
            r = train("omniglot.toml", work / f"s-{cache}", 1, "--data", str(folder), "--cache",
                      cache, "--workers", str(w), "--max-minutes", str(args.budget_minutes),
                      "--seed", str(rep), "--cache-dir", str(work / "decoded"))
            runs[cache].append(r["images_per_s"])
            print(cache, rep, round(runs[cache][-1]), flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"images_per_s": runs, "median": med,
            "ratio_to_memory": {k: med[k] / med["memory"] for k in med}, "workers": args.workers,
            "budget_minutes": args.budget_minutes}


def distributed(args, work: Path) -> dict:
    out: dict = {"digits": {1: [], 2: []}, "omniglot": {1: [], 2: []}}
    zip_path = Path(args.data_dir) / "omniglot" / "images_background.zip"
    omni = ("--data", str(zip_path), "--max-minutes", str(args.budget_minutes))
    for rep in range(args.repeats):
        for ranks in (1, 2):
            out["digits"][ranks].append(
                train("digits.toml", work / f"d{ranks}", ranks))
            if zip_path.exists():
                out["omniglot"][ranks].append(train("omniglot.toml", work / f"o{ranks}", ranks,
                                                    *omni))
            print(ranks, rep, {k: round(v[ranks][-1]["images_per_s"]) for k, v in out.items()
                               if v[ranks]}, flush=True)
    for runs in out.values():
        for ranks in (1, 2):
            rates = [r["images_per_s"] for r in runs[ranks]]
            runs[f"median_{ranks}"] = statistics.median(rates) if rates else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["streaming", "distributed"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-minutes", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "siamese-bench"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "streaming" and not (Path(args.data_dir) / "omniglot").exists():
        print(f"skipped: {args.data_dir}/omniglot not found (set --data-dir or SIAMESE_DATA)")
        return
    result = {"machine": machine_info(), args.what: globals()[args.what](args, work)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}\n")
    r = result[args.what]
    if args.what == "streaming":
        print("| data | images/s (median) | ratio |\n|---|---|---|")
        names = {"memory": "in memory (0 workers)",
                 "none": f"files decoded per batch ({args.workers} workers)",
                 "disk": f"decoded once to a uint8 file ({args.workers} workers)"}
        for k, name in names.items():
            print(f"| {name} | {r['median'][k]:.0f} | {r['ratio_to_memory'][k]:.2f} |")
        return
    print("| recipe | processes | images/s (median) | unseen AUC | loss, last epoch |")
    print("|---|---|---|---|---|")
    for name, runs in r.items():
        for ranks in (1, 2):
            if runs[ranks]:
                last = runs[ranks][-1]
                auc = f"{last['unseen_auc']:.4f}" if last["unseen_auc"] is not None else "-"
                print(f"| {name} | {ranks} | {runs[f'median_{ranks}']:.0f} | {auc} | "
                      f"{last['losses'][-1]:.4f} |")


if __name__ == "__main__":
    main()
