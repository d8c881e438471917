"""Merge omniglot_oneshot.py result files into one markdown table.

    .venv/bin/python benchmarks/omniglot_table.py results/omniglot_*.json

Runs of the same setting, budget and resolved config (seed aside) are pooled, so seeds run as
separate processes (--first-seed) land in one row: mean over the pooled seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def rows(paths: list[Path]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        if data.get("benchmark") != "omniglot_oneshot":
            continue
        for run in data["runs"]:
            threads = run.get("threads") or run["config"]["train"].get("threads") or "default"
            config = {**run["config"], "train": {**run["config"]["train"], "seed": None}}
            key = (data["setting"], data["budget_minutes"],
                   json.dumps(data.get("overrides", {}), sort_keys=True), threads,
                   json.dumps(config, sort_keys=True))
            groups.setdefault(key, []).append(run)
    return groups


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    print("| setting | budget | overrides | threads | seeds | mean accuracy | per seed "
          "| images/s (median) | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (setting, budget, overrides, threads, _), runs in sorted(rows(args.files).items()):
        runs = sorted(runs, key=lambda r: r["seed"])
        accs = [100 * r["accuracy"] for r in runs]
        print(f"| {setting} | {budget:g} min | {overrides if overrides != '{}' else '-'} "
              f"| {threads} | {', '.join(str(r['seed']) for r in runs)} "
              f"| **{statistics.mean(accs):.2f}%** | {', '.join(f'{a:.2f}' for a in accs)} "
              f"| {statistics.median(r['images_per_second'] for r in runs):,.0f} "
              f"| {max(r['peak_rss_mib'] for r in runs) / 1024:.1f} GiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
