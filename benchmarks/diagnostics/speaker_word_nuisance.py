"""Is the word in a speaker embedding a direction one can project away? (issue 31, FSDD)

Nuisance attribute projection (NAP): the embeddings' residuals from each speaker's mean,
averaged by word, span the directions along which the word moves an embedding; remove the
top k of them (e = e - U U^T e, cosine scoring) and score the verification lists again.

- "learned": the word directions from the Speech Commands training speakers' clips (ids
  8-f, 35 words: the speaker recipe's own training clips; nothing from the test lists);
- "oracle": the digit directions from FSDD's own speakers and digits (the test list itself:
  the most any linear projection of the word could give there).

    .venv/bin/python benchmarks/diagnostics/speaker_word_nuisance.py runs/speakers_seed0 \\
        --out results/speaker_word_nuisance.json

Prints EER per list and k; writes JSON. Also, on FSDD, the 40 log-mel statistics of the
benchmark's baseline split into their parts (mean over time = the long-term spectrum, which
a per-utterance mean removal discards; std over time), each standardised on the trials.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from speaker_verification import metrics, scores_of, stats_vectors, trial_sets  # noqa: E402

import siamese  # noqa: E402
from siamese.data.audio import load_waveforms  # noqa: E402
from siamese.data.datasets import load_audio_tree  # noqa: E402


def unit(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def word_directions(emb: np.ndarray, speaker: np.ndarray, word: np.ndarray) -> np.ndarray:
    """Columns: the directions of the words' mean residuals from their speakers' means,
    largest variance first."""
    r = unit(emb).copy()
    for s in np.unique(speaker):
        r[speaker == s] -= r[speaker == s].mean(0)
    words = np.unique(word)
    means = np.stack([r[word == w].mean(0) for w in words])
    counts = np.array([(word == w).sum() for w in words], dtype=float)
    scatter = (means * counts[:, None]).T @ means / counts.sum()
    vals, vecs = np.linalg.eigh(scatter)
    return vecs[:, np.argsort(vals)[::-1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--ks", default="0,2,5,10,20,30")
    ap.add_argument("--out", default="results/speaker_word_nuisance.json")
    args = ap.parse_args()
    data = Path(args.data_dir)
    model = siamese.load(args.run)
    rate = model.card["config"]["data"]["sample_rate"]
    sc = data / "speech_commands" / "test"
    files = sorted(str(p) for p in sc.glob("*/*.flac") if re.match(r"[89a-f]", p.name))
    word = np.array([Path(f).parent.name for f in files])
    speaker = np.array([Path(f).name.split("_")[0] for f in files])
    learned = word_directions(model.embed_tensor(load_waveforms(files, files, rate)).numpy(),
                              speaker, word)
    trials = trial_sets(data, rate)
    result: dict = {"run": args.run, "learned": {}, "oracle": {}}
    for name, (x, i, j, y) in trials.items():
        emb = unit(model.embed_tensor(x).numpy())
        bases = {"learned": learned}
        if name.startswith("FSDD"):  # the digits of its recordings, from the file names
            d = load_audio_tree(data / "fsdd" / "recordings", rate,
                                label_pattern=r"^\d_([a-z]+)_")  # as trial_sets reads it
            digit = np.array([int(Path(s).name[0]) for s in d.sources])
            spk = np.asarray(d.y)
            bases["oracle"] = word_directions(emb, spk, digit)
        for kind, u in bases.items():
            for k in (int(v) for v in args.ks.split(",")):
                if k > u.shape[1]:
                    continue
                e = emb - (emb @ u[:, :k]) @ u[:, :k].T
                eer = metrics(y, scores_of(e, i, j))["eer"]
                result[kind].setdefault(name, {})[k] = eer
                print(f"{kind:8s} k={k:2d} {name}: EER {100 * eer:.2f}%", flush=True)
    x, i, j, y = next(v for k, v in trials.items() if k.startswith("FSDD"))
    both = stats_vectors(x, rate, "logmel")  # 40 means, then 40 stds, as the baseline
    result["fsdd_log_mel_parts"] = {}
    for kind, v in (("mean", both[:, :40]), ("std", both[:, 40:]), ("mean+std", both)):
        v = (v - v.mean(0)) / (v.std(0) + 1e-8)
        eer = metrics(y, scores_of(v, i, j))["eer"]
        result["fsdd_log_mel_parts"][kind] = eer
        print(f"FSDD, 40 log-mel {kind} over time, standardised: EER {100 * eer:.2f}%")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
