"""ONNX Runtime vs PyTorch: embedding throughput of a run's encoder at batch 1 and 64, on the CPU.

    make demo
    .venv/bin/python benchmarks/onnx_runtime.py --run runs/demo --out results/onnx_runtime.json

Exports the run (siamese export) if it has no model.onnx, then times the two runtimes in
alternating rounds on the same random inputs (medians over rounds; both at their default thread
counts), and checks parity. Goal from the scale-out issue: ONNX Runtime >= 1.5x PyTorch at
batch 1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common.machine import describe, machine_info

import siamese
from siamese.atomic import atomic_write_json
from siamese.runtime.export import export_onnx


def per_image_ms(fn, x: torch.Tensor, calls: int) -> float:
    fn(x)  # warm up
    t = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return 1000 * (time.perf_counter() - t) / (calls * len(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="results/onnx_runtime.json")
    args = ap.parse_args()
    if not Path(args.run, "model.onnx").exists():
        export_onnx(siamese.load(args.run))
    ref = siamese.load(args.run)
    ort = siamese.load(args.run, runtime="onnxruntime")
    torch_embed = torch.no_grad()(ref.net.eval().embed)
    rows = []
    for batch, calls in ((1, 300), (64, 20)):
        x = torch.randn(batch, *ref.preprocessing.input_shape)
        diff = float((torch_embed(x) - ort._encode(x)).abs().max())
        times = {"torch": [], "onnxruntime": []}
        for _ in range(args.rounds):  # alternating, so both see the same machine load
            times["torch"].append(per_image_ms(torch_embed, x, calls))
            times["onnxruntime"].append(per_image_ms(ort._encode, x, calls))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"batch": batch, "torch_ms_per_image": med["torch"],
                     "onnxruntime_ms_per_image": med["onnxruntime"],
                     "speedup": med["torch"] / med["onnxruntime"], "max_abs_diff": diff})
        print(rows[-1], flush=True)
    info = machine_info()
    atomic_write_json(args.out, {"benchmark": "onnx_runtime", "run": args.run,
                                 "input_shape": ref.preprocessing.input_shape,
                                 "encoder": ref.card["config"]["model"]["encoder"],
                                 "rows": rows, "machine": info})
    print("\n| batch | PyTorch images/s | ONNX Runtime images/s | ORT / PyTorch | max abs diff |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {1000 / r['torch_ms_per_image']:.0f} | "
              f"{1000 / r['onnxruntime_ms_per_image']:.0f} | {r['speedup']:.2f}x | "
              f"{r['max_abs_diff']:.1e} |")
    goal = rows[0]["speedup"] >= 1.5
    print(f"\ngoal ORT >= 1.5x at batch 1: {'met' if goal else 'NOT met'}; measured on "
          f"{describe(info)}; JSON in {args.out}")


if __name__ == "__main__":
    np.random.seed(0)
    torch.manual_seed(0)
    main()
