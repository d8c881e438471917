"""Encoders f: input -> feature vector h, created by name.

Contract: `create_encoder(name, input_shape=..., width=...)` returns an nn.Module whose forward
maps (B, *input_shape) to (B, num_features) and which has the attribute `num_features`.
Image encoders take input_shape (C, H, W); the MLP takes (D,).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

ENCODERS = Registry("encoder")
IMAGE_ENCODERS = {"conv4", "conv4_pool_first", "koch", "resnet"}
AUDIO_ENCODERS = {"audio_resnet", "ecapa"}  # over (1, mels, frames): models/audio.py


def _finish(body: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """Flatten the body's output and record num_features by a dry run."""
    net = nn.Sequential(body, nn.Flatten())
    with torch.no_grad():
        net.eval()
        net.num_features = int(net(torch.zeros(2, *input_shape)).shape[1])
        net.train()
    return net


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError(f"encoder '{name}' takes images; use --encoder mlp for feature vectors")
    return input_shape  # type: ignore[return-value]


def conv_block(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    """conv-BN-ReLU-maxpool, computed as conv-BN-maxpool-ReLU: the same function (max and ReLU
    are both non-decreasing, so ReLU(max(S)) = max(ReLU(S)) and the gradients agree), with the
    ReLU and its backward pass on a quarter of the values (about 10% of conv4's training step
    on 2 cores). ReLU and pooling hold no weights, so the state-dict names are unchanged."""
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(inplace=True)]


@ENCODERS.register("conv4")
def conv4(input_shape: tuple[int, ...], width: int = 64) -> nn.Module:
    """4 x (conv3x3-BN-ReLU-maxpool; see conv_block), `width` channels each (Vinyals et al.
    2016; Snell 2017)."""
    c, _, _ = _image_shape("conv4", input_shape)
    layers = conv_block(c, width) + conv_block(width, width) + conv_block(width, width)
    layers += conv_block(width, width)
    return _finish(nn.Sequential(*layers), input_shape)


def pooled_block(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    """conv-maxpool-BN-ReLU: batch norm (its statistics and both passes) on the pooled map, a
    quarter of the values. Not the same function as conv_block (the statistics are the pooled
    values'), a block of the same kind and size: 1.2x (AVX-512) to 1.3x (AVX2) faster conv4
    training steps on 2 cores (docs/research/omniglot.md)."""
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
            nn.MaxPool2d(2, ceil_mode=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@ENCODERS.register("conv4_pool_first")
def conv4_pool_first(input_shape: tuple[int, ...], width: int = 64) -> nn.Module:
    """conv4 with each block pooling before its batch norm (see pooled_block): the same
    weights and output size as conv4, a faster training step."""
    c, _, _ = _image_shape("conv4_pool_first", input_shape)
    layers = pooled_block(c, width) + pooled_block(width, width) + pooled_block(width, width)
    layers += pooled_block(width, width)
    return _finish(nn.Sequential(*layers), input_shape)


@ENCODERS.register("koch")
def koch(input_shape: tuple[int, ...], width: int = 64) -> nn.Module:
    """Koch, Zemel, Salakhutdinov 2015: conv10-pool-conv7-pool-conv4-pool-conv4 -> FC.

    Channels scaled by width (64-128-128-256 at width 64), 'same' padding so that it runs on
    small inputs too, batch norm added for fast training; the FC layer has 16 x width units
    (the paper: 4096 sigmoid units on 105 x 105 inputs).
    """
    c, _, _ = _image_shape("koch", input_shape)
    w = width
    body = nn.Sequential(
        *conv_block(c, w, 9), *conv_block(w, 2 * w, 7), *conv_block(2 * w, 2 * w, 3),
        nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(True),
    )
    trunk = _finish(body, input_shape)
    net = nn.Sequential(trunk, nn.Linear(trunk.num_features, 16 * w), nn.Sigmoid())
    net.num_features = 16 * w
    return net


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


@ENCODERS.register("resnet")
def resnet(input_shape: tuple[int, ...], width: int = 64) -> nn.Module:
    """A small ResNet: stem + 3 stages of 2 basic blocks (width, 2w, 4w), global average pool."""
    c, _, _ = _image_shape("resnet", input_shape)
    w = width
    body = nn.Sequential(
        nn.Conv2d(c, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
        BasicBlock(w, w, 1), BasicBlock(w, w, 1),
        BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w, 1),
        BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w, 1),
        nn.AdaptiveAvgPool2d(1),
    )
    return _finish(body, input_shape)


@ENCODERS.register("mlp")
def mlp(input_shape: tuple[int, ...], width: int = 64) -> nn.Module:
    """For feature vectors: 2 hidden layers of 4 x width units with BN and ReLU."""
    if len(input_shape) != 1:
        # Images work too (flattened), which keeps the MLP usable as a baseline on any data.
        d = 1
        for s in input_shape:
            d *= s
    else:
        d = input_shape[0]
    h = 4 * width
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(True),
                        nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(True))
    net.num_features = h
    return net


def create_encoder(name: str, input_shape: tuple[int, ...], width: int = 64) -> nn.Module:
    """The one constructor: an encoder by registry name."""
    return ENCODERS.create(name, input_shape=tuple(input_shape), width=width)


def default_encoder(kind: str) -> str:
    return {"image": "conv4", "audio": "ecapa"}.get(kind, "mlp")

