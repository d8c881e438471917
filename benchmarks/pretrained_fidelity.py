"""Import fidelity: each catalogued ONNX network, imported into PyTorch by siamese, against ONNX
Runtime running the same file, on real inputs.

    .venv/bin/python benchmarks/pretrained_fidelity.py --out results/pretrained_fidelity.json \\
        [--data-dir ../shared/data]

Inputs: MobileNetV2 on 8 OTB frames (224 px, its own preprocessing), NanoTrack v2's backbone
on 8 search crops of OTB frames (255 px, BGR 0-255), Google's speech embedding on the log-mel
frames that its melspectrogram.onnx (run by ONNX Runtime) makes of 8 Speech Commands clips,
and that mel front end itself on the clips. Reported per output: the largest absolute
difference and that divided by the largest absolute value of the reference. A network whose
file is not found (the speech ones need `pip install openwakeword==0.4.0`) is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from common.machine import describe, machine_info
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def frames(data: Path, size: int, n: int = 8) -> np.ndarray:
    """n OTB frames (RGB, [0, 1]) resized to size x size: (n, 3, size, size)."""
    paths = sorted((data / "otb").glob("*/img/*.jpg"))[:: 97][:n]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size)),
                                np.float32).transpose(2, 0, 1) / 255 for p in paths])


def clips(data: Path, n: int = 8) -> np.ndarray:
    import soundfile

    paths = sorted((data / "speech_commands" / "test").glob("*/*.flac"))[:: 311][:n]
    return np.stack([np.pad(soundfile.read(p, dtype="float32")[0], (0, 16000))[:16000]
                     for p in paths]) * 32767  # openWakeWord feeds int16-scaled samples


def compare(path: Path, outputs: list[str], x: np.ndarray, per_sample: bool) -> dict:
    import onnxruntime as ort

    from siamese.pretrained.encoder import graph_state
    from siamese.pretrained.graph import GraphModule
    from siamese.pretrained.onnx_reader import read_onnx

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = {}
    for o in outputs:
        spec, weights = read_onnx(path, [o])
        g = GraphModule(spec)
        g.load_state_dict(graph_state(spec, weights))
        with torch.no_grad():
            ours = g.eval()(torch.from_numpy(x))[0].numpy()
        ref = (np.concatenate([sess.run([o], {name: x[i:i + 1]})[0] for i in range(len(x))])
               if per_sample else sess.run([o], {name: x})[0])
        diff = float(np.abs(ours - ref).max())
        out[o] = {"max_abs_diff": diff, "relative": diff / float(np.abs(ref).max()),
                  "shape": list(ref.shape)}
    return out


def compare_head(path: Path, backbone: Path, x: np.ndarray) -> dict:
    """A tracker's head (two inputs) on the backbone's features of the frames' centres (127
    px) and of the frames (255 px), one pair at a time (the file fixes its batch at 1)."""
    import onnxruntime as ort

    from siamese.pretrained.encoder import graph_state
    from siamese.pretrained.graph import GraphModule
    from siamese.pretrained.onnx_reader import read_onnx

    def imported(p: Path, inputs: int) -> GraphModule:
        spec, weights = read_onnx(p, None, inputs)
        g = GraphModule(spec)
        g.load_state_dict(graph_state(spec, weights))
        return g.eval()

    net, head = imported(backbone, 1), imported(path, 2)
    x = torch.from_numpy(np.ascontiguousarray(x))
    with torch.no_grad():
        zf, xf = net(x[:, :, 64:191, 64:191].contiguous())[0], net(x)[0]
        ours = [o.numpy() for o in head(zf, xf)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ref = [np.concatenate(r) for r in zip(*(sess.run(None, {"input1": zf[i:i + 1].numpy(),
                                                            "input2": xf[i:i + 1].numpy()})
                                           for i in range(len(x))), strict=True)]
    out = {}
    for name, a, b in zip(names, ours, ref, strict=True):
        diff = float(np.abs(a - b).max())
        out[name] = {"max_abs_diff": diff, "relative": diff / float(np.abs(b).max()),
                     "shape": list(b.shape)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/pretrained_fidelity.json")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA",
                                                         ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    data = Path(args.data_dir)
    os.environ.setdefault("SIAMESE_PRETRAINED_PATH",
                          f"{data / 'pretrained'}:{data / 'peers' / 'nanotrack_v2'}")
    from siamese.errors import ConfigError
    from siamese.pretrained.catalogue import find

    def path_of(name: str) -> Path | None:
        try:
            return find(name, allow_download=False).path
        except ConfigError as e:
            print(f"skipped {name}: {e}", file=sys.stderr)
            return None

    results = {}
    if (p := path_of("mobilenet_v2_imagenet")) and (data / "otb").is_dir():
        results["mobilenet_v2_imagenet"] = compare(
            p, ["features", "stride16", "logits"], frames(data, 224) * 2 - 1, False)
    if (p := path_of("nanotrack_v2_backbone")) and (data / "otb").is_dir():
        bgr = frames(data, 255)[:, ::-1] * 255  # the file fixes its batch at 1
        results["nanotrack_v2_backbone"] = compare(p, ["output"], np.ascontiguousarray(bgr),
                                                   True)
    if p and (h := path_of("nanotrack_v2_head")):  # on real features of 127 / 255-px crops
        results["nanotrack_v2_head"] = compare_head(h, p, frames(data, 255)[:, ::-1] * 255)
    mel_path, emb_path = path_of("speech_melspectrogram"), path_of("speech_embedding")
    if mel_path and emb_path and (data / "speech_commands").is_dir():
        import onnxruntime as ort

        audio = clips(data)
        results["speech_melspectrogram"] = compare(mel_path, ["output"], audio, False)
        mel = ort.InferenceSession(str(mel_path)).run(None, {"input": audio})[0]
        mel = mel.reshape(len(audio), -1, 32) / 10 + 2  # openWakeWord's scaling
        windows = np.stack([m[:76] for m in mel])[..., None].astype(np.float32)
        results["speech_embedding"] = compare(emb_path, ["conv2d_19"], windows, False)
    lines = ["| network | output | shape | max abs difference | relative |",
             "|---|---|---|---|---|"]
    for net, outs in results.items():
        for o, r in outs.items():
            lines.append(f"| {net} | {o} | {r['shape']} | {r['max_abs_diff']:.2e} | "
                         f"{r['relative']:.2e} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(), "results": results}, indent=2) + "\n")
    out.with_suffix(".md").write_text(f"{describe(machine_info())}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
