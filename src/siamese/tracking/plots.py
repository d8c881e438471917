"""The OTB success and precision plots: ours beside the other trackers, each curve labelled
with its score (success: area under the curve; precision: at 20 px), best first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..evaluation.otb import PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS
from ..evaluation.plots import _save, plt


def plot_otb(curves: dict[str, dict], out: Path, what: str) -> None:
    """curves: tracker -> mean scores (success, precision curves and their scores); writes
    out/success.png and out/precision.png."""
    for kind, xs, key, xlabel, title in [
        ("success", SUCCESS_THRESHOLDS, "success_auc", "overlap threshold (IoU)",
         "Success plot of OPE"),
        ("precision", PRECISION_THRESHOLDS, "precision_20", "location error threshold (px)",
         "Precision plot of OPE")]:
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        for name, m in sorted(curves.items(), key=lambda kv: -kv[1][key]):
            ours = name == "ours" or name.startswith("ours")
            ax.plot(xs, np.asarray(m[kind]), lw=2.4 if ours else 1.2,
                    color="#b42318" if ours else None, ls="-" if ours else "--",
                    label=f"{name} [{m[key]:.3f}]")
        ax.set(xlabel=xlabel, ylabel=f"{kind} rate", title=f"{title} ({what})",
               ylim=(0, 1.02), xlim=(xs[0], xs[-1]))
        ax.legend(loc="lower left" if kind == "success" else "lower right", fontsize=7)
        ax.grid(alpha=0.3)
        _save(fig, out / f"{kind}.png")
