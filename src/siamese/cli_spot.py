"""`siamese spot`: where an enrolled word occurs in a recording (spot.py)."""

from __future__ import annotations

import argparse


def _spot(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_json
    from .model import Model
    from .outputs import check_outputs
    from .spot import format_detections, spot

    check_outputs(("--out", args.out))
    model = Model.load(args.run, device=args.device)
    result = spot(model, args.example, args.audio, negatives=args.negative,
                  threshold=args.threshold, hop_seconds=args.hop)
    print(format_detections(result, args.audio))
    if args.out:
        atomic_write_json(args.out, {"audio": str(args.audio),
                                     "examples": [str(e) for e in args.example], **result})
        print(f"detections written to {args.out}")
    return 0


def add_spot_command(sub) -> None:
    s = sub.add_parser("spot", help="find where an enrolled word occurs in a recording (a "
                       "model trained on audio)")
    s.add_argument("run")
    s.add_argument("--example", action="append", required=True,
                   help="a recording of the word, at most 5 s (repeat for several: more "
                   "examples, surer detections)")
    s.add_argument("--audio", required=True, help="the recording to search (WAV/FLAC/OGG, "
                   "up to 4 hours)")
    s.add_argument("--negative", action="append", default=[],
                   help="a recording without the word, to calibrate the threshold on (repeat; "
                   "needs 2 or more examples)")
    s.add_argument("--threshold", type=float, help="the score a window needs, in [0, 1] "
                   "(default: calibrated on --negative, else the run's threshold)")
    s.add_argument("--hop", type=float, help="seconds between windows (default 0.1, or a 10th "
                   "of the examples' length if more)")
    s.add_argument("--out", help="also write the detections as JSON")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=_spot)
