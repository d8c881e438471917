"""Image and audio decoding for the service, in worker processes at a lower CPU priority.

A 25-megapixel PNG takes about a second of CPU and several 100 MB conversions to decode. On
threads, that work competes with the event loop for the GIL and the cores: ten such requests
made /health answer in 270 ms at the 99th percentile. In processes started with `nice` 10, the
event loop (and the encoder thread) always win the CPU; the workers only do what is left.

The workers are forked once, when the app is created, before the server starts any thread, and
never call torch (decoding is Pillow, soundfile, soxr and numpy): no fork-with-threads or
OpenMP hazards.

A worker ends with its server however the server ends: `close()` terminates the workers (a clean
stop: Ctrl-C, SIGTERM through uvicorn's shutdown), and each worker also watches its parent and
exits within PARENT_POLL seconds of its death (SIGKILL, a crash, an exit that skipped
`close()`), so no decoder is ever left re-parented to init.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import threading
import time
import weakref
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..data.audio import TooLong, audio_header, read_audio
from ..data.images import TooManyPixels, decode, image_format

PARENT_POLL = 0.25  # seconds between a worker's looks at whether its server still lives
_open_pools: weakref.WeakSet[DecodePool] = weakref.WeakSet()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(0)  # the server is gone (re-parented): nothing is left to decode for


def _start_worker(parent: int) -> None:
    os.nice(10)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="siamese-parent-watch").start()


def decode_request(blobs: list[tuple[str, bytes]], channels: int, size: int, max_pixels: int,
                   max_request_pixels: int) -> tuple[list[np.ndarray], list[str]]:
    """Check every header first (type, pixels per image and per request), then decode ->
    ((C, size, size) float32 arrays in [0, 1], detected formats). Raises DataError."""
    formats, total = [], 0
    for name, data in blobs:
        fmt, w, h = image_format(data, name, max_pixels)
        total += w * h
        formats.append(fmt)
    if total > max_request_pixels:
        raise TooManyPixels(f"the images hold {total} pixels together; the limit per request "
                            f"is {max_request_pixels}")
    return [decode(data, name, channels, size, max_pixels) for name, data in blobs], formats


def decode_audio_request(blobs: list[tuple[str, bytes]], rate: int, max_seconds: float,
                         max_request_seconds: float) -> tuple[list[np.ndarray], list[str]]:
    """Check every header first (type, seconds per file and per request), then decode ->
    ((samples,) float32 mono arrays at `rate`, detected formats). Raises DataError."""
    formats, total = [], 0.0
    for name, data in blobs:
        fmt, seconds = audio_header(data, name, max_seconds)
        total += seconds
        formats.append(fmt)
    if total > max_request_seconds:
        raise TooLong(f"the recordings last {total:.0f} s together; the limit per request is "
                      f"{max_request_seconds:.0f} s")
    arrays = [read_audio(data, name, rate, max_seconds) for name, data in blobs]
    total = sum(len(a) for a in arrays) / rate  # (headers that left their length out)
    if total > max_request_seconds:
        raise TooLong(f"the recordings last {total:.0f} s together; the limit per request is "
                      f"{max_request_seconds:.0f} s")
    return arrays, formats


class DecodePool:
    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"),
                                        initializer=_start_worker, initargs=(os.getpid(),))
        # With fork, every worker is started by the first submit: now, while this process has
        # no other thread.
        self.pool.submit(int).result()
        # The worker processes, to end them on close (the executor keeps no public list).
        self.processes = list(self.pool._processes.values())
        _open_pools.add(self)

    async def decode(self, *args) -> tuple[list[np.ndarray], list[str]]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, decode_request,
                                                                *args)

    async def decode_audio(self, *args) -> tuple[list[np.ndarray], list[str]]:
        return await asyncio.get_running_loop().run_in_executor(self.pool,
                                                                decode_audio_request, *args)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def close(self) -> None:
        """End the workers now: a decode under way is abandoned (its request is answered by
        the shutdown). Idempotent."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in self.processes:
            if p.is_alive():
                p.terminate()
        for p in self.processes:
            p.join(2)
        _open_pools.discard(self)


def close_all() -> None:
    """Close every pool still open in this process (the test suite's end, an embedding app's
    exit): their workers end now rather than PARENT_POLL after this process."""
    for pool in list(_open_pools):
        pool.close()


atexit.register(close_all)
