"""Twin-network regression against, in the same run, a plain MLP of the same size,
scikit-learn's HistGradientBoostingRegressor and RidgeCV: 5-fold cross-validated RMSE on real
tabular regression sets that ship inside installed packages (no downloads).

    .venv/bin/python benchmarks/twin_regression.py --out results/twin_regression.json \\
        [--seeds 0,1,2] [--sets diabetes,linnerud]

The twin network is trained by `siamese train --task regression` on each training fold
(written as a CSV), with its defaults; the plain MLP is the same encoder ("mlp", the same
width) with a linear output, trained on the labels with the same optimizer, schedule, epochs,
batch size and the same validation rows for choosing the epoch. Both are scored on the held-out
fold, which neither saw. Writes JSON and prints a markdown table (mean +- standard deviation
of the RMSE over folds x seeds).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common.machine import describe, machine_info
from sklearn.datasets import load_diabetes, load_linnerud
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import siamese
from siamese.config import config_from_dict
from siamese.data.splits import row_split
from siamese.models.encoders import create_encoder

SETS = {
    "diabetes": lambda: load_diabetes(return_X_y=True),  # 442 x 10
    # 20 x 3 (exercises -> weight): tiny; reported for completeness, noisy by nature
    "linnerud": lambda: (load_linnerud().data, load_linnerud().target[:, 0]),
}


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"x{i}" for i in range(x.shape[1])] + ["y"])
        for row, label in zip(x, y, strict=True):
            w.writerow([repr(float(v)) for v in row] + [repr(float(label))])


OVERRIDES: dict = {}  # --set section.key=value: the recipe of both neural networks


def recipe() -> dict:
    cfg: dict = {}
    for dotted, value in OVERRIDES.items():
        section, key = dotted.split(".")
        cfg.setdefault(section, {})[key] = value
    return cfg


def twin(x, y, xt, seed: int, work: Path) -> np.ndarray:
    path = work / "train.csv"
    write_csv(path, x, y)
    cfg = recipe()
    cfg.setdefault("data", {}).update(path=str(path), label_column="y")
    cfg.setdefault("train", {}).update(task="regression", seed=seed)
    cfg.setdefault("split", {}).update(test_fraction=0.0)
    model = siamese.train(cfg, work / "run", force=True, quiet=True)
    return model.predict(xt)[0]


def plain_mlp(x, y, xt, seed: int) -> np.ndarray:
    """The twin's encoder and training recipe (siamese's defaults), regressing y directly."""
    cfg = config_from_dict(recipe())
    rows = row_split(len(y), cfg.split.val_fraction, 0.0, seed)
    tr, va = rows["train"], rows["val"]
    torch.manual_seed(seed)
    mean, std = x[tr].mean(0), x[tr].std(0, ddof=1) + 1e-6
    ym, ys = y[tr].mean(), y[tr].std() or 1.0

    def t(a):
        return torch.tensor(a, dtype=torch.float32)

    xtr, xva, xte = t((x[tr] - mean) / std), t((x[va] - mean) / std), t((xt - mean) / std)
    ytr = t((y[tr] - ym) / ys)
    enc = create_encoder("mlp", (x.shape[1],), cfg.model.width)
    net = torch.nn.Sequential(enc, torch.nn.Linear(enc.num_features, cfg.model.embedding_dim),
                              torch.nn.Linear(cfg.model.embedding_dim, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr,
                            weight_decay=cfg.train.weight_decay)
    batch = min(cfg.train.batch_size, len(tr))
    steps = math.ceil(len(tr) / batch)
    best, state = -np.inf, None
    for epoch in range(cfg.train.epochs):
        net.train()
        order = np.random.default_rng([seed, epoch]).permutation(len(tr))
        order = np.concatenate([order, order[:steps * batch - len(tr)]])
        for i, b in enumerate(order.reshape(steps, batch)):
            p = (epoch + i / steps) / cfg.train.epochs
            for g in opt.param_groups:
                g["lr"] = cfg.train.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p)))
            loss = (net(xtr[b]).squeeze(-1) - ytr[b]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            pred = net(xva).squeeze(-1).numpy() * ys + ym
        r2 = 1 - ((pred - y[va]) ** 2).sum() / ((y[va] - y[va].mean()) ** 2).sum()
        if r2 > best:
            best, state = r2, copy.deepcopy(net.state_dict())
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        return net(xte).squeeze(-1).numpy() * ys + ym


MODELS = {
    "twin network": None,  # needs the work folder: see main
    "plain MLP": lambda x, y, xt, seed: plain_mlp(x, y, xt, seed),
    "HistGradientBoosting": lambda x, y, xt, seed: HistGradientBoostingRegressor(
        random_state=seed).fit(x, y).predict(xt),
    "RidgeCV": lambda x, y, xt, seed: make_pipeline(
        StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))).fit(x, y).predict(xt),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/twin_regression.json")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change the recipe of both networks (e.g. train.epochs=60)")
    args = ap.parse_args()
    for item in args.set:
        key, _, value = item.partition("=")
        OVERRIDES[key] = json.loads(value)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.sets.split(","):
            x, y = SETS[name]()
            x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
            rmse: dict[str, list[float]] = {m: [] for m in MODELS}
            seconds: dict[str, float] = {m: 0.0 for m in MODELS}
            for seed in seeds:
                for tr, te in KFold(5, shuffle=True, random_state=seed).split(x):
                    for m, fit in MODELS.items():
                        t0 = time.perf_counter()
                        if fit is None:
                            pred = twin(x[tr], y[tr], x[te], seed, work)
                        else:
                            pred = fit(x[tr], y[tr], x[te], seed)
                        seconds[m] += time.perf_counter() - t0
                        rmse[m].append(float(np.sqrt(np.mean((pred - y[te]) ** 2))))
            results[name] = {
                "rows": len(y), "features": x.shape[1], "label_std": float(y.std()),
                "models": {m: {"rmse_mean": statistics.mean(v), "rmse_std": statistics.stdev(v),
                               "rmse_per_fold": v, "seconds": round(seconds[m], 2)}
                           for m, v in rmse.items()}}
            print(f"{name}: " + ", ".join(f"{m} {statistics.mean(v):.2f}"
                                          for m, v in rmse.items()), flush=True)
    out = {"machine": machine_info(), "seeds": seeds, "folds": 5, "recipe": OVERRIDES,
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\n{describe(out['machine'])}; 5-fold CV x seeds {args.seeds}\n")
    print("| data | rows x features | " + " | ".join(MODELS) + " | twin vs MLP | twin vs best "
          "other |\n|---" * 1 + "|---" * (len(MODELS) + 3) + "|")
    for name, r in results.items():
        m = {k: v["rmse_mean"] for k, v in r["models"].items()}
        cells = " | ".join(f"{v['rmse_mean']:.2f} +- {v['rmse_std']:.2f}"
                           for v in r["models"].values())
        best_other = min(v for k, v in m.items() if k != "twin network")
        print(f"| {name} | {r['rows']} x {r['features']} | {cells} | "
              f"{m['twin network'] / m['plain MLP']:.3f} | "
              f"{m['twin network'] / best_other:.3f} |")


if __name__ == "__main__":
    main()
