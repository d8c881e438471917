"""Image and audio decoding for the service, in worker processes at a lower CPU priority.

A 25-megapixel PNG takes about a second of CPU and several 100 MB conversions to decode. On
threads, that work competes with the event loop for the GIL and the cores: ten such requests
made /health answer in 270 ms at the 99th percentile. In processes started with `nice` 10, the
event loop (and the encoder thread) always win the CPU; the workers only do what is left.

The workers are forked once, when the app is created, before the server starts any thread, and
never call torch (decoding is Pillow, soundfile, soxr and numpy): no fork-with-threads or
OpenMP hazards.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..data.audio import TooLong, audio_header, read_audio
from ..data.images import TooManyPixels, decode, image_format


def _lower_priority() -> None:
    os.nice(10)


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
    return [read_audio(data, name, rate, max_seconds) for name, data in blobs], formats


class DecodePool:
    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"),
                                        initializer=_lower_priority)
        # With fork, every worker is started by the first submit: now, while this process has
        # no other thread.
        self.pool.submit(int).result()

    async def decode(self, *args) -> tuple[list[np.ndarray], list[str]]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, decode_request,
                                                                *args)

    async def decode_audio(self, *args) -> tuple[list[np.ndarray], list[str]]:
        return await asyncio.get_running_loop().run_in_executor(self.pool,
                                                                decode_audio_request, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
