"""Training on several processes (torch.distributed, gloo on the CPU, launched by torchrun).

The reference for 2 ranks x B/2 is 1 rank x B on the same global batch: the loss and every
parameter gradient must agree (every loss in the registry, its default miner, augmentation on).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import siamese
from siamese.config import config_from_dict, resolve
from siamese.data.datasets import load_dataset
from siamese.data.loader import (
    IndexedSamples,
    PairSamples,
    RankBatches,
    ShuffledBatches,
    make_loader,
)
from siamese.data.preprocessing import Preprocessing
from siamese.data.sampling import ClassBalancedSampler
from siamese.data.transforms import random_affine
from siamese.losses import LOSSES, create_loss, create_miner
from siamese.models.build import build_net
from siamese.training.distributed import Dist, finish
from siamese.training.task import MetricLearningTask, PairTask, TwinRegressionTask
from siamese.training.trainer import Trainer, batch_generator

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]  # a free port


def _loss_and_grads(loss_name: str, d: Dist) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss of the first global batch of epoch 0 and the gradients DDP leaves."""
    cfg = resolve(config_from_dict({"model": {"width": 8, "embedding_dim": 8},
                                    "loss": {"name": loss_name}, "data": {"image_size": 8}}))
    data = load_dataset("", 8)
    pre = Preprocessing.fit(data.x, "image")
    torch.manual_seed(0)
    net = build_net(cfg, pre.input_shape, "image")
    for m in net.modules():  # per-rank BN statistics differ from the global batch's (no
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):  # SyncBatchNorm on CPU)
            m.eval()
    loss_fn = create_loss(loss_name, margin=cfg.loss.margin, distance=cfg.loss.distance,
                          head=net.head, scale=cfg.loss.scale,
                          normalize=cfg.model.normalize, classes=len(data.classes), dim=net.dim)
    miner = create_miner(cfg.loss.miner, cfg.loss.margin, cfg.loss.distance)
    sampler = ClassBalancedSampler(data.y, 8, 4, seed=0)
    loader = make_loader(IndexedSamples(pre.normalize(data.x), data.y),
                         RankBatches(sampler, d.rank, d.world), 0)

    def augment(x, gen, offset=0, total=None):
        return random_affine(x, cfg.augment, gen, offset, total)

    task = MetricLearningTask(net, loss_fn, miner, augment, "cpu", d)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    Trainer(task, opt, loader, epochs=1, dist=d)  # wraps the model in DDP when d.enabled
    loss = task.step(next(iter(loader)), batch_generator(0, 0, 0))
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters()}


