"""The box-regressing tracker (track.head = "box"): its correlation, labels, IoU and loss
against naive loops and pixel counts, its tracker's geometry on a net whose outputs are set by
hand, and a run that trains, saves, loads and tracks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_tracking import TINY, _sequences
from torch import nn

import siamese
from siamese.cli import main
from siamese.config import TrackConfig
from siamese.data.crops import context_size
from siamese.losses.box import box_labels, box_loss, corners, iou_and_giou
from siamese.losses.response import balanced_logistic_loss, response_labels
from siamese.models.siambox import boxes_of, cell_positions, depthwise_correlate
from siamese.tracking.box_tracker import SiamBoxTracker


def test_depthwise_correlation_matches_a_loop():
    torch.manual_seed(0)
    z, x = torch.randn(3, 5, 4, 4), torch.randn(3, 5, 9, 9)
    got = depthwise_correlate(z, x)
    want = torch.zeros(3, 5, 6, 6)
    for b in range(3):
        for c in range(5):
            for i in range(6):
                for j in range(6):
                    want[b, c, i, j] = (z[b, c] * x[b, c, i:i + 4, j:j + 4]).sum() / 16
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # one exemplar over many search maps: the same as the exemplar repeated
    torch.testing.assert_close(depthwise_correlate(z[:1], x), depthwise_correlate(
        z[:1].expand(3, -1, -1, -1), x))


def test_labels_match_a_naive_loop_and_every_visible_target_has_a_positive():
    targets = torch.tensor([[0.0, 0.0, 64.0, 64.0], [17.0, -9.0, 30.0, 90.0],
                            [5.0, 3.0, 2.0, 2.0], [1e4, 1e4, 0.0, 0.0]])
    labels = box_labels(17, 8, targets)
    for b, (dx, dy, w, h) in enumerate(targets.tolist()):
        for i in range(17):
            for j in range(17):
                px, py = (j - 8) * 8, (i - 8) * 8
                inside = abs(px - dx) <= max(w / 4, 4) and abs(py - dy) <= max(h / 4, 4)
                assert labels[b, 0, i, j] == float(inside)
    assert labels[:3].flatten(1).sum(1).min() >= 1 and labels[3].sum() == 0


def test_iou_and_giou_match_a_pixel_count():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, (50, 2))
    b = rng.integers(0, 20, (50, 2))
    a = np.concatenate([a, a + rng.integers(1, 15, (50, 2))], 1)
    b = np.concatenate([b, b + rng.integers(1, 15, (50, 2))], 1)
    iou, giou = iou_and_giou(torch.tensor(a, dtype=torch.float32),
                             torch.tensor(b, dtype=torch.float32))
    for k in range(50):
        grid = np.zeros((2, 40, 40), bool)
        for g, (x0, y0, x1, y1) in zip(grid, (a[k], b[k]), strict=True):
            g[y0:y1, x0:x1] = True
        inter, union = (grid[0] & grid[1]).sum(), (grid[0] | grid[1]).sum()
        hull = ((max(a[k, 2], b[k, 2]) - min(a[k, 0], b[k, 0]))
                * (max(a[k, 3], b[k, 3]) - min(a[k, 1], b[k, 1])))
        assert iou[k].item() == pytest.approx(inter / union, abs=1e-5)
        assert giou[k].item() == pytest.approx(inter / union - (hull - union) / hull, abs=1e-5)


def test_exact_boxes_leave_only_the_class_and_quality_terms():
    """Distances that put every cell's box on the truth: the box term is 0, the quality's
    target is IoU 1."""
    targets = torch.tensor([[8.0, -16.0, 70.0, 50.0], [0.0, 0.0, 100.0, 120.0]])
    grid = cell_positions(17, 8)
    x0, y0, x1, y1 = corners(targets).T
    ltrb = torch.stack(torch.broadcast_tensors(grid[None, None, :] - x0[:, None, None],
                                               grid[None, :, None] - y0[:, None, None],
                                               x1[:, None, None] - grid[None, None, :],
                                               y1[:, None, None] - grid[None, :, None]), 1)
    boxes = boxes_of(ltrb, 8)
    torch.testing.assert_close(boxes[:, :, 4, 4], corners(targets))
    torch.manual_seed(0)
    cls, quality = torch.randn(2, 1, 17, 17), torch.randn(2, 1, 17, 17)
    pos = box_labels(17, 8, targets)[:, 0] > 0
    want = (balanced_logistic_loss(cls, response_labels(17, 8, 16.0, targets[:, :2]))
            + F.binary_cross_entropy_with_logits(quality[:, 0][pos], torch.ones(int(pos.sum()))))
    torch.testing.assert_close(box_loss(cls, ltrb, quality, targets, 8, 16.0), want)
    # boxes off the truth cost more
    assert box_loss(cls, ltrb * 1.3, quality, targets, 8, 16.0) > want + 0.05


class SetNet(nn.Module):
    """A stand-in box net: one sure cell (class logit +6 there, -6 elsewhere; `cell` counted
    from the map's centre cell, or None: no sure cell), every cell's box `ltrb` around it,
    quality 0.5. The map has a cell per 8 px of the search crop past a 127-px exemplar, as
    the real nets have (17 x 17 for 255 px)."""
    stride, response_size = 8, 17

    def __init__(self, cell: tuple[int, int] | None, ltrb: tuple[float, ...]) -> None:
        super().__init__()
        self.cell, self.ltrb = cell, torch.tensor(ltrb).view(1, 4, 1, 1)

    def embed(self, x):
        return x

    def respond(self, kernel, x):
        r = (x.shape[-1] - 127) // 8 + 1
        cls = torch.full((1, 1, r, r), -6.0)
        if self.cell is not None:
            cls[0, 0, (r - 1) // 2 + self.cell[0], (r - 1) // 2 + self.cell[1]] = 6.0
        return cls, self.ltrb.expand(1, 4, r, r), torch.zeros(1, 1, r, r)


def test_the_box_tracker_takes_the_best_cells_box():
    """The sure cell 4 columns right of and 2 rows below the centre, its box 60 x 40 crop
    pixels centred 5 px right of the cell: the centre moves there (in frame pixels: crop
    pixels times the search region's side over 255), the size by box_lr x the cell's score."""
    cfg = TrackConfig(box_penalty=0.0, box_lr=0.8)
    tracker = SiamBoxTracker(SetNet((2, 4), (25.0, 20.0, 35.0, 20.0)), cfg)
    frame = np.zeros((400, 400, 3), np.uint8)
    tracker.init(frame, np.array([180.5, 180.5, 40.0, 40.0]))  # centre (200, 200)
    a = context_size(40, 40) * 255 / 127 / 255  # frame pixels per search-crop pixel
    x, y, w, h = tracker.update(frame)
    assert x + (w - 1) / 2 == pytest.approx(200 + (32 + 5) * a)
    assert y + (h - 1) / 2 == pytest.approx(200 + 16 * a)
    lr = 0.8 * 0.5 / (1 + np.exp(-6.0))
    assert w == pytest.approx(40 * (1 - lr) + 60 * a * lr)
    assert h == pytest.approx(40 * (1 - lr) + 40 * a * lr)
    assert tracker.confidence == pytest.approx(1 / (1 + np.exp(-6.0)))


def test_a_lost_box_tracker_searches_wider_and_finds_the_target_there():
    """No sure cell for `redetect` frames: the tracker takes itself for lost; the next search
    is `widen` times wider (a bigger map, the same frame pixels per cell), where a sure cell
    20 cells off the centre (beyond the normal map's 8) brings it back."""
    cfg = TrackConfig(redetect=2, lost_below=0.5, widen=2.5, box_penalty=0.0)
    net = SetNet(None, (20.0, 20.0, 20.0, 20.0))
    tracker = SiamBoxTracker(net, cfg)
    frame = np.zeros((1000, 1000, 3), np.uint8)
    tracker.init(frame, np.array([480.5, 480.5, 40.0, 40.0]))  # centre (500, 500)
    for _ in range(2):
        tracker.update(frame)
        assert tracker.confidence < 0.5
    assert tracker.lost
    net.cell = (0, 20)
    a = context_size(40, 40) * 255 / 127 / 255  # unchanged by widening: more pixels, not larger
    x, y, w, h = tracker.update(frame)
    assert x + (w - 1) / 2 == pytest.approx(500 + 20 * 8 * a, abs=0.1)  # float32 maps
    assert tracker.confidence > 0.5 and not tracker.lost


@pytest.fixture(scope="module")
def box_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("box")
    data = _sequences(root / "data")
    cfg = root / "t.toml"
    cfg.write_text("[track]\nhead = \"box\"\npairs_per_epoch = 8\nexemplar = 87\n"
                   "search = 127\n")
    assert main(["train", "--config", str(cfg), "--data", str(data), "--out",
                 str(root / "run"), *TINY]) == 0
    return root / "run", data


def test_a_box_run_trains_loads_and_tracks(box_run, tmp_path):
    run, data = box_run
    model = siamese.load(run)
    assert isinstance(model.tracker(), SiamBoxTracker)
    first = [20.0, 40.0, 24.0, 24.0]
    boxes, sure, fps = model.track(data / "Seq0/img", first, confidence=True)
    assert boxes.shape == (24, 4) and fps > 0 and ((sure >= 0) & (sure <= 1)).all()
    still = model.with_settings(box_lr=0.0)  # the size never moves
    assert np.allclose(still.track(data / "Seq0/img", first)[0][:, 2:], 24.0)
    out = tmp_path / "b.txt"
    assert main(["track", str(run), "--frames", str(data / "Seq0/img"), "--box",
                 "20,40,24,24", "--out", str(out), "--quiet"]) == 0
    np.testing.assert_allclose(np.loadtxt(out, delimiter=","), boxes, atol=0.006)


def test_the_box_head_refuses_scale_pairs(tmp_path, capsys):
    data = _sequences(tmp_path / "data", n=1, frames=4)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY, "--set",
                 "track.head=box", "--set", "track.scale_share=0.2"]) == 2
    assert "leave it 0 with track.head = box" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
