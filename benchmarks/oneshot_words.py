"""Spoken words from one example, across speakers, on words never trained on: train
configs/words.toml (Speech Commands words other than the digits, training speakers 8-f) for a
wall-clock budget, then 10-way 1-shot on the digits:

- `speech_commands/oneshot_digits_episodes.tsv`: the fixed 1,000 episodes (test speakers 0-7);
- FSDD: 1,000 episodes over its 6 speakers (another corpus, 8 kHz): for every digit one support
  take by speaker a and one query take by speaker b != a (numpy default_rng(0)).

A query is right when its nearest support (cosine of the embeddings) is its digit. Baseline in
the same run, untrained: 13 MFCC with per-utterance mean and variance normalisation (CMVN),
silence trimmed, DTW nearest neighbour (cost over the path length). Pretrained peers in the
same run where installed (benchmarks/word_peers.py; `--no-peers` skips them): Google's speech
embedding (openwakeword 0.4.0's ONNX files, DTW over its frames) and EfficientWord-Net 1.0.5.

    .venv/bin/python benchmarks/oneshot_words.py --budget-minutes 10 --seeds 3 \\
        --out results/oneshot_words.json [--data-dir ../shared/data] [--set SECTION.KEY=VALUE]

Writes JSON and prints a markdown table (95% CI over episodes). Skips (exit 0) when the data
is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from common.machine import describe, machine_info
from common.recipe import load_recipe
from spoken_digits import accuracy, episodes, files_by

import siamese
from siamese.data.audio import Waveforms, read_audio

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def sc_episodes(root: Path) -> list[tuple[list[Path], list[Path]]]:
    """The episode list: (support, query) per episode, in the order of DIGITS."""
    eps: dict[int, dict[str, dict[str, Path]]] = {}
    for line in (root / "oneshot_digits_episodes.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        e, role, word, rel = line.split("\t")
        eps.setdefault(int(e), {"support": {}, "query": {}})[role][word] = root / rel
    return [([ep["support"][w] for w in DIGITS], [ep["query"][w] for w in DIGITS])
            for _, ep in sorted(eps.items())]


def fsdd_episodes(root: Path, n: int) -> list[tuple[list[Path], list[Path]]]:
    by = files_by(root)
    return list(episodes(by, sorted({s for _, s in by}), list(range(10)), n, 0))


def _unique(eps) -> list[Path]:
    return sorted({f for s, q in eps for f in (*s, *q)})


def score_embeddings(eps, emb: dict[Path, np.ndarray]) -> tuple[float, float]:
    correct = []
    for support, query in eps:
        s = np.stack([emb[f] for f in support])
        q = np.stack([emb[f] for f in query])
        correct += list((q @ s.T).argmax(1) == np.arange(len(query)))
    return accuracy(correct)


def embed_model(model, files: list[Path]) -> dict[Path, np.ndarray]:
    rate = model.card["config"]["data"]["sample_rate"]
    w = Waveforms.from_arrays([read_audio(str(f), str(f), rate) for f in files])
    return dict(zip(files, model.embed_tensor(w).numpy(), strict=True))


def mfcc_cmvn(x: np.ndarray, rate: int = 8000, trim: bool = True) -> np.ndarray:
    """13 MFCC every 10 ms, each mean- and variance-normalised over the recording (CMVN);
    trim: leading and trailing silence (30 dB under the peak) cut first."""
    import librosa

    if trim:
        y, _ = librosa.effects.trim(x, top_db=30)
        x = y if len(y) >= rate // 10 else x
    m = librosa.feature.mfcc(y=x, sr=rate, n_mfcc=13, n_fft=256, hop_length=rate // 100,
                             win_length=rate // 40, n_mels=32)
    return (m - m.mean(1, keepdims=True)) / (m.std(1, keepdims=True) + 1e-8)


def score_dtw(eps, feats: dict[Path, np.ndarray], metric: str = "euclidean"
              ) -> tuple[float, float]:
    """feats: (features, frames) a file."""
    import librosa

    cost: dict[tuple[Path, Path], float] = {}

    def d(a: Path, b: Path) -> float:
        if (a, b) not in cost:
            acc, path = librosa.sequence.dtw(feats[a], feats[b], metric=metric)
            cost[(a, b)] = float(acc[-1, -1] / len(path))
        return cost[(a, b)]

    correct = []
    for support, query in eps:
        for i, q in enumerate(query):
            correct.append(int(np.argmin([d(q, s) for s in support])) == i)
    return accuracy(correct)


PEERS = {"google": "Google's speech embedding (openwakeword 0.4.0), DTW over its frames",
         "effword": "EfficientWord-Net 1.0.5 (ResNet-50 ArcFace), cosine"}


def score_peers(tasks: dict) -> dict[str, dict]:
    """The pretrained peers that are installed, on every task."""
    import word_peers

    out: dict[str, dict] = {}
    for key, ok in (("google", word_peers.google_available()),
                    ("effword", word_peers.effword_available())):
        if not ok:
            print(f"peer {key} skipped: not installed (see benchmarks/word_peers.py)")
            continue
        out[key] = {}
        for name, eps in tasks.items():
            if key == "google":
                frames = word_peers.google_frames(_unique(eps))
                out[key][name] = score_dtw(eps, {f: v.T for f, v in frames.items()}, "cosine")
            else:
                out[key][name] = score_embeddings(eps, word_peers.effword_vectors(_unique(eps)))
            print(f"{PEERS[key]} {name}: {100 * out[key][name][0]:.1f}%", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-minutes", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--fsdd-episodes", type=int, default=1000)
    ap.add_argument("--config", default="configs/words.toml")
    ap.add_argument("--out", default="results/oneshot_words.json")
    ap.add_argument("--runs", default="runs/words", help="run folders: <runs>_seed<k>")
    ap.add_argument("--reuse", action="store_true",
                    help="evaluate the runs already in <runs>_seed<k> instead of training")
    ap.add_argument("--no-baseline", action="store_true", help="skip MFCC + DTW")
    ap.add_argument("--no-peers", action="store_true",
                    help="skip the pretrained peers (benchmarks/word_peers.py; skipped anyway "
                         "where not installed)")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change the recipe (e.g. model.width=64)")
    args = ap.parse_args()
    sc, fsdd = Path(args.data_dir) / "speech_commands", Path(args.data_dir) / "fsdd/recordings"
    if not (sc / "oneshot_digits_episodes.tsv").is_file() or not fsdd.is_dir():
        print(f"skipped: {sc} or {fsdd} not found (set --data-dir or SIAMESE_DATA)")
        return
    cfg = load_recipe(args.config, [f"data.path={json.dumps(str(sc / 'test'))}",
                                    f"train.max_minutes={args.budget_minutes}", *args.set])
    tasks = {"speech_commands": sc_episodes(sc), "fsdd": fsdd_episodes(fsdd, args.fsdd_episodes)}
    result = {"machine": machine_info(), "budget_minutes": args.budget_minutes, "recipe": cfg,
              "episodes": {k: len(v) for k, v in tasks.items()}, "baseline": {}, "seeds": []}
    if not args.no_baseline:
        for name, eps in tasks.items():
            feats = {f: mfcc_cmvn(read_audio(str(f), str(f), 8000)) for f in _unique(eps)}
            result["baseline"][name] = score_dtw(eps, feats)
            print(f"MFCC+DTW (CMVN) {name}: {100 * result['baseline'][name][0]:.1f}%", flush=True)
    result["peers"] = {} if args.no_peers else score_peers(tasks)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        cfg["train"]["seed"] = seed
        run = f"{args.runs}_seed{seed}"
        t0 = time.time()
        model = siamese.load(run) if args.reuse else siamese.train(cfg, run, force=True)
        row = {"seed": seed, "seconds": None if args.reuse else round(time.time() - t0, 1),
               "epochs": len(model.card["history"])}
        for name, eps in tasks.items():
            row[name] = score_embeddings(eps, embed_model(model, _unique(eps)))
        result["seeds"].append(row)
        print(f"seed {seed}: " + ", ".join(f"{k} {100 * row[k][0]:.1f}%" for k in tasks),
              flush=True)
    result["mean"] = ({k: statistics.mean(r[k][0] for r in result["seeds"]) for k in tasks}
                      if result["seeds"] else {})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{describe(result['machine'])}; {args.budget_minutes:g}-minute budget\n")
    print("| system | Speech Commands digits, 10-way 1-shot | FSDD digits, 10-way 1-shot |\n"
          "|---|---|---|")
    for name, accs in (("MFCC + DTW, CMVN (untrained)", result["baseline"]),
                       *((PEERS[k], v) for k, v in result["peers"].items()),
                       *((f"ours, seed {r['seed']} ({r['epochs']} epochs)", r)
                         for r in result["seeds"])):
        if accs:
            print(f"| {name} | " + " | ".join(f"{100 * accs[k][0]:.1f}% +- {100 * accs[k][1]:.1f}"
                                            for k in tasks) + " |")
    if not result["mean"]:
        return
    print("| **ours, mean** | " + " | ".join(f"**{100 * result['mean'][k]:.1f}%**"
                                          for k in tasks) + " |")


if __name__ == "__main__":
    main()
