"""Where a training step's time goes: the recipe's encoder, loss and miner on synthetic inputs of
the recipe's shape (images: the batch's random affine augmentation included; audio: random
crops of 12 s utterances and SpecAugment in the front end), forward + backward + AdamW, timed
and profiled with torch.profiler; beside it, the fp32 matmul rate of the same cores.

    .venv/bin/python benchmarks/diagnostics/step_profile.py --config configs/librispeech.toml \\
        --out results/profile_speaker.json
    .venv/bin/python benchmarks/diagnostics/step_profile.py --config configs/omniglot.toml \\
        --classes 964 --out results/profile_omniglot.json

Writes JSON (ms per batch, inputs/s, seconds of audio/s, the operators' shares) and prints a
markdown table. Needs no data set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # machine, recipe
from common.machine import describe, machine_info
from common.recipe import load_recipe

from siamese.config import config_from_dict, resolve
from siamese.data.audio import Waveforms, crop
from siamese.data.transforms import random_affine
from siamese.losses import create_loss
from siamese.losses.miners import create_miner
from siamese.models.build import build_net
from siamese.training.memory import heap_allocations
from siamese.training.task import MetricLearningTask


def recipe(path: str, overrides: list[str]):
    return resolve(config_from_dict(load_recipe(path, overrides), path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/librispeech.toml")
    ap.add_argument("--kind", choices=["auto", "image", "audio"], default="auto",
                    help="auto: audio when the recipe's data has a sample rate in use")
    ap.add_argument("--classes", type=int, default=251, help="training classes (arcface)")
    ap.add_argument("--steps", type=int, default=12, help="timed steps (after 3 warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/step_profile.json")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--mmap", action="store_true",
                    help="leave glibc's malloc as it is (large blocks mmap'd and freed each "
                         "step) instead of the trainer's heap_allocations()")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model as train.compile does (compiled in warm-up)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = recipe(args.config, args.set)
    kind = args.kind if args.kind != "auto" else (
        "audio" if cfg.model.encoder in ("ecapa", "audio_resnet") else "image")
    batch = cfg.train.batch_size
    gen = torch.Generator().manual_seed(0)
    if kind == "audio":
        n = int(cfg.data.sample_rate * cfg.data.crop_seconds)
        shape = [n]
        utterances = Waveforms.from_arrays(
            [np.random.default_rng(k).normal(0, 0.1, 12 * cfg.data.sample_rate)
             .astype(np.float32) for k in range(batch)])
        x = utterances

        def augment(x, gen, offset=0, total=None):
            return crop(x, n, gen, offset, total)
    else:
        c = cfg.data.channels or 1
        shape = [c, cfg.data.image_size, cfg.data.image_size]
        x = torch.rand(batch, *shape).contiguous(memory_format=torch.channels_last)

        def augment(x, gen, offset=0, total=None):
            return random_affine(x, cfg.augment, gen, offset, total) if cfg.augment.enabled \
                else x
    y = torch.arange(batch) // max(cfg.train.samples_per_class, 1)
    net = build_net(cfg, shape, kind)
    loss_fn = create_loss(cfg.loss.name, margin=cfg.loss.margin, distance=cfg.loss.distance,
                          head=net.head, scale=cfg.loss.scale, normalize=cfg.model.normalize,
                          classes=max(args.classes, int(y.max()) + 1), dim=net.dim,
                          subcenters=cfg.loss.subcenters)
    miner = create_miner(cfg.loss.miner, cfg.loss.margin, cfg.loss.distance)
    own = [p for p in loss_fn.parameters() if not any(p is q for q in net.parameters())]
    opt = torch.optim.AdamW([*net.parameters(), *own], lr=cfg.train.lr)
    task = MetricLearningTask(net, loss_fn, miner, augment)
    if args.compile:
        task.model = torch.compile(net)
    net.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        task.step((x, y), gen).backward()
        opt.step()

    from torch.profiler import ProfilerActivity, profile

    # as the trainer runs it (training/memory.py), unless --mmap asks for glibc's defaults
    with contextlib.nullcontext() if args.mmap else heap_allocations():
        for _ in range(3):
            step()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        ms = 1000 * statistics.median(times)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step()
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]
    result = {
        "machine": machine_info(), "config": args.config, "overrides": args.set, "kind": kind,
        "encoder": cfg.model.encoder, "loss": cfg.loss.name, "batch": batch,
        "compile": args.compile, "mmap": args.mmap,
        "ms_per_batch": ms, "inputs_per_second": batch / ms * 1000,
        "audio_seconds_per_second": (batch * cfg.data.crop_seconds / ms * 1000
                                     if kind == "audio" else None),
        "operators": [{"name": e.key, "share": e.self_cpu_time_total / total,
                       "ms_per_batch": e.self_cpu_time_total / 1000 / 3} for e in top],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    rate = (f", {result['audio_seconds_per_second']:.0f} s of audio/s" if kind == "audio"
            else "")
    print(f"{describe(result['machine'])}\n{cfg.model.encoder} + {cfg.loss.name}, batch {batch}: "
          f"{ms:.0f} ms a step (median of {args.steps}), {result['inputs_per_second']:.0f} "
          f"inputs/s{rate}\n")
    print("| operator (self time) | share | ms per batch |\n|---|---|---|")
    for o in result["operators"]:
        print(f"| {o['name']} | {100 * o['share']:.1f}% | {o['ms_per_batch']:.1f} |")


if __name__ == "__main__":
    main()
