"""The tracker's per-frame confidence and its re-detection (track.redetect), on a net whose
response is plain template matching of pixels: a white square on black that jumps far out of
the search region. Without re-detection the tracker stays where it was; with it, it finds the
square again; the confidence is high on the target and low where it is not."""

import numpy as np
import torch
from torch import nn

from siamese.config import TrackConfig
from siamese.data.crops import context_size
from siamese.evaluation.otb import iou
from siamese.models.siamfc import SiamFC
from siamese.tracking.tracker import SiamFCTracker

SIDE, SQUARE = 320, 16


def pixel_matcher(exemplar: int, search: int) -> SiamFC:
    """Features = the crop averaged over 4 x 4 cells: the response is template matching."""
    backbone = nn.Sequential(nn.AvgPool2d(4, 4))
    backbone.fully_convolutional, backbone.stride = True, 4
    net = SiamFC(backbone, exemplar, search).eval()
    with torch.no_grad():  # a full match -> logit +4, no target (a zero correlation) -> -4
        z = torch.zeros(1, 3, exemplar, exemplar)
        c, half = exemplar // 2, SQUARE * exemplar / context_size(SQUARE, SQUARE) / 2
        z[..., int(c - half):int(c + half), int(c - half):int(c + half)] = 255
        peak = float((net.embed(z) ** 2).sum())
        net.log_scale.fill_(np.log(8 / peak))
        net.bias.fill_(-4.0)
    return net


def frames_with_a_jump(n: int = 12, jump_at: int = 4) -> tuple[list[np.ndarray], np.ndarray]:
    frames, truth = [], []
    for i in range(n):
        x, y = (40, 40) if i < jump_at else (230, 220)
        f = np.zeros((SIDE, SIDE, 3), np.uint8)
        f[y:y + SQUARE, x:x + SQUARE] = 255
        frames.append(f)
        truth.append([x, y, SQUARE, SQUARE])
    return frames, np.array(truth, float)


def run(redetect: int) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    cfg = TrackConfig(exemplar=63, search=127, redetect=redetect, lost_below=0.3, widen=8.0,
                      scales=1)
    tracker = SiamFCTracker(pixel_matcher(63, 127), cfg)
    frames, truth = frames_with_a_jump()
    tracker.init(frames[0], truth[0])
    boxes, sure, lost = [truth[0]], [1.0], [False]
    for f in frames[1:]:
        boxes.append(tracker.update(f))
        sure.append(tracker.confidence)
        lost.append(tracker.lost)
    return iou(np.array(boxes), truth), np.array(sure), lost


def test_without_redetection_a_target_that_jumped_away_is_lost():
    overlap, sure, lost = run(redetect=0)
    assert (overlap[:4] > 0.7).all() and (overlap[4:] < 0.1).all()
    assert (sure[1:4] > 0.9).all() and (sure[4:] < 0.3).all()
    assert not any(lost)


def test_redetection_widens_the_search_and_finds_it_again():
    overlap, sure, lost = run(redetect=2)
    assert (overlap[:4] > 0.7).all()
    # frames 4 and 5 are below lost_below (the target gone from the region): after the
    # second the tracker is lost, frame 6 searches the wide region and finds the square, and
    # with the confidence back the normal search resumes
    assert (sure[4:6] < 0.3).all() and lost == [False] * 5 + [True] + [False] * 6
    assert (overlap[6:] > 0.7).all() and (sure[6:] > 0.9).all()
