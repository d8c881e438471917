"""Which machine a figure was measured on: CPU model, cores, instruction sets, the kernels torch
uses, and the measured fp32 matmul rate. Every benchmark records `machine_info()` in its JSON.

    .venv/bin/python benchmarks/common/machine.py     # prints it
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import torch

ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def _cpu_model_and_flags() -> tuple[str, set[str]]:
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def matmul_gflops(n: int = 1024, repeats: int = 7) -> float:
    """Median fp32 GFLOP/s of an n x n matmul with torch's current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return round(2 * n**3 / statistics.median(times) / 1e9, 1)


def machine_info() -> dict:
    model, flags = _cpu_model_and_flags()
    isa = sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile",
                                           "avx_vnni", "avx512_vnni"))
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "isa": isa,
        "torch_kernels": torch.backends.cpu.get_cpu_capability(),
        "isa_env": {k: os.environ[k] for k in ISA_ENV if k in os.environ},
        "matmul_gflops": matmul_gflops(),
        "torch": torch.__version__,
    }


def describe(info: dict) -> str:
    """One line for a table caption."""
    env = " ".join(f"{k}={v}" for k, v in info["isa_env"].items())
    return (f"{info['cpu']}, {info['cores']} cores, kernels {info['torch_kernels']}"
            f"{' (' + env + ')' if env else ''}, fp32 matmul {info['matmul_gflops']} GFLOP/s")


if __name__ == "__main__":
    info = machine_info()
    print(json.dumps(info, indent=2))
    print(describe(info))
