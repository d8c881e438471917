"""Lake et al.'s original Omniglot one-shot task: 20 runs of 20-way, within-alphabet, one-shot
classification (`all_runs.zip` or its extracted folder).

Each run has 20 training images (one per character) and 20 test items; `class_labels.txt` gives
the right training image for every test item. Every image is embedded once; each test item is
answered by the most similar training image of its run.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import DataError


@dataclass
class OfficialRun:
    name: str
    training: list[str]  # 20 image names, class01..class20
    test: list[str]  # 20 image names, item01..item20
    answer: np.ndarray  # (20,) index into training for each test item


def load_official_runs(path: str | Path) -> tuple[list[OfficialRun], dict[str, bytes]]:
    """-> (runs, image bytes by name). Names look like 'run01/test/item01.png'."""
    path = Path(path)
    files: dict[str, bytes] = {}
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                files[p.relative_to(path).as_posix()] = p.read_bytes()
    elif path.is_file():
        try:
            with zipfile.ZipFile(path) as zf:
                for n in zf.namelist():
                    if not n.endswith("/"):
                        files[n] = zf.read(n)
        except zipfile.BadZipFile:
            raise DataError(f"cannot read {path}: not a zip; give all_runs.zip or its "
                            "extracted folder") from None
    else:
        raise DataError(f"{path} does not exist; give all_runs.zip or its extracted folder")
    # tolerate one extra top folder (all_runs/run01/...)
    labels = sorted(n for n in files if PurePosixPath(n).name == "class_labels.txt")
    if not labels:
        raise DataError(f"{path} has no runNN/class_labels.txt; is it Lake's all_runs.zip?")
    runs = []
    for lab in labels:
        run_dir = PurePosixPath(lab).parent
        prefix = str(run_dir.parent) + "/" if str(run_dir.parent) != "." else ""
        pairs = [line.split() for line in files[lab].decode().splitlines() if line.strip()]
        training = sorted({prefix + b for _, b in pairs})
        test = [prefix + a for a, _ in pairs]
        index = {t: i for i, t in enumerate(training)}
        answer = np.array([index[prefix + b] for _, b in pairs])
        missing = [n for n in training + test if n not in files]
        if missing:
            raise DataError(f"{path}: {missing[0]} is listed in {lab} but missing")
        runs.append(OfficialRun(run_dir.name, training, test, answer))
    return runs, files


def score_official_runs(model, path: str | Path, views: int | None = None) -> dict:
    """Accuracy per run and overall, and the items answered wrongly. views: the fixed
    distortions each embedding averages (Model.embed_tensor); None = the model's own
    (model.views), 0 = one pass, more = test-time augmentation."""
    runs, files = load_official_runs(path)
    names = sorted({n for r in runs for n in r.training + r.test})
    x = torch.cat([model.preprocessing.load_input(files[n]) for n in names])
    emb = model.embed_tensor(x, views=views)
    row = {n: i for i, n in enumerate(names)}
    per_run, wrong, trials = {}, [], []
    correct_total = 0
    for r in runs:
        q = emb[[row[n] for n in r.test]]
        s = emb[[row[n] for n in r.training]]
        with torch.no_grad():
            sim = model.net.score_matrix(q, s).numpy()
        pred = sim.argmax(1)
        ok = pred == r.answer
        per_run[r.name] = float(ok.mean())
        correct_total += int(ok.sum())
        for t in np.flatnonzero(~ok):
            wrong.append({"run": r.name, "item": r.test[t], "answered": r.training[pred[t]],
                          "right": r.training[r.answer[t]]})
        trials += [(r, t, int(pred[t]), sim[t]) for t in range(len(r.test))]
    n = sum(len(r.test) for r in runs)
    views = model.views if views is None else views
    return {"accuracy": correct_total / n, "trials": n, "views": views, "per_run": per_run,
            "wrong": wrong, "_trials": trials, "_files": files}


def evaluate_official_runs(model, runs_path: str | Path, out: Path | None = None,
                           views: int | None = None) -> dict:
    """Score the official runs; with `out`, write omniglot.json and omniglot_trials.png there."""
    import time

    from ..atomic import atomic_write_json

    t0 = time.perf_counter()
    result = score_official_runs(model, runs_path, views)
    result["seconds"] = time.perf_counter() - t0
    if out is not None:
        atomic_write_json(Path(out) / "omniglot.json",
                          {k: v for k, v in result.items() if not k.startswith("_")})
        plot_trials(result, Path(out) / "omniglot_trials.png")
    return {k: v for k, v in result.items() if not k.startswith("_")}


def plot_trials(result: dict, path: Path, n: int = 4) -> None:
    """Some trials, wrong ones first: the query, the 20 candidates, the answer and the truth."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from .plots import _save

    trials = sorted(result["_trials"], key=lambda t: t[2] == t[0].answer[t[1]])[:n]
    fig, axes = plt.subplots(len(trials), 21, figsize=(21 * 0.7, len(trials) * 0.9))
    axes = np.atleast_2d(axes)
    for row, (r, t, pred, _sim) in enumerate(trials):
        def show(ax, name, title="", color="black"):
            ax.imshow(Image.open(io.BytesIO(result["_files"][name])).convert("L"), cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(title, fontsize=6, color=color)
            for s in ax.spines.values():
                s.set_edgecolor(color)
                s.set_linewidth(2 if color != "black" else 0.5)
        show(axes[row, 0], r.test[t], f"{r.name} query")
        for c, name in enumerate(r.training):
            color = "green" if c == r.answer[t] else ("red" if c == pred else "black")
            label = "right" if c == r.answer[t] else ("answer" if c == pred else "")
            show(axes[row, c + 1], name, label, color)
    fig.suptitle("Omniglot one-shot trials: query | 20 candidates (green: right, red: wrong "
                 "answer)", fontsize=8)
    _save(fig, path)
