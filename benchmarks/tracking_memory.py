"""Peak memory of a tracking run as its training set grows: generated videos in the GOT-10k
layout (320 x 240 JPEG frames, a moving square), `siamese train --task tracking` on 50 and on
500 of them for the same number of pairs; the peak resident memory of the run's processes
(the trainer and its DataLoader workers, summed, polled every 0.2 s).

    .venv/bin/python benchmarks/tracking_memory.py --out results/tracking_memory.json \\
        [--videos 50,500] [--frames 40] [--pairs 1024] [--workers 2]

Decoded, 500 videos of 40 frames are 4.6 GB; streamed, the run holds at most each process's
frame cache (track_pairs.FRAME_CACHE_BYTES) whatever the set's size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common.machine import describe, machine_info


def make_videos(root: Path, n: int, frames: int) -> None:
    import cv2

    rng = np.random.default_rng(n)
    for v in range(n):
        folder = root / "train" / f"GOT-10k_Train_{v:06d}"
        if (folder / "groundtruth.txt").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        background = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        colour = rng.integers(0, 255, 3).tolist()
        x, y, rows = 100.0, 80.0, []
        for i in range(frames):
            x, y = np.clip(x + rng.normal(0, 4), 0, 280), np.clip(y + rng.normal(0, 4), 0, 200)
            img = background.copy()
            img[int(y):int(y) + 40, int(x):int(x) + 40] = colour
            cv2.imwrite(str(folder / f"{i + 1:08d}.jpg"), img)
            rows.append(f"{x:.1f},{y:.1f},40,40")
        (folder / "absence.label").write_text("0\n" * frames)
        (folder / "groundtruth.txt").write_text("\n".join(rows) + "\n")


def tree_rss(pid: int) -> int:
    """Resident bytes of pid and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(p)
        rss[p] = int(fields[21]) * 4096
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def run(root: Path, out: Path, pairs: int, workers: int) -> dict:
    cmd = [sys.executable, "-m", "siamese", "train", "--task", "tracking", "--data", str(root),
           "--out", str(out), "--force", "--quiet", "--epochs", "1", "--batch-size", "8",
           "--workers", str(workers), "--set", f"track.pairs_per_epoch={pairs}",
           "--set", "model.width=8"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while p.poll() is None:
        peak = max(peak, tree_rss(p.pid))
        time.sleep(0.2)
    if p.returncode:
        raise SystemExit(f"training failed: {p.stderr.read().strip().splitlines()[-1]}")
    return {"peak_rss_mb": round(peak / 2**20), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/tracking_memory.json")
    ap.add_argument("--videos", default="50,500")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--pairs", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/siamese-tracking-memory")
    args = ap.parse_args()
    rows = []
    for n in (int(v) for v in args.videos.split(",")):
        root = Path(args.work) / f"videos{n}"
        make_videos(root, n, args.frames)
        r = run(root, Path(args.work) / f"run{n}", args.pairs, args.workers)
        decoded = n * args.frames * 240 * 320 * 3 / 2**20
        rows.append({"videos": n, "frames": n * args.frames, "decoded_mb": round(decoded), **r})
        print(json.dumps(rows[-1]), flush=True)
    info = machine_info()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": info, "args": vars(args), "rows": rows},
                                         indent=2))
    print(f"\n{describe(info)}\n\n| videos | frames | decoded (MB) | peak RSS, all processes "
          "(MB) | seconds |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['videos']} | {r['frames']} | {r['decoded_mb']} | {r['peak_rss_mb']} | "
              f"{r['seconds']} |")


if __name__ == "__main__":
    main()
