"""Micro-batching: concurrent requests' inputs go through the encoder in one forward pass.

One worker thread owns the model. Requests put their (n, *input) tensors on a queue; the worker
takes what has arrived (waiting at most `max_wait` seconds for more, up to `max_batch` inputs),
embeds it in one call and hands each request its rows. On 2 CPU cores a batch of 16 images costs
far less than 16 single-image calls, and torch is never called from many threads at once.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import torch


class Batcher:
    def __init__(self, embed, max_batch: int = 64, max_wait: float = 0.002) -> None:
        self.embed = embed  # (N, *input) tensor -> (N, D) tensor
        self.max_batch, self.max_wait = max_batch, max_wait
        self.queue: queue.Queue = queue.Queue()
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="siamese-batcher")
        self._thread.start()

    def submit(self, x: torch.Tensor) -> Future:
        fut: Future = Future()
        self.queue.put((x, fut))
        return fut

    def _run(self) -> None:
        while True:
            jobs = [self.queue.get()]
            n = len(jobs[0][0])
            while n < self.max_batch:
                try:
                    job = self.queue.get(timeout=self.max_wait)
                except queue.Empty:
                    break
                jobs.append(job)
                n += len(job[0])
            try:
                out = self.embed(torch.cat([x for x, _ in jobs]))
                self.batches += 1
                self.items += n
                start = 0
                for x, fut in jobs:
                    fut.set_result(out[start:start + len(x)])
                    start += len(x)
            except Exception as e:  # hand the error to every waiting request
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(e)
