import pytest
import torch
from torch import nn

from siamese.errors import ConfigError
from siamese.models import ENCODERS, SiameseNet, create_encoder
from siamese.models.encoders import AUDIO_ENCODERS, IMAGE_ENCODERS
from siamese.models.siamfc import TRACKING_ENCODERS


def _shape(name):
    if name in AUDIO_ENCODERS:
        return (1, 16, 40)  # (1, mels, frames)
    if name in TRACKING_ENCODERS:
        return (3, 127, 127)  # SiamFC's exemplar crop
    return (1, 16, 16) if name in IMAGE_ENCODERS else (10,)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_contract(name):
    """(B, *input) -> (B, num_features); a tracking encoder is fully convolutional: a feature
    map of num_features channels, 8 x smaller, whose size grows with the input's."""
    enc = create_encoder(name, _shape(name), width=8)
    out = enc(torch.randn(3, *_shape(name)))
    if name in TRACKING_ENCODERS:
        assert out.ndim == 4 and out.shape[:2] == (3, enc.num_features) and enc.stride == 8
        bigger = enc(torch.randn(1, 3, 127 + 8 * 4, 127 + 8 * 4))
        assert bigger.shape[-1] == out.shape[-1] + 4  # one cell per 8 px: no padding
    else:
        assert out.shape == (3, enc.num_features)
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", sorted(IMAGE_ENCODERS))
@pytest.mark.parametrize("size", [8, 28, 33])
def test_image_encoders_take_any_size(name, size):
    enc = create_encoder(name, (3, size, size), width=4)
    assert enc(torch.randn(2, 3, size, size)).shape == (2, enc.num_features)


def test_unknown_encoder_names_the_choices():
    with pytest.raises(ConfigError, match="unknown encoder 'vgg'.*conv4"):
        create_encoder("vgg", (1, 8, 8))


@pytest.mark.parametrize("scorer", ["head", "euclidean", "cosine"])
def test_branches_share_one_encoder(scorer):
    net = SiameseNet(create_encoder("conv4", (1, 16, 16), 8), 16, True, 8, scorer).eval()
    x1, x2 = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)
    h1, h2 = net(x1, x2)
    # the same module and weights: each branch equals embedding that input alone
    assert torch.allclose(h1, net.embed(x1), atol=1e-5)
    assert torch.allclose(h2, net.embed(x2), atol=1e-5)
    s = net.score(h1, h2)
    assert s.shape == (4,) and ((s >= 0) & (s <= 1)).all()
    assert torch.allclose(net.score(h1, h2), net.score(h2, h1), atol=1e-6)  # symmetric
    m = net.score_matrix(h1, h2)
    assert torch.allclose(m.diagonal(), s, atol=1e-5)
    if scorer != "head":
        assert torch.allclose(net.score(h1, h1), torch.ones(4), atol=1e-5)


def test_gradient_flows_through_head_into_encoder():
    net = SiameseNet(create_encoder("conv4", (1, 16, 16), 8), 16, True, 8, "head")
    h1, h2 = net(torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16))
    net.head(h1, h2).sum().backward()
    assert net.encoder[0][0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["conv4", "koch"])
def test_pooling_before_relu_is_the_textbook_block(name):
    """conv_block pools before its ReLU (cheaper); the output and every gradient must equal
    the textbook conv-BN-ReLU-maxpool order built from the same modules."""
    torch.manual_seed(0)
    shape = (1, 28, 28) if name == "conv4" else (1, 105, 105)
    net = create_encoder(name, shape, 8).train()
    body = next(m for m in net.modules() if isinstance(m, nn.Sequential)
                and any(isinstance(c, nn.MaxPool2d) for c in m.children()))
    mods = list(body)
    order = []
    for i, m in enumerate(mods):  # swap every (MaxPool2d, ReLU) back to (ReLU, MaxPool2d)
        if isinstance(m, nn.ReLU) and i and isinstance(mods[i - 1], nn.MaxPool2d):
            order[-1:] = [m, mods[i - 1]]
        else:
            order.append(m)
    assert order != mods, "no pooled-then-ReLU block found"
    x = torch.randn(6, *shape, requires_grad=True)  # the body comes first in both encoders
    ours = body(x)
    g_ours = torch.autograd.grad(ours.square().sum(), [x, *body.parameters()])
    ref = nn.Sequential(*order)(x)
    g_ref = torch.autograd.grad(ref.square().sum(), [x, *body.parameters()])
    torch.testing.assert_close(ours, ref)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_conv4_pool_first_normalises_the_pooled_map():
    """Each block: conv, 2x2 max-pool, then batch norm over the pooled values, then ReLU;
    checked against the functional ops with the statistics computed by hand."""
    torch.manual_seed(0)
    net = create_encoder("conv4_pool_first", (1, 28, 28), 8).train()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:  # weights away from the identity, so that they are exercised
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.5, 0.5)
    x = torch.randn(5, 1, 28, 28)
    h = x
    for conv, bn in zip(convs, norms, strict=True):
        h = torch.nn.functional.max_pool2d(conv(h), 2, ceil_mode=True)
        mean = h.mean((0, 2, 3), keepdim=True)
        var = h.var((0, 2, 3), unbiased=False, keepdim=True)
        h = (h - mean) / torch.sqrt(var + bn.eps)
        h = torch.relu(h * bn.weight[:, None, None] + bn.bias[:, None, None])
    torch.testing.assert_close(net(x), h.flatten(1), rtol=1e-4, atol=1e-4)
    assert net.num_features == create_encoder("conv4", (1, 28, 28), 8).num_features
