"""Tracking (SiamFC) training's scale pairs (track.scale_share): the geometry of the extra
crops, the flip and grey they share with their pair, the loss against a naive per-crop
computation, and that a share of 0 draws and changes nothing."""

import numpy as np
import torch
import torch.nn.functional as F

from siamese.config import Config
from siamese.losses.response import balanced_logistic_loss, response_labels
from siamese.models.siamfc import SiamFC, siamfc_small
from siamese.training.track_pairs import SCALE_CONTRAST, TrackPairs
from siamese.training.tracking import TrackingTask


class Rig:
    """A task and its pairs (in memory): pair() draws one, batch() a prepared batch."""

    def __init__(self, task: TrackingTask, pairs: TrackPairs) -> None:
        self.task, self.pairs, self.model, self.cfg = task, pairs, task.model, task.cfg
        self.loss = task.loss

    def pair(self, rng, scaled=None):
        return self.pairs.pair(rng, scaled)

    def batch(self, n: int, seed: int):
        return self.task.prepare(self.pairs.batch(seed * 10_000, n))


def _task(share: float, stretch: float = 0.0, jitter: float = 0.0) -> Rig:
    frame = np.full((160, 200, 3), 40, np.uint8)
    frame[70:90, 90:110] = (220, 30, 30)  # a 20 x 20 red target
    videos = [([frame] * 4, np.array([[90, 70, 20, 20]] * 4, float))]
    cfg = Config()
    k = cfg.track
    k.exemplar, k.search, k.object_share, k.still_share = 87, 127, 0.0, 1.0
    k.scale_share, k.stretch, k.jitter = share, stretch, jitter
    torch.manual_seed(0)
    return Rig(TrackingTask(SiamFC(siamfc_small((3, 87, 87), width=4), 87, 127), cfg),
               TrackPairs.in_memory(videos, k))


def _extent(crop: np.ndarray) -> int:
    """The red target's width in a crop (HWC)."""
    red = (crop[..., 0] > 120) & (crop[..., 1] < 100)
    return int(red.any(0).sum())


def test_scale_pairs_cut_the_same_point_smaller_and_larger():
    task = _task(1.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        scaled = []
        _, x, offset = task.pair(rng, scaled)
        (small, large), truth = scaled[0]
        assert truth == 1  # no stretch: the crop as returned has the exemplar's scale
        mid = _extent(x)
        assert abs(_extent(small) - mid * SCALE_CONTRAST) <= 2
        assert abs(_extent(large) - mid / SCALE_CONTRAST) <= 2

        def centre(c):  # the target's centre, relative to the crop's centre
            red = np.argwhere((c[..., 0] > 120) & (c[..., 1] < 100))
            return red.mean(0)[::-1] - (c.shape[0] - 1) / 2

        np.testing.assert_allclose(centre(x), offset[:2], atol=1.5)
        assert abs(mid - offset[2]) <= 2  # the target's size in the crop, as drawn there
        np.testing.assert_allclose(centre(small), offset[:2] * SCALE_CONTRAST, atol=2)
        np.testing.assert_allclose(centre(large), offset[:2] / SCALE_CONTRAST, atol=2)


def test_the_true_scale_is_the_crop_nearest_the_exemplars():
    """With a stretch, the crop whose side over the ideal side is nearest 1 (in log) is the
    truth: the red target's width there is nearest the width without stretch."""
    task, plain = _task(1.0, stretch=0.3), _task(1.0)
    want = _extent(plain.pair(np.random.default_rng(0), [])[1])
    rng, seen = np.random.default_rng(1), set()
    for _ in range(40):
        scaled = []
        _, x, _ = task.pair(rng, scaled)
        (small, large), truth = scaled[0]
        widths = [_extent(small), _extent(x), _extent(large)]
        gaps = [abs(np.log(w / want)) for w in widths]
        assert gaps[truth] <= min(gaps) + 0.06
        seen.add(truth)
    assert seen == {0, 1, 2}


def test_a_share_of_zero_draws_nothing_and_returns_no_scale_pairs():
    off, on = _task(0.0, stretch=0.1), _task(1.0, stretch=0.1)
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(5):
        scaled = []
        a, b = off.pair(r1, scaled), off.pair(r2)
        assert scaled == [] and all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert off.batch(6, 0)[3] is None
    z, x, offsets, scales = on.batch(6, 0)
    assert z.shape[0] == 6 and x.shape[0] == 18 and offsets.shape == (6, 4)
    assert scales[0].tolist() == list(range(6))


def test_a_scale_pairs_crops_share_its_flip_and_grey():
    task = _task(0.5, jitter=0.3)
    for seed in range(4):
        z, x, offsets, scales = task.batch(16, seed)
        which, m = scales[0], len(scales[0])
        for k, i in enumerate(which.tolist()):
            trio = [x[i], x[16 + k], x[16 + m + k]]
            greys = [bool(torch.equal(c[0], c[1])) for c in trio]
            assert len(set(greys)) == 1
            # the target lies on the same side of the centre in all three (flipped together)
            sides = []
            for c in trio:
                red = (c[0] - c[1]) > 60
                cols = torch.nonzero(red.any(0)).float()
                sides.append(None if greys[0] or len(cols) == 0 else
                             bool(cols.mean() > (c.shape[-1] - 1) / 2))
            if abs(float(offsets[i, 0])) > 3 and None not in sides:
                assert len(set(sides)) == 1 and sides[0] == bool(offsets[i, 0] > 0)


def test_the_loss_adds_the_peaks_cross_entropy_to_the_map_loss():
    task = _task(0.5, stretch=0.2, jitter=0.3)
    task.model.eval()  # every crop through the running statistics: crops are independent
    z, x, offsets, scales = task.batch(8, 1)
    got = task.loss(z, x, offsets, scales)
    n, (which, truth) = len(offsets), scales
    m = len(which)
    with torch.no_grad():
        def logits(i, j):  # exemplar i against search crop j, alone
            return task.model(z[i:i + 1], x[j:j + 1])[0, 0]

        maps = torch.stack([logits(i, i) for i in range(n)])[:, None]
        labels = response_labels(maps.shape[-1], 8, task.cfg.radius, offsets)
        want = balanced_logistic_loss(maps, labels)
        ce = 0.0
        for k, i in enumerate(which.tolist()):
            peaks = torch.stack([logits(i, n + k).max(), logits(i, i).max(),
                                 logits(i, n + m + k).max()])
            ce += -F.log_softmax(peaks, 0)[truth[k]]
    torch.testing.assert_close(got, want + ce / m, atol=1e-5, rtol=1e-5)
    assert task.loss(z[:n], x[:n], offsets) < got  # without the scale term: the map loss
