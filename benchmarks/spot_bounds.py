"""The time and memory that spotting takes at its limits (issue 43): `siamese spot` on a long
stream (4 hours by default), and `POST /spot` at the largest input the service accepts, with
`/health` polled meanwhile.

    .venv/bin/python benchmarks/spot_bounds.py --out results/spot_bounds.json \\
        [--run RUN] [--hours 4] [--work DIR]

RUN: a word model. By default one is trained here in ~10 s on synthetic voices with the words
recipe's network (configs/words_scratch.toml: ecapa, width 16, 256-d, 8 kHz): time and memory depend
on the network and its rate, not on what it learned.

- CLI: a 16-kHz WAV of the given hours (noise and tones, written in blocks to --work), searched
  with a 1-s example at the default hop (0.1 s); the peak PSS of the process and the seconds.
- Service: `siamese serve RUN` in its own process; a stream at the service's limit
  (`Limits.max_stream_seconds`, 300 s: a 16-kHz WAV under the 10-MB body limit) with a 1-s
  example (hop 0.1 s) and with a 5-s example (the longest an example may be: hop 0.5 s, a 10th
  of it); each request's seconds, the server's
  peak PSS (with its decoding workers, sampled every ~0.5 s), and /health's latency polled
  every 50 ms meanwhile.
Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile
from common.machine import describe, machine_info
from common.processes import peak_pss_mib, tree_pss_mib
from common.served import served

ROOT = Path(__file__).resolve().parents[1]


def write_stream(path: Path, seconds: float, rate: int, seed: int = 0) -> None:
    """Faint noise with a tone burst every few seconds, written a minute at a time."""
    rng = np.random.default_rng(seed)
    with soundfile.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        left = int(seconds * rate)
        while left:
            n = min(left, 60 * rate)
            x = rng.normal(0, 0.02, n)
            t = np.arange(n) / rate
            x += 0.2 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * t / 7) > 0.9)
            f.write(x)
            left -= n


def word_run(work: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import voices

    data, run = voices(work / "voices", rate=8000, speakers=4, clips=8), work / "run"
    subprocess.run([sys.executable, "-m", "siamese", "train", "--data", str(data),
                    "--encoder", "ecapa", "--width", "16", "--embedding-dim", "256",
                    "--sample-rate", "8000", "--crop-seconds", "1.0", "--epochs", "1",
                    "--batch-size", "16", "--out", str(run), "--force", "--quiet"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return run


def cli_spot(run: Path, example: Path, stream: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "siamese", "spot", str(run), "--example",
                             str(example), "--audio", str(stream), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL)
    peak = peak_pss_mib(proc, every=0.5)
    if proc.returncode:
        raise SystemExit(f"siamese spot failed on {stream}")
    result = json.loads(out.read_text())
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_pss_mib": round(peak, 1),
            "stream_seconds": result["stream_seconds"], "windows": result["windows"],
            "hop_seconds": result["hop_seconds"]}


def served_spot(url: str, server_pid: int, example: bytes, stream: bytes) -> dict:
    """One /spot request, with /health and the server's memory sampled while it runs."""
    latencies, peak, done = [], [0.0], threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get("/health").raise_for_status()
                latencies.append(time.perf_counter() - t)
                if len(latencies) % 10 == 1:  # reading smaps costs the server time too
                    peak[0] = max(peak[0], tree_pss_mib(server_pid))
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    t0 = time.perf_counter()
    try:
        r = httpx.post(f"{url}/spot", timeout=600, files=[
            ("examples", ("example.wav", example)), ("audio", ("stream.wav", stream))])
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        poller.join()
    r.raise_for_status()
    body = r.json()
    ms = np.array(latencies) * 1000
    return {"seconds": round(seconds, 2), "peak_pss_mib": round(peak[0], 1),
            "windows": body["windows"], "hop_seconds": body["hop_seconds"],
            "window_seconds": body["window_seconds"],
            "health_ms": {"median": round(float(np.median(ms)), 1),
                          "p99": round(float(np.percentile(ms, 99)), 1),
                          "max": round(float(ms.max()), 1), "polls": len(ms)}}


def server_pid(port: int) -> int:
    out = subprocess.run(["pgrep", "-f", f"siamese serve .* --port {port}"],
                         capture_output=True, text=True).stdout.split()
    return int(out[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a word model's run folder (default: one trained here)")
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--work", help="folder for the stream and the run (default: a temp one)")
    ap.add_argument("--out", default="results/spot_bounds.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        run = Path(args.run) if args.run else word_run(work)
        rng = np.random.default_rng(1)
        examples = {}
        for seconds in (1.0, 5.0):
            examples[seconds] = work / f"example_{seconds:g}s.wav"
            t = np.arange(int(16000 * seconds)) / 16000
            soundfile.write(examples[seconds], 0.2 * np.sin(2 * np.pi * 300 * t)
                            + rng.normal(0, 0.02, len(t)), 16000)
        long = work / "long.wav"
        write_stream(long, args.hours * 3600, 16000)
        print(f"CLI: {args.hours:g} h stream ({long.stat().st_size / 1e6:.0f} MB WAV)",
              flush=True)
        cli = cli_spot(run, examples[1.0], long, work / "found.json")
        long.unlink()
        from siamese.serve.app import Limits

        most = Limits().max_stream_seconds
        short = work / "limit.wav"
        write_stream(short, most, 16000)
        service = {}
        with served(str(run)) as url:
            pid = server_pid(int(url.rsplit(":", 1)[1]))
            for seconds, example in examples.items():
                print(f"service: {most:g}-s stream, {seconds:g}-s example", flush=True)
                service[f"{seconds:g}s_example"] = served_spot(
                    url, pid, example.read_bytes(), short.read_bytes())
    result = {"machine": machine_info(), "run": str(args.run or "trained here (ecapa w16, 8 kHz)"),
              "cli": {"hours": args.hours, **cli}, "service": {"stream_seconds": most, **service}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}\n")
    print("| case | seconds | peak PSS (MiB) | windows | /health median / max (ms) |")
    print("|---|---|---|---|---|")
    print(f"| CLI, {args.hours:g} h stream, 1-s example | {cli['seconds']} | "
          f"{cli['peak_pss_mib']} | {cli['windows']} | |")
    for k, v in service.items():
        print(f"| POST /spot, {most:g}-s stream, {k.replace('_', ' ')} | {v['seconds']} | "
              f"{v['peak_pss_mib']} | {v['windows']} | {v['health_ms']['median']} / "
              f"{v['health_ms']['max']} |")


if __name__ == "__main__":
    main()
