"""`siamese serve` in its own process on a free loopback port, for the serving benchmarks."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digit_png(index: int) -> bytes:
    from sklearn.datasets import load_digits

    buf = io.BytesIO()
    Image.fromarray((load_digits().images[index] / 16 * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@contextmanager
def served(run: str, *options: str, env: dict | None = None,
           timeout: float = 120) -> Iterator[str]:
    """Start the server, wait until /health answers, yield its URL; stop it afterwards."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "siamese", "serve", str(run), "--port",
                               str(port), *options], env={**os.environ, **(env or {})},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(30)
