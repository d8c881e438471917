"""`siamese track` and `siamese evaluate RUN --otb DIR`: the tracking commands."""

from __future__ import annotations

import argparse
from pathlib import Path


def _track(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_bytes
    from .data.otb import parse_box
    from .errors import ConfigError
    from .outputs import check_outputs
    from .tracking.model import TrackingModel, read_input
    from .tracking.render import VIDEO_SUFFIXES

    if (args.frames is None) == (args.video is None):
        raise ConfigError("give the frames to track: --frames DIR or --video FILE")
    if args.render and Path(args.render).suffix.lower() not in {".gif", *VIDEO_SUFFIXES}:
        raise ConfigError(f"--render {args.render}: give a .gif, .mp4, .avi, .mkv or .mov file")
    check_outputs(("--out", args.out), ("--confidence", confidence_path(args)),
                  ("--render", args.render))
    box = parse_box(args.box)
    model = with_sets(TrackingModel.load(args.run, device=args.device, runtime=args.runtime),
                      args.set)
    frames = read_input(args.frames or args.video)
    boxes, sure, fps = model.track(frames, box, progress=not args.quiet, confidence=True)
    text = "".join(f"{x:.2f},{y:.2f},{w:.2f},{h:.2f}\n" for x, y, w, h in boxes)
    scores = confidence_path(args)
    atomic_write_bytes(args.out, text.encode())
    atomic_write_bytes(scores, "".join(f"{c:.4f}\n" for c in sure).encode())
    low = int((sure < model.cfg.track.lost_below).sum())
    print(f"tracked {len(frames)} frames at {fps:.1f} frames/s; boxes written to {args.out}, "
          f"each frame's confidence to {scores} ({low} below {model.cfg.track.lost_below:g})")
    if args.render:
        from .tracking.render import render

        render(frames, boxes, args.render)
        print(f"rendered {args.render}")
    return 0


def export_tracking_command(args: argparse.Namespace) -> int:
    """`siamese export RUN` on a tracking run: its backbone and head as ONNX, in the run."""
    from .errors import ConfigError
    from .runtime.tracking import export_tracker
    from .tracking.model import TrackingModel

    if args.out is not None:
        raise ConfigError("a tracking run's branches are exported into its folder; leave out "
                          "--out")
    backbone, head = export_tracker(TrackingModel.load(args.run))
    print(f"exported {backbone} ('crops' (batch, 3, side, side) RGB 0-255 -> 'features') and "
          f"{head} (the head); track with them: siamese track {args.run} --runtime "
          "onnxruntime ...")
    return 0


def confidence_path(args: argparse.Namespace) -> Path:
    """--confidence, else beside --out: boxes.txt -> boxes.confidence.txt."""
    if args.confidence:
        return Path(args.confidence)
    out = Path(args.out)
    return out.with_name(f"{out.stem}.confidence{out.suffix or '.txt'}")


def evaluate_otb_command(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .tracking.evaluate import evaluate_otb, format_otb
    from .tracking.model import TrackingModel

    if not args.otb:
        raise ConfigError(f"{args.run} is a tracking model: evaluate it on sequences with "
                          "--otb DIR (the OTB layout)")
    model = with_sets(TrackingModel.load(args.run, device=args.device,
                                         runtime=getattr(args, "runtime", "torch")), args.set)
    result = evaluate_otb(model, args.otb, args.sequences, args.out)
    print(format_otb(result))
    where = Path(args.out) if args.out else Path(args.run)
    print(f"metrics written to {where / 'otb_metrics.json'}; plots: success.png, precision.png")
    return 0


def with_sets(model, sets: list[str]):
    """A tracking model with `--set track.KEY=VALUE` tracker settings (TRACKER_SETTINGS)."""
    from .config import parse_sets
    from .errors import ConfigError

    values = parse_sets(sets)
    other = [k for k in values if not k.startswith("track.")]
    if other:
        raise ConfigError(f"--set {other[0]}: a tracking run takes tracker settings, "
                          "--set track.KEY=VALUE")
    return model.with_settings(**{k.split(".", 1)[1]: v for k, v in values.items()})


def add_track_command(sub, set_option) -> None:
    k = sub.add_parser("track", help="track one target through a video from its box in the "
                       "first frame (a tracking run, SiamFC)")
    k.add_argument("run")
    k.add_argument("--frames", help="a folder of frames (JPEG/PNG, in name order)")
    k.add_argument("--video", help="a video file (MP4, AVI, MKV, ...)")
    k.add_argument("--box", required=True, help="the target in the first frame: x,y,w,h "
                   "(pixels, top-left corner)")
    k.add_argument("--out", default="boxes.txt", help="one x,y,w,h line per frame (OTB format)")
    k.add_argument("--confidence", help="each frame's confidence in [0, 1], one a line "
                   "(default: beside --out, boxes.confidence.txt)")
    k.add_argument("--render", help="also write the frames with the box: .gif or .mp4")
    k.add_argument("--device", default="cpu")
    k.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime"],
                   help="the network through PyTorch, or through ONNX Runtime from the "
                        "branches 'siamese export RUN' wrote (several times faster on a CPU)")
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    set_option(k, "tracker settings, e.g. --set track.scale_penalty=0.97")
    k.set_defaults(func=_track)


def is_tracking(run: str) -> bool:
    from .errors import SiameseError
    from .tracking.model import is_tracking_run

    try:
        return is_tracking_run(run)
    except SiameseError:  # a missing or damaged run: the usual loader says what is wrong
        return False