def _task_loss_and_grads(kind: str, d: Dist) -> tuple[float, dict[str, torch.Tensor]]:
    """The pair task (contrastive: its mean over the active pairs needs the global batch) and
    the twin-regression task (every ordered pair of the global batch), first batch of epoch 0."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g), torch.randn(40, generator=g)
    task_name = "regression" if kind == "twin" else "similarity"
    cfg = resolve(config_from_dict({"model": {"width": 4, "embedding_dim": 8},
                                    "train": {"task": task_name}}))
    net = build_net(cfg, [6], "vector", anchors=4 if kind == "twin" else 0)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    batches = ShuffledBatches(40, 16, seed=0, rank=d.rank, world=d.world)
    if kind == "twin":
        loader = make_loader(IndexedSamples(x, y), batches, 0)
        task = TwinRegressionTask(net, "cpu", d)
    else:
        samples = PairSamples(x, np.arange(40), np.arange(40)[::-1].copy(),
                              (y > 0).float().numpy())
        loader = make_loader(samples, batches, 0)
        loss_fn = create_loss("contrastive", margin=1.0, distance="euclidean")
        task = PairTask(net, loss_fn, None, "cpu", d)
    Trainer(task, torch.optim.SGD(net.parameters(), lr=0.0), loader, epochs=1, dist=d)
    loss = task.step(next(iter(loader)), batch_generator(0, 0, 0))
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters()
                                  if p.grad is not None}


TASKS = ("pairs", "twin")


def _rank(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    d = Dist(rank, world, 0, "gloo")
    results = {name: _loss_and_grads(name, d) for name in LOSSES.names()}
    results.update({kind: _task_loss_and_grads(kind, d) for kind in TASKS})
    if rank == 0:
        torch.save(results, out)
    finish(d)  # collects the DDP reducers while the group lives (else: abort at exit)


def test_two_ranks_give_the_loss_and_gradients_of_one_rank_on_the_global_batch(tmp_path):
    out = tmp_path / "ranks.pt"
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    two = torch.load(out)
    for name in [*LOSSES.names(), *TASKS]:
        loss1, grads1 = (_task_loss_and_grads if name in TASKS else _loss_and_grads)(name, Dist())
        loss2, grads2 = two[name]
        assert abs(loss1 - loss2) <= 1e-5 * max(1.0, abs(loss1)), name
        assert grads1.keys() == grads2.keys()
        for k in grads1:
            torch.testing.assert_close(grads2[k], grads1[k], atol=1e-5, rtol=1e-4,
                                       msg=f"{name}: {k}")
        assert any(g.abs().sum() > 0 for g in grads1.values()), name  # not trivially equal


def _torchrun(n: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*TORCHRUN, "--nproc-per-node", str(n), "-m", "siamese", "train",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_torchrun_on_two_processes_writes_a_run_that_loads_and_evaluates(tmp_path):
    r = _torchrun(2, ["--epochs", "2", "--image-size", "8", "--batch-size", "32",
                      "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 0, "\n".join(
        line for line in r.stderr.splitlines() if not line.startswith(("W", " ")))[-3000:]
    assert r.stdout.count("run saved to") == 1  # rank 0 reports, once
    model = siamese.load(tmp_path / "run")
    assert model.card["engine"]["ranks"] == 2
    assert len(model.card["history"]) == 2
    auc = model.card["metrics"]["unseen"]["verification"]["roc_auc"]
    assert auc > 0.6
    metrics = siamese.evaluate(model, out=tmp_path / "again")
    assert metrics["unseen"]["verification"]["roc_auc"] == pytest.approx(auc)


def test_a_batch_that_does_not_divide_among_the_ranks_is_refused_in_one_line(tmp_path):
    r = _torchrun(3, ["--epochs", "1", "--image-size", "8", "--batch-size", "32",
                      "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode != 0
    ours = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and "does not divide among 3 ranks" in ours[0]
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.skipif(shutil.which("pgrep") is None, reason="needs pgrep")
def test_a_rank_that_dies_stops_the_job_with_an_error_instead_of_a_hang(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    job = subprocess.Popen([*TORCHRUN, "--nproc-per-node", "2", "-m", "siamese", "train",
                            "--epochs", "500", "--image-size", "8", "--quiet", "--out",
                            str(out)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last.json").exists():
            assert time.monotonic() < deadline and job.poll() is None
            time.sleep(0.2)
        ranks = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True,
                               text=True).stdout.split()
        assert len(ranks) == 2
        killed = time.monotonic()
        os.kill(int(ranks[-1]), signal.SIGKILL)
        _, err = job.communicate(timeout=60)
        assert time.monotonic() - killed < 60
        assert job.returncode != 0
        assert "FAILED" in err
    finally:
        if job.poll() is None:
            job.kill()
    # the last completed epoch is kept whole: the run resumes on one process
    model = siamese.train(out=out, resume=True, epochs=1 + _epochs_done(out), quiet=True)
    assert model.card["status"] == "trained"


def _epochs_done(out: Path) -> int:
    import json

    return json.loads((out / "checkpoints" / "last.json").read_text())["epoch"]


def test_torchrun_with_a_disk_cache_trains_and_leaves_one_cache_file(tmp_path):
    from conftest import digit_folder

    data = digit_folder(tmp_path / "digits", per_class=8)
    r = _torchrun(2, ["--data", str(data), "--image-size", "8", "--epochs", "1",
                      "--batch-size", "16", "--cache", "disk", "--cache-dir",
                      str(tmp_path / "cache"), "--quiet", "--out", str(tmp_path / "run")],
                  tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 1
    assert not list((tmp_path / "cache").glob(".*.tmp"))
    assert siamese.load(tmp_path / "run").card["data"]["cache"] == "disk"
