"""Twin-network regression of a numeric label column (train.task = "regression").

Rows of a table (or scikit-learn's bundled diabetes data when no --data is given) are split
into train / validation / test rows by the seed (split.test_fraction, split.val_fraction).
Each batch of B training rows gives B x B ordered pairs whose target is the label difference
(`TwinRegressionTask`); the kept weights are those with the best validation R^2; the card
reports RMSE, MAE and R^2 on the test rows, which training never saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..artifact import read_card, write_card
from ..config import Config
from ..data.loader import IndexedSamples, ShuffledBatches, make_loader
from ..data.preprocessing import Preprocessing
from ..data.splits import row_split
from ..data.table import regression_table, table_fingerprint
from ..evaluation.plots import plot_history
from ..evaluation.regression import evaluate_regression, regression_metrics
from ..model import Model
from ..models.build import build_net
from ..models.views import check_views
from .distributed import Dist
from .run import fit_run, new_card, start_folder, start_run
from .task import TwinRegressionTask

MAX_ANCHORS = 2048  # training rows kept as anchors for prediction (drawn by the seed)


def train_regression(cfg: Config, out: Path, d: Dist, resume: bool, force: bool,
                     quiet: bool) -> Model:
    device, amp = start_run(cfg, d)
    x, y, name = regression_table(cfg.data.path, cfg.data.label_column)
    check_views(cfg.model.views, "vector")
    if cfg.model.encoder == "auto":
        cfg.model.encoder = "mlp"
    rows = row_split(len(y), cfg.split.val_fraction, cfg.split.test_fraction, cfg.train.seed)
    train, val, test = rows["train"], rows["val"], rows["test"]
    pre = Preprocessing.fit(x[torch.as_tensor(train)], "vector")
    y_mean, y_std = float(y[train].mean()), float(y[train].std()) or 1.0
    xn = pre.normalize(x)
    ys = torch.tensor((y - y_mean) / y_std, dtype=torch.float32)
    anchors = train
    if len(train) > MAX_ANCHORS:
        anchors = np.sort(np.random.default_rng([cfg.train.seed, 17]).choice(
            train, MAX_ANCHORS, replace=False))
    net = build_net(cfg, pre.input_shape, "vector", anchors=len(anchors))
    net.set_anchors(xn[torch.as_tensor(anchors)], ys[torch.as_tensor(anchors)], y_mean, y_std)
    net = net.to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr,
                                  weight_decay=cfg.train.weight_decay)
    batches = ShuffledBatches(len(train), cfg.train.batch_size, cfg.train.seed, d.rank, d.world)

    start_folder(out, cfg, {"mode": "rows", "indices": {k: v.tolist() for k, v in rows.items()}},
                 d, resume, force)
    card = new_card(cfg, d, 0, amp, preprocessing=pre.to_dict(), classes=[],
                    data={"kind": "vector", "samples": len(y), "source": name,
                          "fingerprint": table_fingerprint(x, y)},
                    regression={"label_column": cfg.data.label_column if cfg.data.path
                                else "disease progression", "anchors": len(anchors),
                                "label_mean": y_mean, "label_std": y_std},
                    split={"mode": "rows", "train": len(train), "val": len(val),
                           "test": len(test)})
    model = Model(net, pre, card, out, device)

    def val_r2() -> float:
        pred, _ = net.predict(xn[torch.as_tensor(val)].to(device))
        return regression_metrics(y[val], pred.cpu().numpy())["r2"]

    loader = make_loader(IndexedSamples(xn[torch.as_tensor(train)], ys[torch.as_tensor(train)]),
                         batches, 0)
    fit_run(cfg, out, d, TwinRegressionTask(net, device, d), optimizer, loader, card,
            val_r2 if len(val) > 1 else None, "val_r2", resume, quiet, amp)
    if not d.main:
        return model
    for split_name, idx in (("val", val), ("test", test)):
        if len(idx) > 1:
            card["metrics"][split_name] = evaluate_regression(
                model, x[torch.as_tensor(idx)].numpy(), y[idx], split_name, out)[0]
    card["status"] = "trained"
    write_card(out, card)
    plot_history(card["history"], out / "training.png")
    model.card = read_card(out)
    return model
