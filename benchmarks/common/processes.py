"""The memory of a process and everything it started (workers, servers), as the benchmarks
measure it: the proportional set size (PSS: shared pages counted once, so forked workers are not
double-counted), read from /proc (Linux)."""

from __future__ import annotations

import os
import subprocess
import time


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree_pss_mib(pid: int) -> float:
    """PSS of pid and all its descendants, MiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
        todo += _children(p)
    return total / 1024


def peak_pss_mib(proc: subprocess.Popen, every: float = 0.2) -> float:
    """Wait for `proc` to end, sampling its tree's PSS every `every` seconds -> the peak, MiB."""
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_pss_mib(proc.pid))
        time.sleep(every)
    return peak
