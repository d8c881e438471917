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
        up = net.response_size * cfg.upsample
        hann = np.hanning(up)
        window = np.outer(hann, hann)
        self.window = window / window.sum()
        self.up = up

    def _tensor(self, crops: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
        return x.contiguous(memory_format=torch.channels_last).to(self.device)

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

    @torch.no_grad()
    def update(self, frame: np.ndarray) -> np.ndarray:
        """The next frame -> the target's box x, y, w, h."""
        import cv2

        c = self.cfg
        sides = self.x_side * self.scales
        crops = [crop(frame, self.cx, self.cy, s, c.search, self.mean) for s in sides]
        feats = self.net.embed(self._tensor(crops))
        responses = self.net.respond(self.kernel, feats)[:, 0].float().cpu().numpy()
        up = np.stack([cv2.resize(r, (self.up, self.up), interpolation=cv2.INTER_CUBIC)
                       for r in responses])
        # the penalty on the peaks' logits is additive (log): a logit may be negative, and
        # multiplying a negative peak would favour the penalised scale
        best = int(np.argmax(up.reshape(len(up), -1).max(1) + np.log(self.penalty)))
        r = up[best] - up[best].min()
        r /= r.sum() + 1e-12
        r = (1 - c.window_influence) * r + c.window_influence * self.window
        py, px = np.unravel_index(int(np.argmax(r)), r.shape)
        # peak -> displacement in the upsampled map -> search-crop pixels -> frame pixels
        d = (np.array([px, py], dtype=float) - (self.up - 1) / 2)
        d = d * self.net.stride / c.upsample * sides[best] / c.search
        self.cx = float(np.clip(self.cx + d[0], 0, frame.shape[1] - 1))
        self.cy = float(np.clip(self.cy + d[1], 0, frame.shape[0] - 1))
        scale = (1 - c.scale_lr) + c.scale_lr * self.scales[best]
        self.x_side = float(np.clip(self.x_side * scale, self.min_side, self.max_side))
        self.w, self.h = self.w * scale, self.h * scale
        if c.template_lr > 0:
            z = crop(frame, self.cx, self.cy, self.x_side * c.exemplar / c.search, c.exemplar,
                     self.mean)
            self.kernel = torch.lerp(self.kernel, self.net.embed(self._tensor([z])),
                                     c.template_lr)
        return box_of(self.cx, self.cy, self.w, self.h)
