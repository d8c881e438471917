"""`TrackingModel`: a trained SiamFC run, ready to track. `siamese.load(run)` returns one for a
tracking run.

    model = siamese.load("runs/otb")
    boxes, fps = model.track("Dog1/img", box=(139, 112, 51, 36))   # a folder, a video, frames
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..artifact import check_card, read_card, read_json, read_weights
from ..config import TRACKER_SETTINGS, config_from_dict, resolve
from ..data.otb import check_box, frame_files, read_frames, read_video
from ..errors import ArtifactError, ConfigError, DataError
from .box_tracker import SiamBoxTracker
from .net import build_tracker_net
from .tracker import SiamFCTracker


def is_tracking_run(run: str | Path) -> bool:
    return read_card(Path(run)).get("task") == "tracking"


def read_input(source) -> list[np.ndarray]:
    """Frames: a folder of images, a video file, or a list of RGB arrays."""
    if isinstance(source, list | tuple):
        frames = [np.asarray(f) for f in source]
        if not frames:
            raise DataError("no frames given")
        if any(f.ndim != 3 or f.shape[2] != 3 or f.shape != frames[0].shape for f in frames):
            raise DataError("frames must be RGB arrays (H, W, 3) of one size")
        return [f.astype(np.uint8, copy=False) for f in frames]
    path = Path(source)
    return read_frames(frame_files(path)) if path.is_dir() else read_video(path)


class TrackingModel:
    def __init__(self, net, cfg, card: dict, run: Path | None = None,
                 device: str = "cpu", fingerprint: str = "", engine=None) -> None:
        self.net, self.cfg, self.card, self.run, self.device = net, cfg, card, run, device
        self.fingerprint = fingerprint  # of model.safetensors (export records it)
        self.engine = engine  # the ONNX Runtime branches (runtime/tracking.py), or None

    @classmethod
    def load(cls, run: str | Path, device: str = "cpu",
             runtime: str = "torch") -> TrackingModel:
        """runtime "onnxruntime": the network's calls through the run's exported branches
        (siamese export RUN; runtime/tracking.py)."""
        from ..runtime.onnx_runtime import RUNTIMES

        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime '{runtime}'; choose {' or '.join(RUNTIMES)}")
        run = Path(run)
        card = read_card(run)
        if card.get("task") != "tracking":
            raise ConfigError(f"{run} is not a tracking run (it compares pairs); train one with "
                              "train.task = \"tracking\" (configs/otb.toml)")
        check_card(card, run / "card.json")
        try:
            cfg = resolve(config_from_dict(card["config"], str(run / "card.json")))
        except ConfigError as e:
            raise ArtifactError(f"{run / 'card.json'} is invalid ({e}); restore the run folder "
                                "or train again") from None
        graph = head_graph = None
        imported = card.get("pretrained") or {}
        if imported.get("graph"):  # an imported backbone's structure
            graph = read_json(run / imported["graph"], "the imported network")
        if imported.get("head_graph"):  # and an imported head's
            head_graph = read_json(run / imported["head_graph"], "the imported head")
        net = build_tracker_net(cfg, graph, head_graph)
        state, fingerprint = read_weights(run / "model.safetensors")
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ArtifactError(f"{run / 'model.safetensors'} does not match its card "
                                f"({str(e).splitlines()[0][:80]}); train again") from None
        net = net.to(device).to(memory_format=torch.channels_last).eval()
        engine = None
        if runtime == "onnxruntime":
            from ..runtime.tracking import OnnxTrackerNet

            engine = OnnxTrackerNet(run, fingerprint, net, cfg.track.head)
        return cls(net, cfg, card, run, device, fingerprint, engine)

    def with_settings(self, **settings) -> TrackingModel:
        """The same weights, tracking with other tracker settings (config.TRACKER_SETTINGS:
        scales, scale_step, scale_penalty, scale_lr, window_influence, upsample,
        template_lr); checked as a config is."""
        unknown = set(settings) - set(TRACKER_SETTINGS)
        if unknown:
            raise ConfigError(f"not tracker settings: {', '.join(sorted(unknown))}; give some of "
                              f"{', '.join(TRACKER_SETTINGS)}")
        values = self.cfg.to_dict()
        values["track"].update(settings)
        return TrackingModel(self.net, resolve(config_from_dict(values)), self.card, self.run,
                             self.device, self.fingerprint, self.engine)

    def tracker(self) -> SiamFCTracker:
        kind = SiamFCTracker if self.cfg.track.head == "fc" else SiamBoxTracker
        if self.engine is not None:
            return kind(self.engine, self.cfg.track, "cpu")
        return kind(self.net, self.cfg.track, self.device)

    def track(self, frames, box, progress: bool = False, confidence: bool = False) -> tuple:
        """Frames (a folder, a video file or RGB arrays) and the target's box x,y,w,h in the
        first -> ((N, 4) boxes, the first one as given; frames per second of tracking); with
        confidence=True -> (boxes, (N,) confidences in [0, 1], the first 1; frames/s): each
        frame's response peak as a probability (tracking/tracker.py)."""
        frames = read_input(frames)
        box = np.asarray(box, dtype=np.float64)
        check_box(box, frames[0])
        tracker = self.tracker()
        out = np.zeros((len(frames), 4))
        out[0] = box
        sure = np.ones(len(frames))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(frames), desc="tracking", unit="frame", file=sys.stderr)
        t0 = time.perf_counter()
        tracker.init(frames[0], box)
        for i in range(1, len(frames)):
            out[i] = tracker.update(frames[i])
            sure[i] = tracker.confidence
            if bar is not None:
                bar.update()
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        fps = len(frames) / max(seconds, 1e-9)
        return (out, sure, fps) if confidence else (out, fps)
