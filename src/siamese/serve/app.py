"""`create_app(run)`: the FastAPI service. Every error is JSON {"error": message}, 4xx for bad
requests (a bug is a JSON 500, never a plain-text page).

It takes images or, for a speaker model, recordings (WAV/FLAC/OGG, any rate and channels; a
recording is embedded whole, in windows, like `Model.embed`).

What it promises (docs/security.md): no request can stall the others (decoding runs in a small
pool of niced processes, gallery work on worker threads; the event loop only parses and
routes), request size, files, pixels (or seconds of audio) per file and per request are capped
before decoding, the
Host header must name this server (DNS rebinding), gallery changes need the API key, uploads are
stored under their detected format and served with nosniff and a restrictive CSP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..data.audio import AUDIO_FORMAT_SUFFIX, NotAudio, TooLong, Waveforms, audio_header
from ..data.images import FORMAT_SUFFIX, NotAnImage, TooManyPixels
from ..errors import ConfigError, SiameseError
from ..index.enroll import (
    classify_embeddings,
    identify_embeddings,
    open_store,
    search_embeddings,
)
from ..names import display
from ..spot import MAX_EXAMPLE_SECONDS, Cancelled, spot
from .batching import Batcher
from .decoding import DecodePool

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".bmp": "image/bmp", ".gif": "image/gif",
         ".tif": "image/tiff", ".webp": "image/webp", ".ppm": "image/x-portable-anymap",
         ".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


@dataclass
class Limits:
    max_request_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000  # per image
    max_request_pixels: int = 50_000_000  # all images of one request together
    max_files: int = 32
    max_seconds: float = 120.0  # per recording (audio models)
    max_request_seconds: float = 300.0  # all recordings of one request together
    max_stream_seconds: float = 300.0  # /spot: the recording searched (longer: `siamese spot`)
    decode_workers: int = 2  # image decoding processes (niced), never on the event loop
    max_page: int = 1000  # GET /gallery items per page


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _page_csp(html: str) -> str:
    """The page may run its own inline script (by hash) and nothing else."""
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    digests = [base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts]
    hashes = " ".join(f"'sha256-{d}'" for d in digests)
    return (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
            "img-src 'self' blob:; connect-src 'self'; media-src 'self' blob:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class FastJSON(JSONResponse):
    """The C JSON encoder, not FastAPI's pure-Python jsonable_encoder: a 1,000-item gallery page
    encoded on the event loop held it for tens of milliseconds."""

    def render(self, content) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


def _host_of(header: str) -> str:
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def parse_labels(labels: str, n: int) -> list[str]:
    """One label for every file, or a JSON list of one label per file."""
    if not labels.startswith("["):
        return [labels] * n
    try:
        parsed = json.loads(labels)
    except (ValueError, RecursionError):  # also 5000-digit numbers, 100,000 nested lists
        raise ApiError(422, "labels: not a JSON list of strings") from None
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        raise ApiError(422, "labels: give a JSON list of strings")
    if len(parsed) != n:
        raise ApiError(422, f"labels: {len(parsed)} labels for {n} files; give one per file")
    return parsed


def create_app(run: str | Path, api_key: str | None = None, limits: Limits | None = None,
               batching: bool = True, allowed_hosts: list[str] | None = None,
               runtime: str = "torch") -> FastAPI:
    """allowed_hosts: the names clients may reach this server by (Host header); None = the
    loopback names, ["*"] = any (behind a proxy that checks it)."""
    from ..model import Model

    limits = limits or Limits()
    hosts = {h.lower().strip("[]") for h in (allowed_hosts or LOOPBACK)}
    model = Model.load(run, runtime=runtime)
    store = open_store(model)
    decoder = DecodePool(limits.decode_workers)  # forked first, before any thread is started
    batcher = Batcher(model.embed_tensor) if batching else None
    rebuilding = threading.Lock()
    page = (STATIC / "index.html").read_text()
    page_csp = _page_csp(page)
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        decoder.close()
        lister.shutdown(wait=False)

    app = FastAPI(title="siamese", version=__version__, lifespan=lifespan,
                  description="Verify, identify and search with a trained Siamese network.")
    app.state.model, app.state.batcher, app.state.store = model, batcher, store

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(SiameseError)
    async def _user_error(request: Request, e: SiameseError):
        status = 415 if isinstance(e, NotAnImage | NotAudio) else \
            413 if isinstance(e, TooManyPixels | TooLong) else 400
        return JSONResponse({"error": display(str(e))}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        return JSONResponse({"error": f"internal error ({type(e).__name__})"}, status_code=500)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if "*" not in hosts and _host_of(request.headers.get("host", "")) not in hosts:
            return JSONResponse({"error": "Host header does not name this server; start it "
                                          "with --allowed-hosts NAME"}, status_code=400)
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"error": "Content-Length is required"}, status_code=411)
            if not length.isdigit() or int(length) > limits.max_request_bytes:
                return JSONResponse(
                    {"error": f"request larger than {limits.max_request_bytes} bytes"},
                    status_code=413)
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        path = request.url.path
        if path == "/":
            response.headers["Content-Security-Policy"] = page_csp
        elif path not in ("/docs", "/redoc"):  # FastAPI's own pages load their scripts
            response.headers.setdefault("Content-Security-Policy", STRICT_CSP)
        return response

    def check_key(request: Request) -> None:
        if not api_key:
            raise ApiError(403, "gallery changes are disabled: start the server with an API "
                                "key in SIAMESE_API_KEY")
        # Header bytes arrive decoded as latin-1: compare the client's bytes with the key's
        # UTF-8 bytes, so that a non-ASCII key works.
        given = request.headers.get("x-api-key", "").encode("latin-1", "replace")
        if not secrets.compare_digest(given, api_key.encode("utf-8")):
            raise ApiError(401, "a valid X-API-Key header is required for gallery changes")

    async def read_inputs(files: list[UploadFile]):
        """-> (inputs: a (N, *input) tensor or Waveforms, [(name, bytes)], [file suffix])."""
        pre = model.preprocessing
        if pre.kind == "vector":
            raise ApiError(415, "this model compares feature vectors, and the service takes "
                                "images and audio; use the Python API or 'siamese compare'")
        if not files:
            raise ApiError(422, "no file uploaded")
        if len(files) > limits.max_files:
            raise ApiError(413, f"at most {limits.max_files} files per request")
        blobs = [(display(f.filename or "upload")[:200], await f.read()) for f in files]
        if pre.kind == "audio":
            arrays, formats = await decoder.decode_audio(
                blobs, pre.sample_rate, limits.max_seconds, limits.max_request_seconds)
            return (Waveforms.from_arrays(arrays), blobs,
                    [AUDIO_FORMAT_SUFFIX[f] for f in formats])
        c, size = pre.input_shape[0], pre.input_shape[1]
        arrays, formats = await decoder.decode(blobs, c, size, limits.max_pixels,
                                               limits.max_request_pixels)
        return (torch.cat([pre.normalize(torch.from_numpy(a)[None]) for a in arrays]), blobs,
                [FORMAT_SUFFIX[f] for f in formats])

    async def embed(x) -> np.ndarray:
        if isinstance(x, Waveforms):  # whole utterances in windows: not batched across requests
            return await asyncio.to_thread(lambda: model.embed_tensor(x).numpy())
        if batcher is None:
            return await asyncio.to_thread(lambda: model.embed_tensor(x).numpy())
        return (await asyncio.wrap_future(batcher.submit(x))).numpy()

    async def embed_files(files: list[UploadFile]) -> np.ndarray:
        return await embed((await read_inputs(files))[0])

    def gallery_call(fn, *args):
        """Gallery work runs on a worker thread: a slow save or reload never blocks the loop."""
        return asyncio.to_thread(lambda: fn(store.current(), *args))

    # Listing pages is pure Python (it holds the GIL): one thread for it, so that clients
    # pulling pages in a loop queue behind each other instead of starving the event loop.
    lister = ThreadPoolExecutor(1, thread_name_prefix="siamese-list")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    @app.get("/health")
    async def health():
        g = store.gallery
        return FastJSON({"status": "ok", "gallery": len(g) if g is not None else 0,
                         "version": __version__})

    @app.get("/model")
    async def card():
        return FastJSON(model.card)

    @app.post("/embed")
    async def embed_route(files: list[UploadFile] = File(...)):
        e = await embed_files(files)
        return FastJSON({"dim": int(e.shape[1]), "embeddings": e.tolist()})

    @app.post("/verify")
    async def verify(a: UploadFile = File(...), b: UploadFile = File(...)):
        e = await embed_files([a, b])
        sim = float(model.score_embeddings(e[:1], e[1:])[0])
        return FastJSON({"similarity": sim, "same": sim >= model.threshold,
                         "threshold": model.threshold})

    @app.post("/identify")
    async def identify(file: UploadFile = File(...)):
        e = await embed_files([file])
        return FastJSON((await gallery_call(lambda g: identify_embeddings(model, g, e)))[0])

    @app.post("/classify")
    async def classify(file: UploadFile = File(...)):
        e = await embed_files([file])
        return FastJSON((await gallery_call(lambda g: classify_embeddings(model, g, e)))[0])

    @app.post("/search")
    async def search(file: UploadFile = File(...), k: int = 5):
        if not 1 <= k <= 100:
            raise ApiError(422, "k must be between 1 and 100")
        e = await embed_files([file])
        matches = (await gallery_call(lambda g: search_embeddings(model, g, e, k)))[0]
        return FastJSON({"matches": matches})

    @app.post("/spot")
    async def spot_route(request: Request, examples: list[UploadFile] = File(...),
                         audio: UploadFile = File(...),
                         negatives: list[UploadFile] | None = File(None),
                         threshold: float | None = Form(None), hop: float | None = Form(None)):
        """Where the word of `examples` occurs in `audio` (spot.py): times and scores. The
        same limits as `siamese spot` (an example at most 5 s, a hop of at least a 10th of
        it), and the service's: the stream at most max_stream_seconds, the other recordings
        together at most max_request_seconds. Work stops when the client goes."""
        if model.preprocessing.kind != "audio":
            raise ApiError(415, "spotting needs a model trained on audio; this one compares "
                                f"{model.preprocessing.kind}s")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ApiError(422, "threshold must be between 0 and 1")
        negatives = negatives or []
        if len(examples) + len(negatives) + 1 > limits.max_files:
            raise ApiError(413, f"at most {limits.max_files} files per request")
        ex = [(display(f.filename or "example")[:200], await f.read()) for f in examples]
        neg = [(display(f.filename or "negative")[:200], await f.read()) for f in negatives]
        stream = (display(audio.filename or "audio")[:200], await audio.read())
        total = 0.0
        for name, data in ex:  # headers first: nothing long is decoded
            total += audio_header(data, name, min(limits.max_seconds, MAX_EXAMPLE_SECONDS))[1]
        for name, data in neg:
            total += audio_header(data, name, limits.max_seconds)[1]
        if total > limits.max_request_seconds:
            raise ApiError(413, f"the examples and negatives last {total:.0f} s together; at "
                                f"most {limits.max_request_seconds:.0f} s per request")
        audio_header(stream[1], stream[0], limits.max_stream_seconds)
        gone = threading.Event()

        async def watch() -> None:  # waits, while the work runs, for the client's leaving
            # (the body is read: what comes next is http.disconnect; request.is_disconnected()
            # never says so behind a BaseHTTPMiddleware such as _guard, starlette #2094)
            while (await request.receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            result = await asyncio.to_thread(
                spot, model, [b for _, b in ex], stream[1],
                negatives=[b for _, b in neg] or None, threshold=threshold, hop_seconds=hop,
                names=([n for n, _ in ex], stream[0], [n for n, _ in neg]), stop=gone.is_set,
                max_stream_seconds=limits.max_stream_seconds)
        except Cancelled:
            return Response(status_code=499)  # nobody reads it: the client has gone
        finally:
            watcher.cancel()
        return FastJSON(result)

    @app.get("/gallery")
    async def gallery_list(offset: int = 0, limit: int = 100):
        if offset < 0 or not 1 <= limit <= limits.max_page:
            raise ApiError(422, f"offset must be >= 0 and limit between 1 and {limits.max_page}")

        def page_of() -> Response:  # built and encoded on the listing thread
            g = store.current()
            end = min(offset + limit, len(g))
            return FastJSON({"count": len(g), "offset": offset, "limit": limit, "items": [
                {"id": i, "label": lab, "source": src} for i, lab, src in
                zip(g.ids[offset:end], g.labels[offset:end], g.sources[offset:end],
                    strict=True)]})

        return await asyncio.get_running_loop().run_in_executor(lister, page_of)

    @app.post("/gallery")
    async def gallery_add(request: Request, files: list[UploadFile] = File(...),
                          labels: str = Form(..., description="one label, or a JSON list")):
        check_key(request)
        parsed = parse_labels(labels, len(files))
        inputs, blobs, suffixes = await read_inputs(files)
        e = await embed(inputs)
        ids = await asyncio.to_thread(
            store.add, e, parsed, [name for name, _ in blobs], [data for _, data in blobs],
            suffixes)
        return FastJSON({"ids": ids, "count": len(store.gallery)})

    def rebuild_in_background() -> None:
        if store.gallery.needs_rebuild and rebuilding.acquire(blocking=False):
            def work():
                try:
                    store.rebuild()
                finally:
                    rebuilding.release()

            threading.Thread(target=work, daemon=True, name="siamese-rebuild").start()

    @app.delete("/gallery/{item_id}")
    async def gallery_remove(item_id: str, request: Request):
        check_key(request)
        try:
            await asyncio.to_thread(store.remove, [item_id])
        except ConfigError as e:
            raise ApiError(404, str(e)) from None
        rebuild_in_background()
        return FastJSON({"removed": item_id, "count": len(store.gallery)})

    @app.get("/gallery/{item_id}/image", include_in_schema=False)
    @app.get("/gallery/{item_id}/file", include_in_schema=False)  # the same, named for audio
    async def gallery_image(item_id: str):
        try:
            data, suffix = await asyncio.to_thread(store.image_bytes, item_id)
        except SiameseError:
            raise ApiError(404, f"no gallery item with id {item_id}") from None
        except OSError:  # gone, or a link or non-file swapped in: never followed
            raise ApiError(404, f"the image of {item_id} is not stored") from None
        return Response(data, media_type=MEDIA.get(suffix, "application/octet-stream"),
                        headers={"Content-Security-Policy": STRICT_CSP})

    return app
