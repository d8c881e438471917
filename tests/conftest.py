import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

SHARED_DATA = Path(os.environ.get("SIAMESE_DATA", Path(__file__).parents[2] / "shared" / "data"))


def children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is pid, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of pids that still run (a zombie, waiting for init to reap it, has ended)."""
    left = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.append(pid)
    return left


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(pids)


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind():
    """The suite leaves no process behind: decoder pools a test left open are closed, and
    whatever else this process started must have ended by the end of the session."""
    yield
    from siamese.serve.decoding import close_all

    close_all()
    left = wait_gone(children(os.getpid()), 5.0)
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
                for pid in left if Path(f"/proc/{pid}/cmdline").exists()]
    # multiprocessing's resource tracker ends when this process does (it reads a pipe of ours)
    commands = [c for c in commands if "multiprocessing.resource_tracker" not in c]
    assert not commands, f"the test session left processes running: {commands}"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def make_image_tree(root: Path, classes: int = 3, per_class: int = 6, size: int = 12,
                    mode: str = "L") -> Path:
    """Class folders of small synthetic images: class c is a bright square at a c-dependent
    place, plus noise, so that classes are separable but samples differ."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 60, (size, size)).astype(np.uint8)
            o = (c * 3) % (size - 4)
            a[o:o + 4, o:o + 4] = 255
            img = Image.fromarray(a, "L").convert(mode)
            img.save(d / f"img_{i}.png")
    return root


@pytest.fixture
def image_tree(tmp_path) -> Path:
    return make_image_tree(tmp_path / "photos")


TINY_TOML = """
[data]
image_size = 8
[split]
test_classes = ["7", "8", "9"]
[model]
width = 8
embedding_dim = 16
[train]
epochs = 2
batch_size = 32
[eval]
episodes = 20
pairs = 400
"""


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_TOML)
    return p


@pytest.fixture(scope="session")
def tiny_run_session(tmp_path_factory):
    """A tiny model trained once on digits (classes 7-9 unseen). Copy it before changing it."""
    from siamese.cli import main

    root = tmp_path_factory.mktemp("tiny")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_TOML)
    assert main(["train", "--config", str(cfg), "--out", str(root / "r"), "--quiet"]) == 0
    return root / "r"


def with_views(run: Path, k: int) -> Path:
    """Give a trained run model.views = k (views change only how a trained model embeds)."""
    import json

    card = json.loads((run / "card.json").read_text())
    card["config"]["model"]["views"] = k
    (run / "card.json").write_text(json.dumps(card))
    return run


@pytest.fixture
def run_copy(tiny_run_session, tmp_path):
    import shutil

    shutil.copytree(tiny_run_session, tmp_path / "run")
    return tmp_path / "run"


def digit_png(path: Path, index: int) -> Path:
    from sklearn.datasets import load_digits

    img = load_digits().images[index] / 16 * 255
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


def digit_folder(root: Path, per_class: int = 3, classes=range(10), offset: int = 0) -> Path:
    """root/<digit>/<i>.png from the bundled digits."""
    from sklearn.datasets import load_digits

    y = load_digits().target
    for c in classes:
        d = root / str(c)
        d.mkdir(parents=True, exist_ok=True)
        for n, i in enumerate(np.flatnonzero(y == c)[offset:offset + per_class]):
            digit_png(d / f"{n}.png", int(i))
    return root


KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread on 127.0.0.1:<free port>."""

    def __init__(self, app):
        self.port = free_port()
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        import httpx

        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def tone(freq: float, rate: int, seconds: float, harmonics=(1.0,)) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return sum(a * np.sin(2 * np.pi * freq * (k + 1) * t) for k, a in enumerate(harmonics)) * 0.3


def voices(root: Path, rate: int = 8000, speakers: int = 4, clips: int = 5,
           flat: bool = False) -> Path:
    """Synthetic 'speakers': each a pitch and a harmonic recipe, clips with noise."""
    rng = np.random.default_rng(0)
    for s in range(speakers):
        pitch, harmonics = 120 + 70 * s, rng.uniform(0.2, 1.0, 4)
        for c in range(clips):
            x = tone(pitch * rng.uniform(0.97, 1.03), rate, rng.uniform(0.6, 1.2), harmonics)
            x = x + rng.normal(0, 0.02, len(x))
            path = root / (f"{s}_spk_{c}.wav" if flat else f"spk{s}/{c}.wav")
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, x, rate)
    return root


AUDIO_RUN = ["--sample-rate", "8000", "--crop-seconds", "0.5", "--width", "4",
             "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="session")
def audio_run_session(tmp_path_factory):
    """A tiny speaker model trained once on synthetic voices (root/"voices": 4 speakers x 5
    clips at 8 kHz). Copy it before changing it."""
    from siamese.cli import main

    root = tmp_path_factory.mktemp("audio")
    voices(root / "voices")
    # audio_resnet, not the default ecapa: at width 4 and 2 epochs ecapa does not yet tell
    # these stationary synthetic voices apart well enough for the spotting tests' exact places
    assert main(["train", "--data", str(root / "voices"), "--epochs", "2", "--split", "samples",
                 "--encoder", "audio_resnet", "--out", str(root / "r"), *AUDIO_RUN]) == 0
    return root / "r"
