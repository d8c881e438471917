"""`create_app(run)`: the FastAPI service. Every error is JSON {"error": message} with a 4xx code.

Limits: request size (Content-Length required and capped), image pixels (decompression bombs),
image formats, files per request; gallery changes need the API key (X-API-Key header) and are
refused when the server has none.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import SiameseError
from ..index.enroll import (
    classify_embeddings,
    identify_embeddings,
    open_gallery,
    save_gallery,
    search_embeddings,
)
from .batching import Batcher

STATIC = Path(__file__).parent / "static"
FORMATS = {"PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM"}


@dataclass
class Limits:
    max_request_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_files: int = 32


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def create_app(run: str | Path, api_key: str | None = None, limits: Limits | None = None,
               batching: bool = True) -> FastAPI:
    from ..api import load

    limits = limits or Limits()
    model = load(run)
    gallery = open_gallery(model)
    lock = threading.Lock()
    batcher = Batcher(model.embed_tensor) if batching else None
    app = FastAPI(title="siamese", version=__version__,
                  description="Verify, identify and search with a trained Siamese network.")
    app.state.model, app.state.batcher = model, batcher

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(SiameseError)
    async def _user_error(request: Request, e: SiameseError):
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.middleware("http")
    async def _size_cap(request: Request, call_next):
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"error": "Content-Length is required"}, status_code=411)
            if not length.isdigit() or int(length) > limits.max_request_bytes:
                return JSONResponse(
                    {"error": f"request larger than {limits.max_request_bytes} bytes"},
                    status_code=413)
        return await call_next(request)

    def check_key(request: Request) -> None:
        if not api_key:
            raise ApiError(403, "gallery changes are disabled: start the server with an API "
                                "key in SIAMESE_API_KEY")
        given = request.headers.get("x-api-key", "")
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "a valid X-API-Key header is required for gallery changes")

    async def read_images(files: list[UploadFile], keep: list | None = None):
        """Check and load uploads -> list of (1, *input) tensors; `keep` collects the bytes."""
        if not files:
            raise ApiError(422, "no file uploaded")
        if len(files) > limits.max_files:
            raise ApiError(413, f"at most {limits.max_files} files per request")
        tensors = []
        for f in files:
            data = await f.read()
            name = f.filename or "upload"
            try:
                img = Image.open(io.BytesIO(data))
            except Exception:
                raise ApiError(415, f"{name} is not an image (PNG, JPEG, BMP, GIF, TIFF, "
                                    "WebP)") from None
            if img.format not in FORMATS:
                raise ApiError(415, f"{name}: image type {img.format} is not accepted")
            if img.width * img.height > limits.max_pixels:
                raise ApiError(413, f"{name} has {img.width}x{img.height} pixels; the limit is "
                                    f"{limits.max_pixels}")
            tensors.append(model.preprocessing.load_input(data))  # DataError -> 400
            if keep is not None:
                keep.append(data)
        return tensors

    async def embed(tensors) -> np.ndarray:
        import torch

        x = torch.cat(tensors)
        if batcher is None:
            return await asyncio.to_thread(lambda: model.embed_tensor(x).numpy())
        return (await asyncio.wrap_future(batcher.submit(x))).numpy()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/health")
    async def health():
        return {"status": "ok", "gallery": len(gallery), "version": __version__}

    @app.get("/model")
    async def card():
        return model.card

    @app.post("/embed")
    async def embed_files(files: list[UploadFile] = File(...)):
        e = await embed(await read_images(files))
        return {"dim": int(e.shape[1]), "embeddings": e.tolist()}

    @app.post("/verify")
    async def verify(a: UploadFile = File(...), b: UploadFile = File(...)):
        e = await embed(await read_images([a, b]))
        sim = float(model.score_embeddings(e[:1], e[1:])[0])
        return {"similarity": sim, "same": sim >= model.threshold, "threshold": model.threshold}

    @app.post("/identify")
    async def identify(file: UploadFile = File(...)):
        e = await embed(await read_images([file]))
        with lock:
            return identify_embeddings(model, gallery, e)[0]

    @app.post("/classify")
    async def classify(file: UploadFile = File(...)):
        e = await embed(await read_images([file]))
        with lock:
            return classify_embeddings(model, gallery, e)[0]

    @app.post("/search")
    async def search(file: UploadFile = File(...), k: int = 5):
        if not 1 <= k <= 100:
            raise ApiError(422, "k must be between 1 and 100")
        e = await embed(await read_images([file]))
        with lock:
            return {"matches": search_embeddings(model, gallery, e, k)[0]}

    @app.get("/gallery")
    async def gallery_list():
        with lock:
            items = [{"id": i, "label": lab, "source": s} for i, lab, s in
                     zip(gallery.ids, gallery.labels, gallery.sources, strict=True)]
        return {"count": len(items), "items": items}

    @app.post("/gallery")
    async def gallery_add(request: Request, files: list[UploadFile] = File(...),
                          labels: str = Form(..., description="one label, or a JSON list")):
        check_key(request)
        try:
            parsed = json.loads(labels) if labels.startswith("[") else [labels] * len(files)
        except json.JSONDecodeError:
            raise ApiError(422, "labels: not a JSON list") from None
        if len(parsed) != len(files) or not all(str(x).strip() for x in parsed):
            raise ApiError(422, "labels: give one non-empty label per file")
        raw: list[bytes] = []
        e = await embed(await read_images(files, keep=raw))
        uploads = Path(model.run) / "gallery_uploads"
        # No await while the lock is held: a threading lock held across an await would block
        # the event loop for every other request that wants it.
        with lock:
            ids = gallery.add(e, [str(x) for x in parsed], [""] * len(files))
            sources = []
            for i, f, data in zip(ids, files, raw, strict=True):  # for thumbnails, reindex
                suffix = Path(f.filename or "x.png").suffix.lower() or ".png"
                p = uploads / f"{i}{suffix}"
                p.parent.mkdir(exist_ok=True)
                p.write_bytes(data)
                sources.append(str(p))
            gallery.sources[-len(ids):] = sources
            save_gallery(model, gallery)
        return {"ids": ids, "count": len(gallery)}

    @app.delete("/gallery/{item_id}")
    async def gallery_remove(item_id: str, request: Request):
        check_key(request)
        with lock:
            if item_id not in gallery.ids:
                raise ApiError(404, f"no gallery item with id {item_id}")
            gallery.remove([item_id])
            save_gallery(model, gallery)
        return {"removed": item_id, "count": len(gallery)}

    @app.get("/gallery/{item_id}/image", include_in_schema=False)
    async def gallery_image(item_id: str):
        with lock:
            if item_id not in gallery.ids:
                raise ApiError(404, f"no gallery item with id {item_id}")
            src = gallery.sources[gallery.ids.index(item_id)]
        if not src or not Path(src).is_file():
            raise ApiError(404, f"the image of {item_id} is no longer on disk")
        return FileResponse(src)

    return app
