"""CLI commands on a run's gallery: gallery add/remove/list/reindex, search, identify, serve."""

from __future__ import annotations

import argparse
from pathlib import Path


def _load(args):
    from .model import Model

    return Model.load(args.run, device=getattr(args, "device", "cpu"))


def _gallery_add(args) -> int:
    from .index.enroll import enroll, labeled_files, open_store

    model = _load(args)
    store = open_store(model, args.index)
    files, labels = labeled_files(Path(args.path), args.label,
                                  audio=model.preprocessing.kind == "audio")
    ids = enroll(model, store, files, labels, root=Path(args.path))
    print(f"enrolled {len(ids)} items ({len(set(labels))} labels); the gallery has "
          f"{len(store.gallery)}")
    return 0


def _gallery_remove(args) -> int:
    from .index.enroll import open_store

    store = open_store(_load(args))
    n = store.remove(args.ids)
    if store.gallery.needs_rebuild:
        store.rebuild()
    print(f"removed {n}; the gallery has {len(store.gallery)}")
    return 0


def _gallery_list(args) -> int:
    from .index.enroll import open_gallery

    g = open_gallery(_load(args))
    print(f"{len(g)} items, {len(set(g.labels))} labels, index {g.index_type}")
    for i, lab, src in zip(g.ids, g.labels, g.sources, strict=True):
        print(f"{i}\t{lab}\t{src}")  # stored display-safe
    return 0


def _gallery_reindex(args) -> int:
    from .index.enroll import reindex_run

    g = reindex_run(_load(args), args.index)
    print(f"reindexed {len(g)} items with the run's weights (index {g.index_type})")
    return 0


def _positive_k(k: int) -> int:
    from .errors import ConfigError

    if k < 1:
        raise ConfigError(f"-k {k}: ask for at least 1 match")
    return k


def _search(args) -> int:
    from .index.enroll import open_gallery, search_embeddings

    k = _positive_k(args.k)
    model = _load(args)
    g = open_gallery(model)
    if not len(g):
        print("the gallery is empty; enroll items with 'siamese gallery add'")
        return 0
    matches = search_embeddings(model, g, model.embed(args.image), k)[0]
    for rank, m in enumerate(matches, 1):
        print(f"{rank}. {m['similarity']:.3f}  {m['label']}  {m['id']}  {m['source']}")
    return 0


def _identify(args) -> int:
    from .index.enroll import identify_embeddings, open_gallery

    model = _load(args)
    r = identify_embeddings(model, open_gallery(model), model.embed(args.image))[0]
    print(f"{r['label']} (similarity {r['similarity']:.3f}, threshold {r['threshold']:.3f})")
    return 0


def default_hosts(bound: str) -> list[str]:
    """The Host names accepted by default: the bound address (and the loopback names when it
    is a loopback address); any for a wildcard address, with a warning."""
    from .serve.app import LOOPBACK

    if bound in ("0.0.0.0", "::", ""):
        return ["*"]
    return list(LOOPBACK) + [bound] if bound in LOOPBACK or bound.startswith("127.") else [bound]


def _serve(args) -> int:
    import os
    import sys

    import uvicorn

    from .serve.app import create_app

    hosts = args.allowed_hosts.split(",") if args.allowed_hosts else default_hosts(args.host)
    if hosts == ["*"]:
        print(f"warning: serving on {args.host} and accepting any Host header; pass "
              "--allowed-hosts with the names clients use", file=sys.stderr)
    app = create_app(args.run, api_key=os.environ.get(args.api_key_env),
                     batching=not args.no_batching, allowed_hosts=hosts, runtime=args.runtime)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def add_commands(sub: argparse._SubParsersAction, runtime_option) -> None:
    g = sub.add_parser("gallery", help="enroll, remove and list the items a run can identify")
    gsub = g.add_subparsers(dest="gallery_command", required=True)
    a = gsub.add_parser("add", help="enroll an image, a folder of <label>/ folders, or a folder")
    a.add_argument("run")
    a.add_argument("path")
    a.add_argument("--label", help="label for a single image or a flat folder")
    a.add_argument("--index", default="flat", choices=["flat", "hnsw", "ivf", "ivfpq"],
                   help="index type when the gallery is created (exact = flat; ivfpq: "
                        "compressed, for very large galleries)")
    a.set_defaults(func=_gallery_add)
    r = gsub.add_parser("remove", help="remove items by id")
    r.add_argument("run")
    r.add_argument("ids", nargs="+")
    r.set_defaults(func=_gallery_remove)
    ls = gsub.add_parser("list", help="id, label and source of every item")
    ls.add_argument("run")
    ls.set_defaults(func=_gallery_list)
    ri = gsub.add_parser("reindex", help="re-embed every item from the gallery's stored images "
                         "(after retraining, or to repair a damaged gallery)")
    ri.add_argument("run")
    ri.add_argument("--index", choices=["flat", "hnsw", "ivf", "ivfpq"])
    ri.set_defaults(func=_gallery_reindex)

    s = sub.add_parser("search", help="the k most similar gallery items")
    s.add_argument("run")
    s.add_argument("image")
    s.add_argument("-k", type=int, default=5)
    s.set_defaults(func=_search)
    i = sub.add_parser("identify", help="who is this? (or 'unknown' below the threshold)")
    i.add_argument("run")
    i.add_argument("image")
    i.set_defaults(func=_identify)

    v = sub.add_parser("serve", help="HTTP service and web page (FastAPI + uvicorn)")
    v.add_argument("run")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--api-key-env", default="SIAMESE_API_KEY",
                   help="environment variable holding the key required for gallery changes")
    v.add_argument("--allowed-hosts", help="comma-separated names clients reach the server "
                   "by (the Host header; DNS rebinding protection); default: the --host "
                   "address, '*' for any")
    runtime_option(v)
    v.add_argument("--no-batching", action="store_true",
                   help="embed each request on its own instead of batching concurrent ones")
    v.set_defaults(func=_serve)
