"""Pretrained word embeddings that PyPI wheels ship as ONNX, as optional peers of the one-shot
words benchmark (issue 31). Neither is a need of the library; each is skipped where absent:

- Google's speech embedding (the `speech_embedding` TF-Hub model as openWakeWord converted it),
  from the `openwakeword==0.4.0` wheel's `resources/models/` (melspectrogram.onnx and
  embedding_model.onnx, run here with onnxruntime; openwakeword itself is not imported):
  a 96-d frame every 80 ms from 76 mel frames (0.775 s) of 16 kHz audio. A clip is padded with
  `pad` seconds of silence on each side (a one-second clip alone gives 3 frames), compared by
  DTW over the frames (cosine distance, cost over the path length).
- EfficientWord-Net (`efficientword-net==1.0.5`, its ResNet-50 ArcFace model, fp32): one
  2048-d vector a clip from a 1.5-s window (the package's own `fixPaddingIssues`: silence cut,
  then the clip placed at a random offset in silence, `random` seeded with 0), cosine nearest
  neighbour as its engine scores.

    .venv/bin/pip install --no-deps openwakeword==0.4.0 efficientword-net==1.0.5

(--no-deps: EfficientWord-Net's requirements name pyaudio and twine, which scoring does not
use; onnxruntime comes with siamese's `onnx` and `dev` extras, and `make` installs `dev`.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from siamese.data.audio import read_audio


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # finds without importing
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def google_available() -> bool:
    d = _package_dir("openwakeword")
    return d is not None and (d / "resources/models/embedding_model.onnx").is_file()


def google_frames(files: list[Path], pad: float = 0.5) -> dict[Path, np.ndarray]:
    """Each file -> (frames, 96) L2-normalised speech-embedding frames."""
    import onnxruntime as rt

    models = _package_dir("openwakeword") / "resources/models"
    opts = rt.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    mel = rt.InferenceSession(str(models / "melspectrogram.onnx"), opts,
                              providers=["CPUExecutionProvider"])
    emb = rt.InferenceSession(str(models / "embedding_model.onnx"), opts,
                              providers=["CPUExecutionProvider"])
    out = {}
    for f in files:
        x = read_audio(str(f), str(f), 16000)
        silence = np.zeros(int(pad * 16000), np.float32)
        x = np.concatenate([silence, x, silence])
        if len(x) < 12560:  # 76 mel frames need 12,560 samples (0.785 s)
            x = np.pad(x, (0, 12560 - len(x)))
        # openWakeWord feeds 16-bit PCM values as float, then spec / 10 + 2
        spec = np.squeeze(mel.run(None, {"input": (x * 32767).astype(np.float32)[None]})[0])
        spec = spec / 10 + 2
        windows = np.stack([spec[i:i + 76] for i in range(0, spec.shape[0] - 75, 8)])
        e = emb.run(None, {"input_1": windows[..., None].astype(np.float32)})[0]
        e = e.reshape(len(windows), -1)
        out[f] = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-8)
    return out


def effword_available() -> bool:
    d = _package_dir("eff_word_net")
    return d is not None and (d / "models/resnet_50_arc").is_dir()


def effword_vectors(files: list[Path]) -> dict[Path, np.ndarray]:
    """Each file -> EfficientWord-Net's L2-normalised 2048-d vector."""
    import random

    from eff_word_net.audio_processing import Resnet50_Arc_loss

    random.seed(0)
    model = Resnet50_Arc_loss()
    out = {}
    for f in files:
        x = read_audio(str(f), str(f), 16000).astype(np.float64)
        v = np.asarray(model.audioToVector(np.float32(model.fixPaddingIssues(x)))).reshape(-1)
        out[f] = v / (np.linalg.norm(v) + 1e-8)
    return out
