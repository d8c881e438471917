"""Google's speech embedding (catalogue `speech_embedding`, its front end
`speech_melspectrogram`) as the encoder of spoken words: both ONNX graphs imported, frozen,
and their 96-d frames pooled into one vector a recording.

    waveform (B, T) at data.sample_rate ─► 16 kHz (FFT resampling) ─► 0.5 s of silence on
    each side ─► log-mel (the imported front end; / 10 + 2, as openWakeWord feeds it)
    ─► windows of 76 mel frames every `hop` frames ─► the imported embedding ─► (B, W, 96)
    ─► speech-weighted mean ─► minus the training mean ─► (B, 96)

The pooling weighs each frame by how far it is from the frame of pure silence (1 - cosine,
floored at 0), so that the silence around a word, which varies with the recording, does not
dilute it. Measured on the digits of two corpora (docs/speech.md): the plain mean of the frames
scores 87.2% / 88.6% (Speech Commands episodes / FSDD across speakers), the weighted mean 92.5%
/ 89.3%, DTW over the frames (Google's embedding as a peer) 84.0% / 87.0%. Nothing here trains;
the projection the SiameseNet puts on top starts as the identity and trains (model.projection
auto), and the training mean is subtracted (`center`, set by the run from its training clips).

A recording of any length is embedded whole (`whole_utterances`): shorter ones are padded with
silence, which the pooling leaves out, never repeated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.audio import resample
from .graph import GraphModule
from .modes import last_layers

RATE = 16000  # the front end's rate
WINDOW = 76  # mel frames (10 ms apart) the embedding takes
DIM = 96


class SpeechEmbeddingEncoder(nn.Module):
    """(B, samples) waveforms at `rate`, any length -> (B, 96) pooled speech embedding."""

    whole_utterances = True  # Model embeds recordings whole, padded with silence

    def __init__(self, spec: dict, rate: int, hop: int = 8, pad: float = 0.5) -> None:
        super().__init__()
        self.graph = nn.ModuleDict({"frontend": GraphModule(spec["frontend"]),
                                    "embedding": GraphModule(spec["embedding"])})
        self.rate, self.hop, self.pad = rate, hop, pad
        self.register_buffer("center", torch.zeros(DIM))
        self.num_features = DIM

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, W, 96) frames of the embedding, unnormalised."""
        x = resample(x.float(), self.rate, RATE) * 32767.0  # int16 scale, as openWakeWord feeds it
        side = x.new_zeros(x.shape[0], int(self.pad * RATE))
        return self._frames16(torch.cat([side, x, side], 1))

    def _frames16(self, x: torch.Tensor) -> torch.Tensor:
        least = (WINDOW - 1) * 160 + 560  # samples for one window (76 mel frames)
        if x.shape[1] < least:
            x = F.pad(x, (0, least - x.shape[1]))
        spec = self.graph["frontend"](x)[0][:, 0] / 10 + 2  # (B, mel frames, 32)
        win = spec.unfold(1, WINDOW, self.hop).transpose(2, 3)  # (B, W, 76, 32)
        b, w = win.shape[:2]
        win = win.reshape(b * w, WINDOW, 32, 1)
        e = torch.cat([self.graph["embedding"](win[i:i + 512])[0]  # bounded activations
                       for i in range(0, len(win), 512)])
        return e.reshape(b, w, DIM)

    def silence(self) -> torch.Tensor:
        """The embedding of a window of pure silence (96,), unit length."""
        with torch.no_grad():
            return F.normalize(self._frames16(self.center.new_zeros(1, 1))[0, 0], dim=0)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, 96): the speech-weighted mean of the frames (not centred)."""
        e = self.frames(x)
        w = (1 - F.normalize(e, dim=2) @ self.silence()).clamp_min(0)
        return (e * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(x) - self.center

    def pool_windows(self, x: torch.Tensor, starts: torch.Tensor, n: int) -> torch.Tensor:
        """Windows of one recording (T,) at `starts`, n samples each -> (len(starts), 96),
        from the recording's frames computed once (a stream scanned for a word: 12 frames a
        second instead of a second's frames for every window): each window pools the frames
        whose span is centred in it, as `forward` pools a recording's."""
        e = self.frames(x[None])[0]  # (W, 96); frame k spans hop x k x 10 ms - pad + 0.78 s
        per_frame = self.hop * 160 * self.rate / RATE
        centre = (torch.arange(len(e), dtype=torch.float64, device=e.device) * per_frame
                  - self.pad * self.rate + ((WINDOW - 1) * 160 + 560) / 2 * self.rate / RATE)
        s = starts.to(torch.float64)[:, None]
        inside = ((centre[None] >= s) & (centre[None] < s + n)).to(e.dtype)
        w = (1 - F.normalize(e, dim=1) @ self.silence()).clamp_min(0)[None] * inside
        return (w @ e) / w.sum(1, keepdim=True).clamp_min(1e-6) - self.center

    def set_trainable(self, mode: str) -> None:
        """The front end never trains; the embedding as `mode` says (frozen, last:N, all)."""
        front, emb = self.graph["frontend"], self.graph["embedding"]
        front.freeze_before(len(front.spec["nodes"]))
        front.requires_grad_(False)
        n = last_layers(mode)
        if n == 0:
            emb.freeze_before(0)
            emb.requires_grad_(True)
            return
        layers = emb.layers
        emb.freeze_before(len(emb.spec["nodes"]) if n is None else layers[-min(n, len(layers))])
