"""The box head's tracker (track.head = "box", models/siambox.py), as SiamFC++ tracks: one
search crop per frame, no scale pyramid; every response cell proposes a box.

Per frame: the search crop around the last centre (the size of SiamFC's, from the present
box), one forward pass -> per cell a class and a quality probability and a box. A cell's score
is their product, times a penalty on the change of size and aspect its box asks for
(exp(-(change - 1) * box_penalty), change = max(r, 1/r) of the context-padded size times
that of the aspect ratio), blended with a cosine window (`box_window`: targets move little).
The best cell's box gives the new centre; the size moves towards its size by box_lr x the
cell's penalised score (a sure cell moves it more). The confidence is the best cell's class
probability, before the window. An imported head (track.head = "imported", as NanoTrack's)
has no quality map: its score is the class probability. Re-detection (`redetect`,
`lost_below`, `widen`) and the template update (`template_lr`) are SiamFC's
(tracking/tracker.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import TrackConfig
from ..data.crops import box_of, context_size, crop
from ..models.siambox import SiamBox, boxes_of
from .tracker import SiamFCTracker


def _change(r: np.ndarray) -> np.ndarray:
    return np.maximum(r, 1 / r)


class SiamBoxTracker(SiamFCTracker):
    def __init__(self, net: SiamBox, cfg: TrackConfig, device: str = "cpu") -> None:
        super().__init__(net, cfg, device)
        hann = np.hanning(net.response_size)
        self.window = np.outer(hann, hann)  # peak 1, as the scores' scale

    @torch.no_grad()
    def update(self, frame: np.ndarray) -> np.ndarray:
        """The next frame -> the target's box x, y, w, h."""
        c = self.cfg
        lost = self.lost
        pixels = self.wide_pixels if lost else c.search
        side = self.x_side * pixels / c.search  # the same frame pixels per crop pixel
        x = crop(frame, self.cx, self.cy, side, pixels, self.mean)
        cls, ltrb, quality = self.net.respond(self.kernel, self.net.embed(self._tensor([x])))
        boxes = boxes_of(ltrb.float(), self.net.stride)[0].cpu().numpy()  # (4, R, R)
        p_cls = torch.sigmoid(cls[0, 0].float()).cpu().numpy()
        score = p_cls if quality is None else \
            p_cls * torch.sigmoid(quality[0, 0].float()).cpu().numpy()
        a = side / pixels  # frame pixels per crop pixel
        w = np.maximum(boxes[2] - boxes[0], 1e-3) * a
        h = np.maximum(boxes[3] - boxes[1], 1e-3) * a
        size = _change(context_size(w, h, c.context) / context_size(self.w, self.h, c.context))
        aspect = _change((self.w / self.h) / (w / h))
        penalty = np.exp(-(size * aspect - 1) * c.box_penalty)
        scored = penalty * score
        if not lost:
            scored = (1 - c.box_window) * scored + c.box_window * self.window
        best = np.unravel_index(int(np.argmax(scored)), scored.shape)
        self.confidence = float(p_cls[best])
        self.low = self.low + 1 if self.confidence < c.lost_below else 0
        dx = (boxes[0][best] + boxes[2][best]) / 2 * a
        dy = (boxes[1][best] + boxes[3][best]) / 2 * a
        self.cx = float(np.clip(self.cx + dx, 0, frame.shape[1] - 1))
        self.cy = float(np.clip(self.cy + dy, 0, frame.shape[0] - 1))
        lr = float(penalty[best] * score[best] * c.box_lr)
        new_w, new_h = (1 - lr) * self.w + lr * w[best], (1 - lr) * self.h + lr * h[best]
        x_side = context_size(new_w, new_h, c.context) * c.search / c.exemplar
        if self.min_side <= x_side <= self.max_side:  # else the size stays
            self.w, self.h, self.x_side = float(new_w), float(new_h), x_side
        self._update_template(frame)
        return box_of(self.cx, self.cy, self.w, self.h)
