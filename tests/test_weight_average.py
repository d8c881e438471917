"""train.ema's weight average: a warmed-up exponential moving average of the weights and
batch-norm statistics, checked against the recurrence written out in a loop."""

import types

import pytest
import torch
from torch import nn

from siamese.training.callbacks import WeightAverage, warmed_decay


@pytest.mark.parametrize("decay", [0.9, 0.998])
def test_the_average_follows_the_warmed_recurrence(decay):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    average = WeightAverage(net, decay)
    trainer = types.SimpleNamespace(net=net)
    want = None
    for n in range(60):
        with torch.no_grad():  # a step of "training": new weights and statistics
            for t in [*net.parameters(), net[1].running_mean, net[1].running_var]:
                t.copy_(torch.randn_like(t))
        net[1].num_batches_tracked += 1
        average.on_batch_end(trainer, 0.0)
        now = [t.detach().clone() for t in [*net.parameters(), *net.buffers()]]
        if want is None:  # the first update copies
            want = now
        else:
            d = min(decay, (1 + n) / (10 + n))  # n updates so far
            want = [w * d + x * (1 - d) if w.is_floating_point() else
                    (w * d + x * (1 - d)).to(w.dtype) for w, x in zip(want, now, strict=True)]
    got = [*average.average.module.parameters(), *average.average.module.buffers()]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_a_short_run_keeps_almost_nothing_of_its_first_step():
    # the share of the first step's weights in the average after a 1,170-step run
    share_warmed, share_plain = 1.0, 1.0
    for n in range(1, 1170):
        share_warmed *= warmed_decay(0.998, n)
        share_plain *= 0.998
    assert share_plain > 0.09 and share_warmed < 1e-20
    assert warmed_decay(0.998, 10**6) == 0.998  # the configured decay once warmed up
