"""Channel augmentation (data/channel.py) against properties and a naive reference: loudness
kept, band-limits that remove what lies above them, rooms whose decay is the drawn RT60, the
global batch's draws on every rank, and nothing touched at probability 0."""

import numpy as np
import pytest
import torch

from siamese.data.channel import channel, room_response

RATE = 16000


def _batch(b: int = 12, n: int = 8000) -> torch.Tensor:
    return torch.randn(b, n, generator=torch.Generator().manual_seed(1))


def test_probability_zero_leaves_the_crops_alone_and_one_changes_all_keeping_loudness():
    x = _batch()
    assert channel(x, RATE, 0, 0, 0, torch.Generator().manual_seed(0)) is x
    y = channel(x, RATE, 1, 1, 1, torch.Generator().manual_seed(0))
    assert (y - x).abs().amax(1).min() > 0.1  # every crop changed
    torch.testing.assert_close(y.pow(2).mean(1), x.pow(2).mean(1), rtol=1e-4, atol=0)


def test_band_limiting_removes_the_energy_above_the_drawn_cutoff():
    x = _batch()
    y = channel(x, RATE, 1, 0, 0, torch.Generator().manual_seed(0))
    spec = np.abs(np.fft.rfft(y.numpy(), axis=1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1 / RATE)
    above = spec[:, freqs > 4100].sum(1) / spec.sum(1)
    assert above.max() < 1e-3  # white noise had half its energy above 4 kHz
    kept = spec[:, (freqs > 400) & (freqs < 2900)].sum(1) / spec.sum(1)
    assert kept.min() > 0.6


def test_a_room_decays_by_60_db_in_its_rt60_and_holds_the_drawn_direct_to_reverberant_ratio():
    rt60, drr = torch.tensor([0.3, 0.8]), torch.tensor([0.0, 6.0])
    h = room_response(rt60, drr, RATE, RATE, torch.Generator().manual_seed(0)).numpy()
    assert (h[:, 0] == 1).all()
    tail = h[:, 1:] ** 2
    np.testing.assert_allclose(10 * np.log10(tail.sum(1)), -drr.numpy(), atol=1e-3)
    # energy in 50 ms windows: the fitted decay slope is -60 dB per rt60 (Schroeder's idea)
    w = tail[:, : (tail.shape[1] // 800) * 800].reshape(2, -1, 800).sum(2)
    t = (np.arange(w.shape[1]) + 0.5) * 800 / RATE
    for k in range(2):
        ok = t < rt60[k].item()  # above the float floor
        slope = np.polyfit(t[ok], 10 * np.log10(w[k, ok]), 1)[0]
        assert slope == pytest.approx(-60 / rt60[k].item(), rel=0.1)


def test_reverberation_is_the_linear_convolution_with_the_room():
    x = _batch(3, 4000)
    g = torch.Generator().manual_seed(0)
    y = channel(x, RATE, 0, 0, 1, g)
    # the same draws, by hand: np.convolve with the same room, cut to the crop, loudness kept
    g = torch.Generator().manual_seed(0)
    u = torch.rand(3, 9, generator=g)
    torch.rand(3, 8, generator=g)
    noise = torch.randn(3, RATE // 2, generator=g)
    h = room_response(0.15 + 0.75 * u[:, 5], -3 + 15 * u[:, 6], RATE // 2, RATE, None, noise)
    for k in range(3):
        ref = np.convolve(x[k].numpy(), h[k].numpy())[:4000]
        ref *= np.sqrt((x[k].numpy() ** 2).mean() / (ref ** 2).mean())
        np.testing.assert_allclose(y[k].numpy(), ref, atol=2e-4)


def test_ranks_draw_the_global_batch_rows():
    x = _batch(8)
    full = channel(x, RATE, 0.5, 0.5, 0.5, torch.Generator().manual_seed(3))
    halves = [channel(x[:3], RATE, 0.5, 0.5, 0.5, torch.Generator().manual_seed(3), 0, 8),
              channel(x[3:], RATE, 0.5, 0.5, 0.5, torch.Generator().manual_seed(3), 3, 8)]
    torch.testing.assert_close(torch.cat(halves), full, atol=1e-5, rtol=1e-4)


def test_a_channel_probability_outside_zero_to_one_is_refused():
    from siamese.config import Config, resolve
    from siamese.errors import ConfigError

    cfg = Config()
    cfg.augment.reverb = 1.5
    with pytest.raises(ConfigError, match="augment.reverb is a probability"):
        resolve(cfg)
