"""track.norm = "shared": in training, each batch norm normalises the search crops by their
batch's statistics and the exemplars by the same statistics, held as constants; checked
against a layer-by-layer computation written out, and that it changes training only."""

import copy

import pytest
import torch
from torch import nn

from siamese.config import config_from_dict, resolve
from siamese.models.siamfc import SiamFC, cross_correlate, siamfc_small
from siamese.tracking.net import build_tracker_net


def _pair(seed: int = 0) -> tuple[SiamFC, SiamFC, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    plain = SiamFC(siamfc_small((3, 87, 87), width=4), 87, 127)
    for m in plain.modules():  # weights and averages away from their defaults
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2)
    shared = copy.deepcopy(plain)
    shared.shared_norm = True
    z = torch.rand(3, 3, 87, 87) * 255
    x = torch.rand(3, 3, 127, 127) * 255
    return plain, shared, z, x


def _written_out(net: SiamFC, z: torch.Tensor, x: torch.Tensor, momentum: float = 0.1):
    """-> logits and the running averages after the step, layer by layer by hand: the
    search batch's mean and (biased) variance normalise both; the averages move towards
    the batch's mean and unbiased variance."""
    z, x = z / 255.0, x / 255.0
    averages = []
    for m in net.backbone:
        if not isinstance(m, nn.BatchNorm2d):
            z, x = m(z), m(x)
            continue
        mean = x.mean((0, 2, 3))
        var = x.var((0, 2, 3), unbiased=False)
        n = x.numel() / x.shape[1]
        averages.append(((1 - momentum) * m.running_mean + momentum * mean.detach(),
                         (1 - momentum) * m.running_var
                         + momentum * var.detach() * n / (n - 1)))
        sd = (var + m.eps).sqrt()
        x = (x - mean[:, None, None]) / sd[:, None, None] * m.weight[:, None, None] \
            + m.bias[:, None, None]
        md, sdd = mean.detach(), sd.detach()
        z = (z - md[:, None, None]) / sdd[:, None, None] * m.weight[:, None, None] \
            + m.bias[:, None, None]
    return cross_correlate(z, x) * net.scale + net.bias, averages


def test_shared_norm_matches_the_computation_written_out_with_its_gradients():
    _, shared, z, x = _pair()
    reference = copy.deepcopy(shared)
    shared.train()
    out = shared(z, x)
    want, averages = _written_out(reference, z, x)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
    norms = [m for m in shared.backbone if isinstance(m, nn.BatchNorm2d)]
    for m, (mean, var) in zip(norms, averages, strict=True):
        torch.testing.assert_close(m.running_mean, mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m.running_var, var, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (want * weights).sum().backward()
    for (name, p), q in zip(shared.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_shared_norm_differs_from_plain_in_training_only():
    plain, shared, z, x = _pair(1)
    plain.train(), shared.train()
    trained_plain, trained_shared = plain(z, x), shared(z, x)
    # the exemplar by this batch's statistics, not by the running averages
    assert (trained_plain - trained_shared).abs().max() > 1e-3
    # the same search crops moved the running averages the same way in both
    for a, b in zip(plain.buffers(), shared.buffers(), strict=True):
        torch.testing.assert_close(a, b)
    plain.eval(), shared.eval()
    torch.testing.assert_close(plain(z, x), shared(z, x))  # as the tracker runs them


@pytest.mark.parametrize("norm, shared", [("batch", False), ("shared", True),
                                          ("renorm", False)])
def test_track_norm_shared_builds_the_shared_net(norm, shared):
    cfg = resolve(config_from_dict({"train": {"task": "tracking"}, "model": {"width": 4},
                                    "track": {"norm": norm}}))
    assert build_tracker_net(cfg).shared_norm is shared


def _recalibration_task():
    import numpy as np

    from siamese.config import Config
    from siamese.training.tracking import TrackingTask

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    videos = [(frames, np.array([[60, 40, 24, 30]] * 3, float))]
    cfg = Config()
    cfg.track.exemplar, cfg.track.search = 87, 127
    torch.manual_seed(0)
    from siamese.training.track_pairs import TrackPairs

    return (TrackingTask(SiamFC(siamfc_small((3, 87, 87), width=4), 87, 127), cfg),
            TrackPairs.in_memory(videos, cfg.track, seed=7))


def test_recalibration_is_the_average_over_its_batches_of_search_crops():
    from siamese.training.tracking import RECALIBRATION, recalibrate_norms

    task, pairs = _recalibration_task()
    net = task.module
    net.eval()
    conv, first = net.backbone[0], net.backbone[1]
    first.running_mean.fill_(5.0)  # stale averages, to be replaced
    recalibrate_norms(task, pairs, 3, 4)
    # by hand: the first layer's outputs on the same batches, their per-channel means
    # averaged over the batches, and their unbiased variances likewise
    means, variances = [], []
    with torch.no_grad():
        for b in range(3):
            x = task.prepare(pairs.batch(RECALIBRATION * pairs.n + 4 * b, 4))[1]
            h = conv(x / 255.0)
            n = h.numel() / h.shape[1]
            means.append(h.mean((0, 2, 3)))
            variances.append(h.var((0, 2, 3), unbiased=False) * n / (n - 1))
    torch.testing.assert_close(first.running_mean, torch.stack(means).mean(0), rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(first.running_var, torch.stack(variances).mean(0), rtol=1e-4,
                               atol=1e-5)
    # the layers as they were: their momentum, and the net's mode
    assert first.momentum == 0.1 and not net.training


def test_a_negative_recalibration_is_refused():
    from siamese.errors import ConfigError

    with pytest.raises(ConfigError, match="recalibrate >= 0"):
        resolve(config_from_dict({"train": {"task": "tracking"},
                                  "track": {"recalibrate": -1}}))
