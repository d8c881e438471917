"""`export_onnx(model)`: the run's encoder as ONNX (dynamic batch axis), and its pair head.

    runs/x/model.onnx        input "input" (batch, *input_shape) float32, already normalised
                             -> "embedding" (batch, D); metadata: the weights' fingerprint, the
                             normalisation (mean, std), the input kind and shape; for a
                             model with model.views > 0, the embedding averaged over its views
    runs/x/model.head.onnx   only for runs trained with the pair head: "h1", "h2" (batch, D)
                             -> "similarity" (batch,) in [0, 1]

The card records what was exported (`card["onnx"]`). A file exported from other weights is
refused by `--runtime onnxruntime`: the fingerprint in its metadata must match the run's.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import torch

from ..artifact import read_card, write_card
from ..atomic import atomic_write
from ..errors import ArtifactError
from ..models.views import ViewAveraged, view_grids, view_thetas

OPSET = 18
HEAD_SUFFIX = ".head.onnx"


class _Encoder(torch.nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the ONNX input name
        return self.net.embed(input)


class _Head(torch.nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return self.net.score(h1, h2)


@contextlib.contextmanager
def _quiet():
    """The exporter prints its progress, warns and logs about optional packages: keep the
    command's output to its one line."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(module: torch.nn.Module, args: dict[str, torch.Tensor], outputs: list[str],
            path: Path, metadata: dict, shapes: dict | None = None) -> None:
    """Export `module(**args)` with a dynamic batch axis on every input (or the dynamic axes
    `shapes` gives, torch.export's dynamic_shapes)."""
    import onnx

    batch = torch.export.Dim("batch", min=1, max=65536)
    shapes = shapes if shapes is not None else {name: {0: batch} for name in args}

    def write(tmp: str) -> None:
        try:
            with _quiet():
                program = torch.onnx.export(module.eval(), tuple(args.values()),
                                            dynamic_shapes=shapes, input_names=list(args),
                                            output_names=outputs, opset_version=OPSET,
                                            dynamo=True, verbose=False)
        except Exception as e:  # an operator ONNX cannot express, or an exporter failure
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            raise ArtifactError(f"cannot export {path.name} to ONNX ({type(e).__name__}: "
                                f"{first}); export needs modules ONNX opset {OPSET} can "
                                "express") from None
        proto = program.model_proto
        for k, v in metadata.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, tmp)

    atomic_write(path, write)


def require_exporter() -> None:
    """The packages torch's ONNX exporter needs, or a one-line ArtifactError."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ArtifactError("ONNX export needs the onnx extras: pip install -c "
                            "constraints.txt -e '.[onnx]'") from None


def export_onnx(model, out: str | Path | None = None) -> Path:
    """Export the model's encoder (and pair head) next to its weights, or to `out`."""
    require_exporter()
    if model.run is None:
        raise ArtifactError("this model has no run folder; load one with siamese.load(RUN)")
    run = Path(model.run)
    path = Path(out) if out is not None else run / "model.onnx"
    if path.suffix != ".onnx":
        raise ArtifactError(f"{path}: the ONNX file's name must end in .onnx")
    pre = model.preprocessing
    net = model.net.to("cpu").eval()
    if getattr(net.encoder, "whole_utterances", False):
        encoder_name = model.card.get("config", {}).get("model", {}).get("encoder")
        raise ArtifactError(f"encoder '{encoder_name}' embeds recordings of any length with "
                            "steps ONNX cannot hold (per-recording partials, pooling over "
                            "silence); serve the run (siamese serve) or load it with "
                            "siamese.load instead")
    metadata = {"siamese_fingerprint": model.fingerprint, "kind": pre.kind,
                "input_shape": json.dumps(pre.input_shape), "mean": json.dumps(pre.mean),
                "std": json.dumps(pre.std), "normalize": str(bool(net.normalize))}
    x = torch.zeros(2, *pre.input_shape)
    encoder = _Encoder(net)
    if model.views:  # the model's embedding averages fixed views: export that, not one pass
        encoder = ViewAveraged(net, view_grids(view_thetas(model.views, model._augment_config()),
                                               pre.input_shape))
    metadata["views"] = str(model.views)
    with torch.no_grad():
        _export(encoder, {"input": x}, ["embedding"], path, metadata)
        head = None
        if net.head is not None:
            head = path.with_name(path.name[:-len(".onnx")] + HEAD_SUFFIX)
            # two distinct example tensors: one tensor passed twice is traced as one input,
            # and |h1 - h2| folds to a constant
            h1, h2 = torch.randn(2, net.dim), torch.randn(2, net.dim)
            _export(_Head(net), {"h1": h1, "h2": h2}, ["similarity"], head, metadata)
    if out is None:  # the run's own export is recorded in its card
        card = read_card(run)
        card["onnx"] = {"file": path.name, "head": head.name if head else None,
                        "opset": OPSET, "input": {"name": "input", "dtype": "float32",
                                                  "shape": ["batch", *pre.input_shape],
                                                  "normalised": "(x - mean) / std"},
                        "output": {"name": "embedding", "shape": ["batch", net.dim]},
                        "views": model.views,
                        "fingerprint": model.fingerprint, "torch": torch.__version__}
        write_card(run, card)
        model.card = card
    return path
