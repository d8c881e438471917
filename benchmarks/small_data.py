"""Small class folders, as a newcomer brings them, trained with the CLI's defaults: which way
of validating (choosing the epoch, calibrating the threshold) serves them best.

    .venv/bin/python benchmarks/small_data.py --out results/small_data.json \\
        [--suites omniglot,objects,words] [--draws 10] [--schemes auto,classes,samples] \\
        [--data-dir ../shared/data] [--jobs 2] [--work /tmp/siamese-small-data]

Suites (each draw: a random folder of classes, then `siamese train --data FOLDER --seed D`
with nothing else but the scheme's --set):
- omniglot: 20-50 characters of one or two evaluation alphabets (images_evaluation.zip), 20
  drawings each (grey, 105 px);
- objects: 25-43 of track_train's sequences as object classes, 20 target crops each (RGB, the
  ground-truth box with 10% margin, cut from the curated frames);
- words: 20-35 of Speech Commands' words as audio classes, up to 20 one-second clips each.

Schemes (split.validation): auto (today's default: cross-fitting on few classes), classes
(class-disjoint validation: 15% of the training classes), samples (held-out images of every
training class, the old default), crossfit-last (cross-fitting, the schedule's last epoch).

Every run holds 30% of its classes out (the default split): the run's own `unseen` metrics
are of classes it never saw. Reported per run and as medians per suite and scheme: unseen ROC
AUC, 5-way 1-shot, accuracy at the calibrated threshold, the best accuracy on the same pairs
(the calibration gap is their difference), training seconds. Skips a suite whose data is
missing (exit 0 with a message where none is left).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common.machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
SCHEMES = {
    "auto": [],
    "classes": ["--set", "split.validation=classes"],
    "samples": ["--set", "split.validation=samples"],
    "crossfit-last": ["--set", "split.validation=crossfit", "--set", "train.keep=last"],
    # the CLI defaults from a network trained at scale (found by SIAMESE_PRETRAINED_PATH,
    # which --data-dir sets to its pretrained/ folder); its "untrained" row: the same frozen
    # network's pooled features compared by cosine, with nothing trained on top
    "mobilenet": ["--pretrained", "mobilenet_v2_imagenet"],
}
PER_CLASS = 20


def omniglot_draw(data: Path, rng: np.random.Generator, folder: Path) -> None:
    with zipfile.ZipFile(data / "omniglot" / "images_evaluation.zip") as z:
        by_char: dict[tuple[str, str], list[str]] = {}
        for name in z.namelist():
            parts = name.split("/")
            if name.endswith(".png") and len(parts) == 4:
                by_char.setdefault((parts[1], parts[2]), []).append(name)
        alphabets = sorted({a for a, _ in by_char})
        chosen: list[tuple[str, str]] = []
        for a in rng.permutation(alphabets):
            chosen += sorted(k for k in by_char if k[0] == a)
            if len(chosen) >= 20:
                break
        n = int(rng.integers(20, 51))
        if len(chosen) > n:
            chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), n, replace=False))]
        for a, c in chosen:
            out = folder / a / c
            out.mkdir(parents=True)
            for name in sorted(by_char[(a, c)])[:PER_CLASS]:
                (out / Path(name).name).write_bytes(z.read(name))


def objects_draw(data: Path, rng: np.random.Generator, folder: Path) -> None:
    from PIL import Image

    root = data / "track_train"
    seqs = sorted(p.parent.name for p in root.glob("*/groundtruth_rect.txt"))
    n = int(rng.integers(25, len(seqs) + 1))
    for seq in sorted(rng.choice(seqs, n, replace=False)):
        frames = sorted((root / seq / "img").glob("*.jpg"))
        boxes = np.loadtxt(root / seq / "groundtruth_rect.txt", delimiter=",", ndmin=2)
        keep = sorted(rng.choice(len(frames), min(PER_CLASS, len(frames)), replace=False))
        (folder / seq).mkdir(parents=True)
        for i in keep:
            x, y, w, h = boxes[i]
            m = 0.1 * max(w, h)
            im = Image.open(frames[i]).convert("RGB")
            crop = im.crop((int(x - m), int(y - m), int(x + w + m), int(y + h + m)))
            buf = io.BytesIO()
            crop.save(buf, "PNG")
            (folder / seq / f"{frames[i].stem}.png").write_bytes(buf.getvalue())


def words_draw(data: Path, rng: np.random.Generator, folder: Path) -> None:
    root = data / "speech_commands" / "test"
    words = sorted(p.name for p in root.iterdir() if p.is_dir())
    n = int(rng.integers(20, len(words) + 1))
    for word in sorted(rng.choice(words, n, replace=False)):
        clips = sorted((root / word).glob("*.flac"))
        keep = sorted(rng.choice(len(clips), min(PER_CLASS, len(clips)), replace=False))
        (folder / word).mkdir(parents=True)
        for i in keep:
            os.symlink(clips[i].resolve(), folder / word / clips[i].name)


SUITES = {"omniglot": (omniglot_draw, "omniglot/images_evaluation.zip"),
          "objects": (objects_draw, "track_train"),
          "words": (words_draw, "speech_commands/test")}


def run_one(folder: Path, out: Path, seed: int, scheme: str) -> dict:
    cmd = [sys.executable, "-m", "siamese", "train", "--data", str(folder), "--out", str(out),
           "--seed", str(seed), "--quiet", "--force"]
    cmd += SCHEMES[scheme]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    card = json.loads((out / "card.json").read_text())
    row = _row(card["metrics"]["unseen"], card)
    row["seconds"] = round(wall, 1)
    if card.get("pretrained"):
        row["untrained"] = _row(untrained_metrics(out), card)
    return row


def untrained_metrics(run: Path) -> dict:
    """The run's frozen network alone on the run's own unseen classes: its features (no
    projection) compared by cosine."""
    import torch

    import siamese

    model = siamese.load(run)
    net = model.net
    net.proj, net.dim = torch.nn.Identity(), net.encoder.num_features
    net.scorer, net.head, net.normalize = "cosine", None, True
    model.card["threshold"] = None
    return siamese.evaluate(model, out=run / "untrained")["unseen"]


def _row(u: dict, card: dict) -> dict:
    shots = u["few_shot"]
    five = shots.get("5-way 1-shot") or next(iter(shots.values()))
    ver = u["verification"]
    nan = float("nan")  # (the untrained rows have no threshold: no accuracy at one)
    accuracy, best = ver.get("accuracy", nan), ver.get("best_accuracy", nan)
    return {"unseen_auc": ver["roc_auc"], "oneshot": five["accuracy"],
            "oneshot_ways": five["n_way"], "accuracy": accuracy,
            "best_accuracy": best, "gap": best - accuracy,
            "validation": card["split"].get("validation"),
            "epoch_kept": (card.get("crossfit") or {}).get("epoch"),
            "train_classes": len(card["classes"]), "unseen_classes": u["classes"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/small_data.json")
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--schemes", default="auto,classes,samples")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--first-draw", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA",
                                                         ROOT.parent / "shared" / "data"))
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (1 thread each)")
    ap.add_argument("--work", default="/tmp/siamese-small-data")
    ap.add_argument("--from-log", help="no runs: the summary of the JSON lines an earlier "
                    "run printed (its log)")
    args = ap.parse_args()
    if args.from_log:
        rows = [json.loads(line) for line in Path(args.from_log).read_text().splitlines()
                if line.startswith("{")]
        suites = list(dict.fromkeys(r["suite"] for r in rows))
        return report(rows, suites, list(dict.fromkeys(r["scheme"] for r in rows)), args)
    data, work = Path(args.data_dir), Path(args.work)
    os.environ.setdefault("SIAMESE_PRETRAINED_PATH", str(data / "pretrained"))
    suites = [s for s in args.suites.split(",") if (data / SUITES[s][1]).exists()]
    if not suites:
        print(f"skipped: no suite's data under {data}")
        return 0
    schemes = args.schemes.split(",")
    jobs = []
    for suite in suites:
        for d in range(args.first_draw, args.first_draw + args.draws):
            folder = work / suite / f"draw{d}" / "data"
            if not folder.exists():
                shutil.rmtree(folder.parent, ignore_errors=True)
                SUITES[suite][0](data, np.random.default_rng([d, 7]), folder)
            jobs += [(suite, d, scheme, folder) for scheme in schemes]
    def go(job):
        suite, d, scheme, folder = job
        r = run_one(folder, folder.parent / scheme, d, scheme)
        r = {"suite": suite, "draw": d, "scheme": scheme, **r}
        print(json.dumps(r), flush=True)
        return r

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(go, jobs))
    return report(results, suites, schemes, args)


def report(results: list[dict], suites: list[str], schemes: list[str], args) -> int:
    summary = {}
    untrained = [{**r, **r["untrained"], "scheme": f"{r['scheme']}-untrained", "seconds": 0}
                 for r in results if "untrained" in r]
    results = results + untrained
    schemes = schemes + list(dict.fromkeys(r["scheme"] for r in untrained))
    lines = ["| suite | scheme | runs | unseen AUC | 1-shot | acc @ threshold | best acc | gap | "
             "seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for suite in suites:
        for scheme in schemes:
            rs = [r for r in results if r["suite"] == suite and r["scheme"] == scheme
                  and "error" not in r]
            if not rs:
                continue
            med = {k: statistics.median(r[k] for r in rs) for k in
                   ("unseen_auc", "oneshot", "accuracy", "best_accuracy", "gap", "seconds")}
            mean = {k: statistics.fmean(r[k] for r in rs) for k in
                    ("unseen_auc", "oneshot", "accuracy", "gap")}
            summary[f"{suite}/{scheme}"] = {"runs": len(rs), "median": med, "mean": mean}
            lines.append(f"| {suite} | {scheme} | {len(rs)} | {med['unseen_auc']:.4f} | "
                         f"{100 * med['oneshot']:.1f}% | {100 * med['accuracy']:.1f}% | "
                         f"{100 * med['best_accuracy']:.1f}% | {100 * med['gap']:.1f} | "
                         f"{med['seconds']:.0f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from siamese.atomic import atomic_write_json

    atomic_write_json(out, {"machine": machine_info(), "args": vars(args) | {
        "data_dir": str(args.data_dir)}, "summary": summary, "runs": results})
    out.with_suffix(".md").write_text(f"{describe(machine_info())}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
