"""Batch renormalisation (models/renorm.py) against the formula written out and against the
property it exists for: in training, the output is what evaluation mode gives."""

import copy

import pytest
import torch
from torch import nn

from siamese.config import config_from_dict, resolve
from siamese.errors import ConfigError
from siamese.models.renorm import BatchRenorm2d, renormalise
from siamese.models.siamfc import siamfc_small
from siamese.tracking.net import build_tracker_net


def _layer(channels: int = 3) -> BatchRenorm2d:
    torch.manual_seed(0)
    m = renormalise(nn.Sequential(nn.BatchNorm2d(channels)))[0]
    with torch.no_grad():
        m.weight.uniform_(0.5, 2.0)
        m.bias.uniform_(-1.0, 1.0)
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
    return m


def _written_out(m: BatchRenorm2d, x: torch.Tensor, r_max: float, d_max: float) -> torch.Tensor:
    """Ioffe (2017), algorithm 1, one channel at a time."""
    out = torch.empty_like(x)
    for c in range(x.shape[1]):
        v = x[:, c]
        mu, sd = v.mean(), (((v - v.mean()) ** 2).mean() + m.eps).sqrt()
        running_sd = (m.running_var[c] + m.eps).sqrt()
        r = (sd / running_sd).detach().clamp(1 / r_max, r_max)
        d = ((mu - m.running_mean[c]) / running_sd).detach().clamp(-d_max, d_max)
        out[:, c] = ((v - mu) / sd * r + d) * m.weight[c] + m.bias[c]
    return out


def test_training_output_and_gradients_match_the_formula_written_out():
    m = _layer()
    x = (torch.randn(6, 3, 5, 5) * torch.tensor([1.0, 4.0, 0.1])[None, :, None, None]
         + torch.tensor([0.0, 9.0, -1.0])[None, :, None, None]).requires_grad_()
    ref_m = copy.deepcopy(m)
    expected = _written_out(ref_m, x, 3.0, 5.0)  # channels 2 and 3 are clipped
    got = m.train()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(got)
    grads = torch.autograd.grad(got, [x, m.weight, m.bias], g)
    ref = torch.autograd.grad(expected, [x, ref_m.weight, ref_m.bias], g)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_within_the_clips_training_gives_what_evaluation_gives():
    m = _layer()
    x = torch.randn(8, 3, 4, 4) * 1.3 + 0.2
    expected = copy.deepcopy(m).eval()(x)  # the running averages before this batch
    torch.testing.assert_close(m.train()(x), expected, rtol=1e-5, atol=1e-5)
    plain = nn.BatchNorm2d(3).train()
    plain.load_state_dict(m.state_dict())
    assert not torch.allclose(plain(x), expected, atol=1e-3)  # plain batch norm does not


def test_running_averages_update_as_batch_norm_does_and_evaluation_is_batch_norm():
    m = _layer()
    plain = nn.BatchNorm2d(3)
    plain.load_state_dict(m.state_dict())
    x = torch.randn(5, 3, 6, 6) * 2 + 1
    m.train()(x)
    plain.train()(x)
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(m.state_dict()[key], value)
    y = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(m.eval()(y), plain.eval()(y))


def test_renormalise_converts_the_tracking_backbones_batch_norms_and_keeps_their_state():
    net = siamfc_small(width=4)
    keys = set(net.state_dict())
    renormalise(net)
    kinds = {type(m) for m in net.modules()}
    assert BatchRenorm2d in kinds and nn.BatchNorm2d not in kinds
    assert set(net.state_dict()) == keys


def test_under_bf16_autocast_statistics_stay_fp32_and_the_output_is_close():
    m = _layer()
    conv = nn.Conv2d(3, 3, 3)
    x = torch.randn(4, 3, 10, 10)
    ref = copy.deepcopy(m)(conv(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        assert y.dtype == torch.bfloat16  # what broke the running averages' update on CUDA
        out = m(y)
    assert out.dtype == torch.bfloat16 and m.running_mean.dtype == torch.float32
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


def test_track_norm_chooses_the_layer_and_refuses_other_names():
    def kinds(norm: str) -> set[type]:
        cfg = resolve(config_from_dict({"train": {"task": "tracking"}, "model": {"width": 4},
                                        "track": {"norm": norm}}))
        return {type(m) for m in build_tracker_net(cfg).modules()}

    assert BatchRenorm2d in kinds("renorm") and nn.BatchNorm2d not in kinds("renorm")
    assert nn.BatchNorm2d in kinds("batch") and BatchRenorm2d not in kinds("batch")
    with pytest.raises(ConfigError, match="track.norm 'group'"):
        kinds("group")
