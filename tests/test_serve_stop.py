"""A stopped, killed or crashed server leaves none of its decoder processes behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import children, free_port, wait_gone
from siamese.serve.decoding import PARENT_POLL, DecodePool

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_close_ends_the_workers():
    pool = DecodePool(2)
    pids = pool.pids
    assert len(pids) == 2 and set(pids) <= set(children(os.getpid()))
    pool.close()
    assert wait_gone(pids, 2.0) == []
    pool.close()  # twice is harmless


def test_workers_end_when_their_parent_dies_without_closing():
    # A child makes a pool, reports its workers and dies at once, as under SIGKILL: no
    # shutdown, no atexit. The workers must notice by themselves.
    code = ("import os, sys\n"
            "from siamese.serve.decoding import DecodePool\n"
            "pool = DecodePool(2)\n"
            "print(*pool.pids, flush=True)\n"
            "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    pids = [int(p) for p in out.split()]
    assert len(pids) == 2
    assert wait_gone(pids, 2.0) == [], f"workers outlived their parent ({PARENT_POLL} s poll)"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_server_leaves_no_process(run_copy, sig):
    port = free_port()
    cmd = [sys.executable, "-m", "siamese", "serve", str(run_copy), "--port", str(port)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
        workers = children(p.pid)
        assert len(workers) >= 2  # the decoders
        p.send_signal(sig)
        p.wait(10)
        assert wait_gone(workers, 2.0) == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
