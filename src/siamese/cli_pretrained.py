"""`siamese pretrained list | fetch NAME | show NAME|FILE`: the catalogue of starting points
(pretrained/catalogue.json) and what an ONNX file offers to cut at."""

from __future__ import annotations

import argparse


def _list(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .pretrained.catalogue import entries, find

    for name, e in entries().items():
        try:
            where = str(find(name, allow_download=False).path)
        except ConfigError:
            where = ("pip install " + e["package"]) if e.get("package") else "not found here"
        print(f"{name:24s} {e['format']:16s} {e['license'][:40]:40s} {where}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from .pretrained.catalogue import find

    start = find(args.name)
    print(f"{args.name}: {start.path} (sha256 {start.sha256[:16]}... checked)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from .pretrained.catalogue import resolve
    from .pretrained.encoder import metadata_preprocessing
    from .pretrained.onnx_reader import graph_outputs, load_model

    start = resolve(args.name)
    e = start.entry or {}
    print(f"file      {start.path}\nsha256    {start.sha256}")
    for key in ("about", "license", "source", "note"):
        if e.get(key):
            print(f"{key:9s} {e[key]}")
    if (e.get("format") or "onnx") == "onnx" and start.path.suffix == ".onnx":
        model = load_model(start.path)
        print(f"outputs   {', '.join(graph_outputs(model))} (or any node's output)")
        meta = {p.key: p.value for p in model.metadata_props}
        print(f"input     {e.get('preprocessing') or metadata_preprocessing(meta) or 'not said'}")
    return 0


def add_pretrained_command(sub) -> None:
    p = sub.add_parser("pretrained", help="networks trained at scale to start from: list, "
                       "fetch, show")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="the catalogue, and where each file is found here"
                     ).set_defaults(func=_list)
    f = verbs.add_parser("fetch", help="find or download a catalogue entry (sha256 checked)")
    f.add_argument("name")
    f.set_defaults(func=_fetch)
    s = verbs.add_parser("show", help="a catalogue entry or an ONNX file: outputs, input")
    s.add_argument("name", help="a catalogue name or a file")
    s.set_defaults(func=_show)
