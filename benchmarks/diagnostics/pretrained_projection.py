"""Which projection to train on top of a frozen pretrained network (docs/pretrained.md): on
small_data.py's object draws, MobileNetV2's pooled features (computed once), the classes split
70/30 by the draw, each head trained with the project's triplet loss (semi-hard miner) on the
70% and scored on the 30% (ROC AUC over all pairs, 5-way 1-shot over 1000 episodes):

- untrained: the features, centred, compared by cosine;
- random64: a random Linear(1280, 64) (the from-scratch default), lr 1e-3;
- identity at lr 1e-3 / 3e-4 / 1e-4: Linear(1280, 1280) starting as the identity.

    .venv/bin/python benchmarks/diagnostics/pretrained_projection.py [--draws 0,1,2] \\
        [--data-dir ../shared/data]

Found (session 39, 3 draws, mean AUC / 1-shot): untrained 0.939 / 87.7%, random64 0.908 /
80.2%, identity 1e-3 0.931 / 85.0%, 3e-4 0.940 / 87.2%, 1e-4 0.942 / 87.9%. Hence
model.projection "auto" = identity on an imported network, trained at pretrained_lr x lr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from small_data import objects_draw  # noqa: E402

from siamese.losses import create_loss, create_miner  # noqa: E402


def features(data: Path, draw: int, work: Path) -> tuple[np.ndarray, np.ndarray]:
    from siamese.config import Config
    from siamese.data.datasets import load_dataset
    from siamese.pretrained import setup

    folder = work / f"draw{draw}"
    if not folder.exists():
        objects_draw(data, np.random.default_rng([draw, 7]), folder)
    cfg = Config()
    cfg.model.pretrained = "mobilenet_v2_imagenet"
    opened = setup.prepare(cfg, quiet=True)
    ds = load_dataset(str(folder), cfg.data.image_size, 3)
    return setup.Imported(opened, cfg, ds, "cpu", True).features.numpy(), ds.y


def split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    classes = np.unique(y)
    np.random.default_rng(seed).shuffle(classes)
    n = int(round(0.3 * len(classes)))
    return np.isin(y, classes[n:]), np.isin(y, classes[:n])


def score(e: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float]:
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = e @ e.T
    iu = np.triu_indices(len(y), 1)
    auc = roc_auc_score((y[:, None] == y[None])[iu], s[iu])
    r, classes, right = np.random.default_rng(seed), np.unique(y), 0
    for _ in range(1000):
        pick = r.choice(classes, 5, replace=False)
        pairs = [r.permutation(np.flatnonzero(y == c))[:2] for c in pick]
        sup, query = [p[0] for p in pairs], [p[1] for p in pairs]
        right += int((s[np.ix_(query, sup)].argmax(1) == np.arange(5)).sum())
    return float(auc), right / 5000


def train_head(f: np.ndarray, y: np.ndarray, kind: str, lr: float, epochs: int = 30):
    torch.manual_seed(0)
    d = f.shape[1]
    proj = torch.nn.Linear(d, 64 if kind == "random64" else d)
    if kind == "identity":
        torch.nn.init.eye_(proj.weight)
        torch.nn.init.zeros_(proj.bias)
    loss = create_loss("triplet", margin=0.2, distance="euclidean")
    miner = create_miner("semi-hard", 0.2, "euclidean")
    opt = torch.optim.AdamW(proj.parameters(), lr=lr, weight_decay=1e-4)
    mu = f.mean(0)
    x, classes = torch.tensor(f - mu), np.unique(y)
    yi = torch.tensor(np.searchsorted(classes, y))
    r = np.random.default_rng(0)
    steps = epochs * max(1, len(y) // 64)
    for t in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * t / steps)))
        idx = np.concatenate([r.choice(np.flatnonzero(yi.numpy() == c), 4)
                              for c in r.choice(len(classes), 16, replace=False)])
        e = F.normalize(proj(x[idx]), dim=1)
        miner.generator = torch.Generator().manual_seed(t)
        value = loss(e, yi[idx], miner(e, yi[idx], loss.tuple_kind))
        opt.zero_grad()
        value.backward()
        opt.step()
    return lambda g: proj(torch.tensor(g - mu)).detach().numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", default="0,1,2")
    ap.add_argument("--data-dir", default=os.environ.get(
        "SIAMESE_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/siamese-pretrained-projection")
    args = ap.parse_args()
    data = Path(args.data_dir)
    os.environ.setdefault("SIAMESE_PRETRAINED_PATH", str(data / "pretrained"))
    heads = [("random64", 1e-3), ("identity", 1e-3), ("identity", 3e-4), ("identity", 1e-4)]
    rows: dict[str, list] = {}
    for draw in map(int, args.draws.split(",")):
        f, y = features(data, draw, Path(args.work))
        tr, te = split(y, draw)
        out = {"untrained": score(f[te] - f[tr].mean(0), y[te], draw)}
        for kind, lr in heads:
            out[f"{kind} lr {lr:g}"] = score(train_head(f[tr], y[tr], kind, lr)(f[te]), y[te],
                                             draw)
        for k, v in out.items():
            rows.setdefault(k, []).append(v)
        print(draw, {k: (round(a, 4), round(b, 3)) for k, (a, b) in out.items()}, flush=True)
    for k, v in rows.items():
        print(f"{k:20s} AUC {np.mean([a for a, _ in v]):.4f}  1-shot "
              f"{100 * np.mean([b for _, b in v]):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
