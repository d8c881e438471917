"""Batches through `torch.utils.data`: the P x K batches of an epoch, each rank's share of them,
read (and, for files, decoded) by DataLoader worker processes.

The batches are drawn in the main process by the `ClassBalancedSampler` (a pure function of the
seed and the epoch), so they are the same whatever holds the samples (a tensor in memory or
`ImageFiles` on disk), however many workers read them and however many ranks share them: rank r
of W takes rows r*B/W .. (r+1)*B/W of every global batch of B.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, get_worker_info

from .sampling import ClassBalancedSampler


class IndexedSamples(Dataset):
    """Samples `x` (a tensor or `ImageFiles`) with labels `y`; a batch is read in one call."""

    def __init__(self, x, y: np.ndarray) -> None:
        self.x, self.y = x, torch.as_tensor(np.asarray(y))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]

    def __getitems__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(index, dtype=torch.int64)
        xb = self.x[idx]
        if hasattr(xb, "compact") and get_worker_info() is not None:
            xb = xb.compact()  # audio views: a worker sends only the batch's samples
        return xb, self.y[idx]


class PairSamples(Dataset):
    """Pairs (a[i], b[i]) of rows of `x` (a tensor or `ImageFiles`) with a target each (1/0
    same/different, a graded score): a batch is (x[a], x[b], target), read in one call."""

    def __init__(self, x, a: np.ndarray, b: np.ndarray, target: np.ndarray) -> None:
        self.x = x
        self.a, self.b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
        self.target = torch.as_tensor(np.asarray(target, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int):
        return self.x[int(self.a[i])], self.x[int(self.b[i])], self.target[i]

    def __getitems__(self, index: list[int]):
        idx = torch.as_tensor(index, dtype=torch.int64)
        return self.x[self.a[idx]], self.x[self.b[idx]], self.target[idx]


def _own_generator() -> torch.Generator:
    """Workers' seeds from their own generator: starting workers must not draw from torch's
    global one (that would change the model's initial weights with the worker count)."""
    return torch.Generator().manual_seed(0)


def _worker_init(_worker_id: int) -> None:
    """Workers run at nice 10: on a machine whose cores the training threads fill, a worker
    then decodes in the moments a core is idle instead of preempting a training thread (every
    thread of a parallel op would wait for the preempted one). And without Python's cyclic
    garbage collector: a forked worker that ran it would walk, and so copy, every object it
    inherited (the file list of 200,000 images among them); reference counting still frees
    what a worker makes."""
    gc.disable()
    try:
        os.nice(10)
    except OSError:  # not permitted: run at normal priority
        pass


def _whole(batch):
    """collate_fn: `__getitems__` already returns the batch as tensors."""
    return batch


class RankBatches(Sampler[list[int]]):
    """This rank's share of every P x K batch of an epoch (`set_epoch` before iterating)."""

    def __init__(self, sampler: ClassBalancedSampler, rank: int = 0, world: int = 1) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world
        self.global_batch = sampler.p * sampler.k
        if self.global_batch % world:
            raise ValueError(f"a batch of {self.global_batch} does not divide among {world}")
        self.local = self.global_batch // world
        self.epoch, self.batches = -1, []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches = self.sampler.epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        lo = self.rank * self.local
        for b in self.batches:
            yield b[lo:lo + self.local].tolist()


class ShuffledBatches(Sampler[list[int]]):
    """Batches of `batch` of n items (pairs, rows) in a seeded random order per epoch, every
    item once (the last batch topped up from the epoch's start), this rank's share of each."""

    def __init__(self, n: int, batch: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.global_batch = min(batch, n) // world * world
        if self.global_batch < world:
            raise ValueError(f"{n} items do not make a batch for {world} ranks")
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.local = self.global_batch // world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.global_batch)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        order = np.concatenate([order, order[:len(self) * self.global_batch - self.n]])
        lo = self.rank * self.local
        for b in order.reshape(len(self), self.global_batch):
            yield b[lo:lo + self.local].tolist()


def make_loader(samples: Dataset, batches: Sampler, workers: int,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader over the batches of `samples` (`IndexedSamples`, `PairSamples`); workers >
    0 read them in that many processes (kept alive across epochs, a few batches ahead)."""
    return DataLoader(samples, batch_sampler=batches, num_workers=workers,
                      collate_fn=_whole, pin_memory=pin_memory,
                      persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None, generator=_own_generator(),
                      worker_init_fn=_worker_init if workers > 0 else None)


def stop_workers(loader: DataLoader) -> None:
    """End a loader's worker processes now. After an error (a corrupt file met by a worker) the
    loader lives on in the traceback's frames, and its workers with it, until the garbage
    collector finds the cycle: in a long-lived process (the service, a notebook, a test run)
    that may be never. Persistent workers are ended the same way."""
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):  # torch's multi-process iterator
        it._shutdown_workers()
    loader._iterator = None


def read_chunks(x, index: np.ndarray, workers: int = 0,
                size: int = 512) -> Iterator[torch.Tensor]:
    """x[index] in order, `size` rows at a time, read by `workers` processes."""
    if workers <= 0 or isinstance(x, torch.Tensor):
        for s in range(0, len(index), size):
            yield x[torch.from_numpy(np.asarray(index[s:s + size]))]
        return
    loader = DataLoader(IndexedSamples(x, np.zeros(len(x), np.int64)),
                        batch_sampler=BatchSampler(np.asarray(index).tolist(), size, False),
                        num_workers=workers,
                        collate_fn=_whole, generator=_own_generator(),
                        worker_init_fn=_worker_init)
    it = iter(loader)
    try:
        for xb, _ in it:
            yield xb
    finally:  # also when a worker's error or the caller's stops the reading half-way
        if hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


def default_workers() -> int:
    """Worker processes for data on disk: the CPUs this process may use, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))
