"""/verify under concurrent clients, with and without micro-batching of the encoder.

    .venv/bin/python benchmarks/serve_load.py --run runs/demo --clients 16 --seconds 30 \\
        --out results/serve_load.json

Starts `siamese serve` on a free loopback port (once with batching, once without), sends
/verify requests from N client threads for S seconds each, and reports requests/s, p50 and p99
latency and the errors. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from common.machine import machine_info
from common.served import digit_png, served

from siamese.atomic import atomic_write_json


def load(run: str, clients: int, seconds: float, batching: bool) -> dict:
    options = [] if batching else ["--no-batching"]
    with served(run, *options) as url:
        a, b = digit_png(0), digit_png(10)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds

        def client() -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                while time.perf_counter() < stop_at:
                    t = time.perf_counter()
                    try:
                        ok = c.post("/verify", files={"a": ("a.png", a),
                                                      "b": ("b.png", b)}).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        latencies.append(time.perf_counter() - t)
                        errors[0] += not ok

        threads = [threading.Thread(target=client) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    return {"batching": batching, "clients": clients, "seconds": round(wall, 1),
            "requests": len(latencies), "errors": errors[0],
            "requests_per_s": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * float(np.percentile(latencies, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--out", default="results/serve_load.json")
    args = ap.parse_args()
    if not Path(args.run, "card.json").exists():
        sys.exit(f"no run at {args.run}; train one first (make demo)")
    rows = [load(args.run, args.clients, args.seconds, b) for b in (True, False)]
    atomic_write_json(args.out, {"benchmark": "serve_load", "run": args.run, "results": rows,
                                 "machine": machine_info()})
    print("| /verify | clients | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'batched' if r['batching'] else 'one request per call'} | {r['clients']} | "
              f"{r['requests_per_s']:.1f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
              f"{r['errors']} / {r['requests']} |")
    print(f"\nJSON in {args.out}")


if __name__ == "__main__":
    main()
