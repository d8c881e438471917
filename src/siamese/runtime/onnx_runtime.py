"""`OnnxEncoder`: a run's exported encoder run by ONNX Runtime, in place of PyTorch.

Used by `siamese.load(run, runtime="onnxruntime")` and `--runtime onnxruntime` (embed, compare,
evaluate, serve): embeddings come from `model.onnx`; pair scoring (cheap) stays in the loaded
network. The file must come from this run's weights (its metadata holds their fingerprint).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ArtifactError

RUNTIMES = ("torch", "onnxruntime")


def open_session(path: Path, fingerprint: str):
    """An ONNX Runtime session of a file `siamese export` wrote into a run, checked to come
    from that run's weights (the fingerprint in its metadata); else a one-line ArtifactError."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ArtifactError("--runtime onnxruntime needs the onnx extras: pip install -c "
                            "constraints.txt -e '.[onnx]'") from None
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; export it first with 'siamese export "
                            f"{path.parent}'")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - any failure: not a usable ONNX file
        raise ArtifactError(f"{path} is not a readable ONNX model ({type(e).__name__}); "
                            f"export it again with 'siamese export {path.parent}'") from None
    if session.get_modelmeta().custom_metadata_map.get("siamese_fingerprint") != fingerprint:
        raise ArtifactError(f"{path} was exported from other weights than "
                            f"{path.parent / 'model.safetensors'}; export it again with "
                            f"'siamese export {path.parent}'")
    return session


class OnnxEncoder:
    def __init__(self, path: Path, fingerprint: str) -> None:
        self.session = open_session(path, fingerprint)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *input_shape) normalised inputs -> (N, D) embeddings, on the CPU."""
        x = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(["embedding"], {"input": x})[0])
