"""`Model`: a trained SiameseNet with its preprocessing and card, ready to embed and compare."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .artifact import check_card, read_card, read_json, read_weights
from .config import AugmentConfig, config_from_dict, resolve
from .data.audio import Waveforms, windows
from .data.loader import read_chunks
from .data.preprocessing import Preprocessing
from .errors import ArtifactError, ConfigError, DataError
from .models.build import build_net
from .models.siamese import SiameseNet
from .models.views import average_views, view_grids, view_thetas


class Model:
    """Use `siamese.load(run)` to get one."""

    def __init__(self, net: SiameseNet, preprocessing: Preprocessing, card: dict,
                 run: Path | None = None, device: str = "cpu") -> None:
        self.net = net.to(device).eval()
        self.preprocessing = preprocessing
        self.card = card
        self.run = run
        self.device = device
        self.fingerprint = ""  # of the weights file (artifact.read_weights); set by load()
        self.runtime = "torch"
        self._grids: dict[tuple, torch.Tensor] = {}  # views' sampling grids, built once
        self._encode = lambda x: self.net.embed(x.to(self.device)).cpu()

    @classmethod
    def load(cls, run: str | Path, device: str = "cpu", runtime: str = "torch") -> Model:
        """runtime "onnxruntime": embed with the run's exported model.onnx (siamese export)."""
        from .runtime.onnx_runtime import RUNTIMES, OnnxEncoder

        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime '{runtime}'; choose {' or '.join(RUNTIMES)}")
        run = Path(run)
        card = read_card(run)
        if card.get("task") == "tracking":
            raise ConfigError(f"{run} is a tracking model (SiamFC), it does not compare pairs; "
                              "use 'siamese track' or 'siamese evaluate RUN --otb DIR'")
        check_card(card, run / "card.json")
        try:
            cfg = resolve(config_from_dict(card["config"], str(run / "card.json")))
        except ConfigError as e:
            raise ArtifactError(f"{run / 'card.json'} is invalid ({e}); restore the run folder "
                                "or train again") from None
        pre = Preprocessing(**card["preprocessing"])
        graph = None
        if (card.get("pretrained") or {}).get("graph"):  # an imported network's structure
            graph = read_json(run / card["pretrained"]["graph"], "the imported network")
        net = build_net(cfg, pre.input_shape, pre.kind,
                        anchors=(card.get("regression") or {}).get("anchors", 0), graph=graph)
        state, fingerprint = read_weights(run / "model.safetensors")
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ArtifactError(f"{run / 'model.safetensors'} does not match its card "
                                f"({str(e).splitlines()[0][:80]}); train again") from None
        model = cls(net, pre, card, run, device)
        model.fingerprint = fingerprint
        if runtime == "onnxruntime":
            model.runtime, model._encode = runtime, OnnxEncoder(run / "model.onnx", fingerprint)
        return model

    @property
    def threshold(self) -> float:
        """The verification threshold calibrated on the validation split (0.5 if none)."""
        t = self.card.get("threshold")
        return 0.5 if t is None else float(t)

    @property
    def views(self) -> int:
        """How many fixed distortions the model's embedding averages (model.views; images)."""
        if self.preprocessing.kind != "image":
            return 0
        return int(self.card.get("config", {}).get("model", {}).get("views", 0))

    @torch.no_grad()
    def embed_tensor(self, x, batch_size: int = 512, views: int | None = None,
                     workers: int = 0) -> torch.Tensor:
        """Normalised inputs (N, *input_shape), a tensor or `ImageFiles` -> embeddings (N, D)
        on the CPU. workers > 0: files are decoded by that many processes.

        views (images only): the embedding is the mean over the input and that many fixed
        distortions of it (models/views.py: the run's [augment] ranges, the same maps for
        every image), L2-normalised again if the model normalises. None = the model's own
        (model.views, what serve, compare and the index use); 0 = one pass; more = test-time
        augmentation.
        """
        self.net.eval()
        if isinstance(x, Waveforms):
            return self._embed_utterances(x, batch_size)
        per_input = int(np.prod(x.shape[1:])) if len(x.shape) > 1 else 1
        # big inputs (a pretrained network's 224 px) in smaller batches: activations of 512
        # such images at once take many GB
        batch_size = max(8, min(batch_size, 4_000_000 // max(per_input, 1)))
        own = self.views
        k = own if views is None or self.preprocessing.kind != "image" else views
        inside = self.runtime == "onnxruntime" and own > 0  # the exported graph averages them
        if inside and k != own:
            raise ConfigError(f"the exported model.onnx averages {own} views (model.views); "
                              f"scoring with {k} needs --runtime torch")
        grids = self._view_grids(k) if k and not inside else None
        out = []
        for xb in read_chunks(x, np.arange(len(x)), workers, batch_size):
            if grids is None:
                out.append(self._encode(xb))
            else:
                out.append(average_views(self._encode, xb, grids, self.net.normalize))
        return torch.cat(out) if out else torch.zeros(0, self.net.dim)

    def _embed_utterances(self, w: Waveforms, batch_size: int) -> torch.Tensor:
        """Whole utterances: the mean embedding of windows of the training crop's length,
        half a window apart, L2-normalised again if the model normalises."""
        if getattr(self.net.encoder, "whole_utterances", False):  # pools any length itself
            return self._embed_whole(w)
        n = self.preprocessing.input_shape[0]
        out = torch.zeros(len(w), self.net.dim)
        for s in range(0, len(w), 64):
            part = w[torch.arange(s, min(s + 64, len(w)))]
            win, owner = windows(part, n, n // 2)
            emb = torch.cat([self._encode(win[k:k + batch_size])
                             for k in range(0, len(win), batch_size)])
            total = torch.zeros(len(part), emb.shape[1]).index_add_(0, owner, emb)
            out[s:s + len(part)] = total / torch.bincount(owner, minlength=len(part))[:, None]
        return F.normalize(out, dim=1) if self.net.normalize else out

    @torch.no_grad()
    def embed_windows(self, x: np.ndarray, starts: np.ndarray, n: int) -> torch.Tensor:
        """Windows x[s:s + n] of one recording -> their embeddings (siamese spot). An
        encoder over frames (the speech embedding) pools them from the recording's frames,
        computed once; others embed each window as an utterance."""
        encoder = self.net.encoder
        if self.runtime == "torch" and hasattr(encoder, "pool_windows") and len(starts):
            self.net.eval()
            part = torch.from_numpy(np.ascontiguousarray(x[starts[0]:starts[-1] + n]))
            h = encoder.pool_windows(part.to(self.device),
                                     torch.from_numpy(starts - starts[0]).to(self.device), n)
            return self.net.embed_features(h).cpu()
        return self.embed_tensor(Waveforms.from_arrays([x[s:s + n] for s in starts]))

    def _embed_whole(self, w: Waveforms, samples: int = 2_000_000) -> torch.Tensor:
        """Each recording whole, in batches of similar lengths padded with silence (an encoder
        that pools over time and leaves silence out: pretrained/speech.py)."""
        from .data.audio import pad_batch

        lengths = w.length.numpy()
        order = np.argsort(lengths, kind="stable")
        out = torch.zeros(len(w), self.net.dim)
        at = 0
        while at < len(order):
            n = max(1, min(64, samples // max(int(lengths[order[at:at + 64]].max()), 1)))
            part = order[at:at + n]
            out[torch.from_numpy(part)] = self._encode(pad_batch([w.get(int(i)) for i in part]))
            at += n
        return out

    def _view_grids(self, k: int) -> torch.Tensor:
        """The k views' sampling grids, built once per distortion ranges (a third of a
        one-image request's time when built every call)."""
        key = (k, repr(sorted(self.card["config"].get("augment", {}).items())))
        if key not in self._grids:
            self._grids[key] = view_grids(view_thetas(k, self._augment_config()),
                                          self.preprocessing.input_shape)
        return self._grids[key]

    def _augment_config(self) -> AugmentConfig:
        """The distortions the run trained with (the defaults if it trained without any)."""
        augment = config_from_dict(self.card["config"]).augment
        return augment if augment.enabled else AugmentConfig()

    def to_tensor(self, items: Sequence) -> torch.Tensor | Waveforms:
        inputs = [self.preprocessing.load_input(it) for it in items]
        if self.preprocessing.kind == "audio":
            return Waveforms.concat(inputs)
        return torch.cat(inputs)

    def embed(self, items) -> np.ndarray:
        """Paths, images or vectors -> (N, D) float32 embeddings. A single item gives (1, D)."""
        if isinstance(items, str | Path | bytes) or (
            self.preprocessing.kind == "vector" and np.ndim(items) == 1
        ) or hasattr(items, "convert"):
            items = [items]
        return self.embed_tensor(self.to_tensor(list(items))).numpy()

    @torch.no_grad()
    def score_embeddings(self, h1: torch.Tensor, h2: torch.Tensor) -> np.ndarray:
        """Similarities in [0, 1] of embedding pairs (B, D), (B, D) -> (B,)."""
        self.net.eval()
        return self.net.score(torch.as_tensor(h1), torch.as_tensor(h2)).numpy()

    @property
    def regression(self) -> bool:
        """A twin-regression model: it predicts a number (`predict`), it does not verify."""
        return self.card.get("task") == "regression"

    def predict(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Twin regression: raw feature rows (N, D) -> (predictions, uncertainties), each (N,):
        the mean and standard deviation over the training anchors."""
        if not self.regression:
            raise ConfigError(f"{self.run or 'this model'} scores similarity; predict needs a "
                              "run trained with --task regression")
        d = self.preprocessing.input_shape[0]
        try:
            a = np.asarray(rows, dtype=np.float32).reshape(-1, d)
        except (TypeError, ValueError):
            raise DataError(f"rows to predict must be numbers, {d} features each") from None
        if not np.isfinite(a).all():
            raise DataError("a row holds nan or inf; give finite numbers")
        x = self.preprocessing.normalize(torch.from_numpy(a))
        self.net.eval()
        pred, unc = self.net.predict(x.to(self.device))
        return pred.cpu().numpy(), unc.cpu().numpy()

    def similarity(self, a, b) -> float:
        """Similarity of two inputs in [0, 1]; 1 means the same class."""
        if self.regression:
            raise ConfigError(f"{self.run or 'this model'} is a regression model (train.task "
                              "regression): it predicts a number, it does not compare; use "
                              "siamese predict")
        h = self.embed_tensor(self.to_tensor([a, b]))
        return float(self.score_embeddings(h[:1], h[1:])[0])

    def verify(self, a, b) -> tuple[float, bool]:
        """(similarity, same?) at the calibrated threshold."""
        s = self.similarity(a, b)
        return s, s >= self.threshold
