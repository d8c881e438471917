"""Tracking speed of a trained run: frames per second of `TrackingModel.track` through PyTorch
and through ONNX Runtime (the run's exported branches, `siamese export RUN`), beside OpenCV's
NanoTrack v2 on the same frames, in the same process; each the median of --repeats passes
over one OTB target (decoding excluded: the frames are in memory, as for every tracker).

    .venv/bin/python benchmarks/tracking_speed.py runs/otb_nano --target Jogging-1 \\
        --out results/tracking_speed.json

Exports the run's branches first where they are missing or stale. Skips (exit 0) when the
sequences are missing. Set ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 to measure AVX2
kernels on a machine that has more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from common.machine import describe, machine_info
from otb_tracking import opencv_tracker

from siamese.data.otb import list_targets, read_frames
from siamese.errors import ArtifactError
from siamese.runtime.tracking import export_tracker
from siamese.tracking.model import TrackingModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a trained tracking run")
    ap.add_argument("--target", default="Jogging-1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--out", default="results/tracking_speed.json")
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    targets = [t for t in list_targets(data_dir / "otb") if t.name == args.target] \
        if (data_dir / "otb").is_dir() else []
    if not targets:
        print(f"skipped: target {args.target} not found under {data_dir / 'otb'}")
        return
    t = targets[0]
    frames = read_frames(t.frames)[:len(t.boxes)]
    model = TrackingModel.load(args.run)
    try:
        TrackingModel.load(args.run, runtime="onnxruntime")
    except ArtifactError:  # not exported, or from other weights
        export_tracker(model)
    runs = {"torch": lambda: model.track(frames, t.boxes[0]),
            "onnxruntime": lambda m=TrackingModel.load(args.run, runtime="onnxruntime"):
            m.track(frames, t.boxes[0])}
    if (data_dir / "peers" / "nanotrack_v2").is_dir():
        nano = opencv_tracker("NanoTrack v2", data_dir)
        runs["NanoTrack v2 (OpenCV)"] = lambda: nano(frames, t.boxes[0])
    fps: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):  # interleaved: a slow moment of the host hits all alike
        for name, run in runs.items():
            fps[name].append(run()[-1])
    result = {"machine": machine_info(), "run": args.run, "target": t.name,
              "frames": len(frames), "repeats": args.repeats,
              "fps": {k: {"median": statistics.median(v), "all": v} for k, v in fps.items()}}
    base = result["fps"]["torch"]["median"]
    print(f"{t.name}, {len(frames)} frames; {describe(result['machine'])}")
    for name, v in result["fps"].items():
        print(f"  {name}: {v['median']:.1f} frames/s ({v['median'] / base:.2f}x PyTorch's)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
