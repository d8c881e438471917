"""The SiamFC tracker: the exemplar from the first frame, then for every new frame a search at
a few scales around the last position.

Per frame: crops of the search region at `scales` sizes (scale_step apart), one forward pass
for all of them, the responses upsampled (bicubic, `upsample` x), the non-central scales
penalised (`scale_penalty`), the best scale's response normalised and blended with a cosine
window (`window_influence`: targets move little between frames), its peak -> the new centre;
the size moves towards the chosen scale by `scale_lr` (damped). Crops past the frame's edge
are filled with the frame's mean colour. With `template_lr` > 0 the exemplar's features move
that far each frame towards those of the target where it was just found (a running average;
0, SiamFC's choice, keeps the first frame's).

Every frame has a confidence: the sigmoid of the chosen scale's highest response logit (before
the window), the net's probability that the peak cell is the target (it trains with the
logistic loss on those cells). With `redetect` > 0, after that many frames in a row below
`lost_below` the tracker takes itself for lost and searches a region `widen` times wider at the
present scale, without the window (the target may be anywhere in it), until the confidence is
back above `lost_below`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import TrackConfig
from ..data.crops import box_of, centre_of, context_size, crop, frame_mean
from ..models.siamfc import SiamFC


class SiamFCTracker:
    def __init__(self, net: SiamFC, cfg: TrackConfig, device: str = "cpu") -> None:
        self.net, self.cfg, self.device = net.eval(), cfg, device
        n = cfg.scales
        self.scales = cfg.scale_step ** (np.arange(n) - (n - 1) / 2)
        self.penalty = np.where(np.arange(n) == (n - 1) // 2, 1.0, cfg.scale_penalty)
        self.up = net.response_size * cfg.upsample
        hann = np.hanning(self.up)
        window = np.outer(hann, hann)
        self.window = window / window.sum()
        self.confidence, self.low = 1.0, 0  # the last frame's, and frames in a row below

    def _tensor(self, crops: list[np.ndarray]) -> torch.Tensor:
        # converted by numpy: the (B, H, W, 3) floats seen as (B, 3, H, W) are channels-last
        # already; torch's uint8 -> float of the permuted view took milliseconds a frame
        # beside ONNX Runtime's threads
        x = torch.from_numpy(np.stack(crops).astype(np.float32)).permute(0, 3, 1, 2)
        return x.to(self.device)

    @torch.no_grad()
    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        c = self.cfg
        self.cx, self.cy = centre_of(box)
        self.w, self.h = float(box[2]), float(box[3])
        self.mean = frame_mean(frame)
        self.z_side = context_size(self.w, self.h, c.context)
        self.x_side = self.z_side * c.search / c.exemplar
        self.min_side, self.max_side = 0.2 * self.x_side, 5 * self.x_side
        z = crop(frame, self.cx, self.cy, self.z_side, c.exemplar, self.mean)
        self.kernel = self.net.embed(self._tensor([z]))
        self.confidence, self.low = 1.0, 0

    @property
    def wide_pixels(self) -> int:
        """The re-detection crop's side: about `widen` x search, larger than the search crop
        by a whole number of strides, so that its centre is a cell's (an odd-sized map) and
        each cell's position reads as in the normal search."""
        c, stride = self.cfg, self.net.stride
        return c.search + stride * int(round(c.search * (c.widen - 1) / stride))

    @property
    def lost(self) -> bool:
        """Searching the wider region (track.redetect frames in a row below lost_below)."""
        return 0 < self.cfg.redetect <= self.low

    @torch.no_grad()
    def update(self, frame: np.ndarray) -> np.ndarray:
        """The next frame -> the target's box x, y, w, h."""
        import cv2

        c = self.cfg
        lost = self.lost
        if lost:  # one scale, a region `widen` times wider at the same pixel scale
            pixels = self.wide_pixels
            sides, scales, penalty = np.array([self.x_side * pixels / c.search]), [1.0], [1.0]
        else:
            pixels, sides, scales, penalty = c.search, self.x_side * self.scales, \
                self.scales, self.penalty
        crops = [crop(frame, self.cx, self.cy, s, pixels, self.mean) for s in sides]
        feats = self.net.embed(self._tensor(crops))
        responses = self.net.respond(self.kernel, feats)[:, 0].float().cpu().numpy()
        size = responses.shape[-1] * c.upsample
        up = np.stack([cv2.resize(r, (size, size), interpolation=cv2.INTER_CUBIC)
                       for r in responses])
        # the penalty on the peaks' logits is additive (log): a logit may be negative, and
        # multiplying a negative peak would favour the penalised scale
        peaks = up.reshape(len(up), -1).max(1)
        best = int(np.argmax(peaks + np.log(penalty)))
        self.confidence = float(1 / (1 + np.exp(-responses[best].max())))
        self.low = self.low + 1 if self.confidence < c.lost_below else 0
        r = up[best] - up[best].min()
        r /= r.sum() + 1e-12
        if not lost:  # the motion prior; a lost target may be anywhere in the wide region
            r = (1 - c.window_influence) * r + c.window_influence * self.window
        py, px = np.unravel_index(int(np.argmax(r)), r.shape)
        # peak -> displacement in the upsampled map -> search-crop pixels -> frame pixels
        d = (np.array([px, py], dtype=float) - (size - 1) / 2)
        d = d * self.net.stride / c.upsample * sides[best] / pixels
        self.cx = float(np.clip(self.cx + d[0], 0, frame.shape[1] - 1))
        self.cy = float(np.clip(self.cy + d[1], 0, frame.shape[0] - 1))
        scale = (1 - c.scale_lr) + c.scale_lr * scales[best]
        self.x_side = float(np.clip(self.x_side * scale, self.min_side, self.max_side))
        self.w, self.h = self.w * scale, self.h * scale
        self._update_template(frame)
        return box_of(self.cx, self.cy, self.w, self.h)

    def _update_template(self, frame: np.ndarray) -> None:
        """With template_lr > 0, the exemplar's features that far towards the target's where
        it was just found."""
        c = self.cfg
        if c.template_lr > 0:
            z = crop(frame, self.cx, self.cy, self.x_side * c.exemplar / c.search, c.exemplar,
                     self.mean)
            self.kernel = torch.lerp(self.kernel, self.net.embed(self._tensor([z])),
                                     c.template_lr)
