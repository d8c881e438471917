"""How a run uses the machine: precision, torch.compile, workers, the cache decision."""

import math

import pytest
import torch
from safetensors.torch import load_file

import siamese
from siamese.config import Config
from siamese.data.lazy import ImageFiles
from siamese.errors import ConfigError
from siamese.training.engine import amp_dtype, cache_budget, memory_bytes, workers


def test_amp_is_off_on_the_cpu_unless_asked_and_fp16_needs_cuda():
    assert amp_dtype("auto", "cpu") is None
    assert amp_dtype("off", "cuda") is None
    assert amp_dtype("bf16", "cpu") is torch.bfloat16
    assert amp_dtype("fp16", "cuda") is torch.float16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        amp_dtype("fp16", "cpu")


def test_workers_and_cache_budget_defaults():
    cfg = Config()
    files = ImageFiles(("a.png",), ("a.png",), 1, 8)
    assert workers(cfg, torch.zeros(3, 1, 8, 8)) == 0  # in memory: read in-process
    assert workers(cfg, files) >= 1
    cfg.train.workers = 3
    assert workers(cfg, files) == 3
    assert cache_budget(cfg) == memory_bytes() // 4
    cfg.data.cache_gb = 0.5
    assert cache_budget(cfg) == 2**29


@pytest.mark.slow
def test_compiled_bf16_training_saves_plain_weights(tmp_path):
    cfg = {"data": {"image_size": 8}, "model": {"width": 8, "embedding_dim": 8},
           "train": {"epochs": 1, "batch_size": 32, "amp": "bf16", "compile": True},
           "eval": {"episodes": 5, "pairs": 100}}
    model = siamese.train(cfg, tmp_path / "run", quiet=True)
    assert model.card["engine"]["amp"] == "bfloat16" and model.card["engine"]["compile"]
    assert all(math.isfinite(h["loss"]) for h in model.card["history"])
    weights = load_file(tmp_path / "run" / "model.safetensors")
    assert not any(k.startswith(("_orig_mod", "module.")) for k in weights)
    assert siamese.load(tmp_path / "run").embed_tensor(torch.zeros(2, 1, 8, 8)).shape == (2, 8)
