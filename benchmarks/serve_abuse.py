"""/health latency while abusive clients load the service (the hardening issue's stall cases).

    .venv/bin/python benchmarks/serve_abuse.py --run runs/demo --out results/serve_abuse.json

Copies the run, gives it a gallery of N random items (HNSW, 40,000 by default), starts
`siamese serve` on a free loopback port and polls /health every 50 ms from its own thread while
each phase runs for S seconds:

  idle      nothing else (the baseline, same run)
  decode    10 clients, each posting an all-zero 5000 x 4999 RGBA PNG (97 KB, 25 Mpixel) to /embed
  delete    DELETE of gallery items one after another (HNSW: marked deleted, rebuilt off-thread)
  list      GET /gallery pages of 1,000 items, one client in a loop (--list-clients N)
  enroll    POST /gallery with 8 images per request (each one saves the whole gallery)

Target: /health p99 < 100 ms in every phase. Only 127.0.0.1 is contacted; every loop is bounded
by the phase's seconds.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from common.machine import describe, machine_info
from common.served import digit_png, served
from PIL import Image

from siamese.atomic import atomic_write_json

KEY = "bench-key"


def zero_png(w: int = 5000, h: int = 4999) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (w, h)).save(buf, "PNG", optimize=False)
    return buf.getvalue()


def make_gallery(run: Path, n: int) -> list[str]:
    import siamese
    from siamese.index.gallery import Gallery

    model = siamese.load(run)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, model.net.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    g = Gallery(model.net.dim, "ip", "hnsw", model.fingerprint)
    ids = g.add(x, [f"person{i % 5000}" for i in range(n)],
                [f"people/person{i % 5000}/{i}.jpg" for i in range(n)])
    g.build_index()
    g.save(run / "gallery.safetensors")
    return ids


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def run_phase(url: str, name: str, seconds: float, work) -> dict:
    """Poll /health while `work(client, deadline)` threads run; -> latency figures (ms)."""
    lat: list[float] = []
    stop = threading.Event()
    done = {"requests": 0, "errors": 0}

    def poll():
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                t = time.perf_counter()
                c.get("/health")
                lat.append(1000 * (time.perf_counter() - t))
                time.sleep(0.05)

    def worker(fn):
        with httpx.Client(base_url=url, timeout=120) as c:
            deadline = time.time() + seconds
            while time.time() < deadline:
                r = fn(c)
                done["requests"] += 1
                done["errors"] += r.status_code >= 500

    poller = threading.Thread(target=poll)
    poller.start()
    threads = [threading.Thread(target=worker, args=(fn,)) for fn in work]
    for t in threads:
        t.start()
    if not threads:
        time.sleep(seconds)
    for t in threads:
        t.join()
    stop.set()
    poller.join()
    r = {"phase": name, "health_polls": len(lat), "p50_ms": round(percentile(lat, 50), 1),
         "p99_ms": round(percentile(lat, 99), 1), "max_ms": round(max(lat), 1), **done}
    print(r, flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--gallery", type=int, default=40_000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--out", default="results/serve_abuse.json")
    ap.add_argument("--list-clients", type=int, default=1,
                    help="clients pulling gallery pages in a loop (more than 1 is a request "
                         "flood: a proxy's rate limit is the answer)")
    ap.add_argument("--phases", default="idle,decode,delete,list,enroll",
                    help="comma-separated subset of the phases to run")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    run = tmp / "run"
    shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("gallery*"))
    t0 = time.time()
    ids = make_gallery(run, args.gallery)
    print(f"gallery of {len(ids)} items built in {time.time() - t0:.1f} s", flush=True)
    bomb, small = zero_png(), digit_png(0)
    to_delete = iter(ids)
    key = {"X-API-Key": KEY}
    phases = [
        ("idle", []),
        ("decode", [lambda c: c.post("/embed", files={"files": ("z.png", bomb)})] * 10),
        ("delete", [lambda c: c.delete(f"/gallery/{next(to_delete)}", headers=key)]),
        ("list", [lambda c: c.get("/gallery?offset=20000&limit=1000")] * args.list_clients),
        ("enroll", [lambda c: c.post("/gallery", headers=key, data={"labels": "new"},
                                     files=[("files", (f"{i}.png", small)) for i in range(8)])]),
    ]
    try:
        with served(run, env={"SIAMESE_API_KEY": KEY}) as url:
            results = [run_phase(url, name, args.seconds, work) for name, work in phases
                       if name in args.phases.split(",")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"benchmark": "serve_abuse", "gallery": args.gallery, "seconds": args.seconds,
           "bomb_png_bytes": len(bomb), "machine": machine_info(), "phases": results}
    atomic_write_json(args.out, out)
    print("\n| phase | /health p50 | p99 | max | abusive requests | 5xx |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['phase']} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['max_ms']} ms | "
              f"{r['requests']} | {r['errors']} |")
    print(f"\ntarget: p99 < 100 ms in every phase; "
          f"{'met' if all(r['p99_ms'] < 100 for r in results) else 'NOT met'}; JSON in {args.out}")
    print(f"measured on {describe(out['machine'])}")


if __name__ == "__main__":
    main()
