"""Tests for i2i.nets: generator/discriminator shapes, gradients, norms, init, reference parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from i2i.nets import (
    DISCRIMINATORS,
    GENERATORS,
    INITS,
    NORMS,
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
)
from i2i.nets.layers import init_weights
from i2i.nets.patchgan import PatchDiscriminator
from i2i.nets.resnet import ResnetGenerator
from i2i.nets.unet import UNetGenerator

# smallest valid square size per generator; the U-Nets need 2**num_downs, the ResNets multiples of 4
VALID_SIZE = {"unet_64": 64, "unet_128": 128, "unet_256": 256, "resnet_6blocks": 32, "resnet_9blocks": 32}
NUM_DOWNS = {"unet_64": 6, "unet_128": 7, "unet_256": 8}
CONVS = (nn.Conv2d, nn.ConvTranspose2d)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: intra-op threads only add overhead, and on a busy 2-core machine OpenMP
    threads fighting other processes made this module ~10x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _leaves(net: nn.Module) -> list[nn.Module]:
    """Leaf modules in registration (= forward, for these Sequential-built nets) order."""
    return [m for m in net.modules() if not list(m.children())]


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _assert_all_params_get_gradients(net: nn.Module, out: torch.Tensor) -> None:
    # a random projection avoids symmetric losses whose gradients cancel exactly
    (out * torch.randn_like(out)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


# ------------------------------------------------------------------------------------------------ generators


def test_every_registered_generator_has_a_test_size() -> None:
    assert set(GENERATORS) == set(VALID_SIZE), "a generator was (un)registered: update VALID_SIZE"


@pytest.mark.parametrize("name", sorted(VALID_SIZE))
def test_generator_shape_range_and_backward(name: str) -> None:
    s = VALID_SIZE[name]
    net = build_generator(GeneratorConfig(name=name, base_channels=4))
    x = torch.randn(2, 3, s, s)
    out = net(x)
    assert out.shape == (2, 3, s, s)
    assert out.abs().max() <= 1.0  # tanh head
    _assert_all_params_get_gradients(net, out)


@pytest.mark.parametrize("name,h,w", [("unet_64", 64, 128), ("resnet_6blocks", 32, 48)])
def test_generator_non_square(name: str, h: int, w: int) -> None:
    net = build_generator(GeneratorConfig(name=name, base_channels=4))
    assert net(torch.randn(2, 3, h, w)).shape == (2, 3, h, w)


@pytest.mark.parametrize("name", ["unet_64", "resnet_6blocks"])
@pytest.mark.parametrize("c_in,c_out", [(1, 1), (1, 3), (3, 1)])
def test_generator_channel_counts(name: str, c_in: int, c_out: int) -> None:
    s = VALID_SIZE[name]
    net = build_generator(GeneratorConfig(name=name, in_channels=c_in, out_channels=c_out, base_channels=4))
    out = net(torch.randn(2, c_in, s, s))
    assert out.shape == (2, c_out, s, s)
    _assert_all_params_get_gradients(net, out)
    with pytest.raises(RuntimeError):  # the wrong channel count is not silently accepted
        net(torch.randn(2, 3 if c_in == 1 else 1, s, s))


@pytest.mark.parametrize("name,bad", [("unet_64", (48, 64)), ("unet_64", (64, 96)), ("unet_128", (64, 64))])
def test_unet_rejects_non_divisible_sizes(name: str, bad: tuple[int, int]) -> None:
    net = build_generator(GeneratorConfig(name=name, base_channels=4))
    with pytest.raises(ValueError) as err:
        net(torch.randn(1, 3, *bad))
    msg = str(err.value)
    assert str(2 ** NUM_DOWNS[name]) in msg
    assert str(bad) in msg


def test_resnet_rejects_non_multiple_of_4() -> None:
    net = build_generator(GeneratorConfig(name="resnet_6blocks", base_channels=4))
    with pytest.raises(ValueError, match=r"\(30, 32\)"):
        net(torch.randn(1, 3, 30, 32))


def test_unet_size_multiple() -> None:
    for name, n in NUM_DOWNS.items():
        assert build_generator(GeneratorConfig(name=name, base_channels=4)).size_multiple == 2**n


# ------------------------------------------------------------------------ U-Net equals the reference wiring


class _RefUnetBlock(nn.Module):
    """A compact re-statement of the reference pix2pix UnetSkipConnectionBlock (in-place activations kept)."""

    def __init__(self, outer: int, inner: int, in_ch: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        in_ch = outer if in_ch is None else in_ch
        self.downconv = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)
        if not outermost:
            self.upnorm = nn.BatchNorm2d(outer)
        if not (outermost or innermost):
            self.downnorm = nn.BatchNorm2d(inner)
        if outermost:
            self.upconv = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            layers = [self.downconv, sub, nn.ReLU(True), self.upconv, nn.Tanh()]
        elif innermost:
            self.upconv = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False)
            layers = [nn.LeakyReLU(0.2, True), self.downconv, nn.ReLU(True), self.upconv, self.upnorm]
        else:
            self.upconv = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False)
            layers = [nn.LeakyReLU(0.2, True), self.downconv, self.downnorm, sub, nn.ReLU(True), self.upconv,
                      self.upnorm]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def _reference_unet(c_in: int, c_out: int, num_downs: int, ngf: int) -> tuple[nn.Module, list[_RefUnetBlock]]:
    block = _RefUnetBlock(ngf * 8, ngf * 8, innermost=True)
    blocks = [block]
    for _ in range(num_downs - 5):
        block = _RefUnetBlock(ngf * 8, ngf * 8, sub=block, dropout=True)
        blocks.append(block)
    for outer, inner in ((ngf * 4, ngf * 8), (ngf * 2, ngf * 4), (ngf, ngf * 2)):
        block = _RefUnetBlock(outer, inner, sub=block)
        blocks.append(block)
    block = _RefUnetBlock(c_out, ngf, in_ch=c_in, sub=block, outermost=True)
    blocks.append(block)
    return block, blocks[::-1]  # outermost first


def test_unet_matches_reference_forward() -> None:
    """Same weights in, same output out: catches concat order, skip levels and wiring."""
    num_downs, ngf = 6, 4
    ours = UNetGenerator(3, 2, num_downs, ngf, "batch", dropout=True)
    init_weights(ours, "normal", 0.5)  # large weights so a wrong wiring changes the output visibly
    ref, blocks = _reference_unet(3, 2, num_downs, ngf)
    assert _n_params(ref) == _n_params(ours)
    with torch.no_grad():
        pairs = [(blocks[0].downconv, ours.stem), (blocks[0].upconv, ours.head[1])]
        for i in range(1, num_downs):
            pairs.append((blocks[i].downconv, ours.downs[i - 1][0]))
            if i < num_downs - 1:
                pairs.append((blocks[i].downnorm, ours.downs[i - 1][1]))
            k = num_downs - 1 - i  # decoder index: innermost first
            pairs += [(blocks[i].upconv, ours.ups[k][1]), (blocks[i].upnorm, ours.ups[k][2])]
        for r, o in pairs:
            r.load_state_dict(o.state_dict())
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, 64, 64)
    expected = ref(x.clone())
    torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-5)
    assert expected.std() > 0.05  # not a saturated/constant output that would match anything


# ------------------------------------------------------------------------------------------- discriminators


def test_every_registered_discriminator_is_tested() -> None:
    assert set(DISCRIMINATORS) == {"basic", "n_layers", "pixel", "multiscale"}  # multiscale: test_quality_nets.py


@pytest.mark.parametrize(
    "name,n_layers,size,expected",
    [
        ("basic", 3, (256, 256), (30, 30)),  # the paper's 70x70 PatchGAN on 256x256
        ("basic", 3, (64, 96), (6, 10)),
        ("n_layers", 1, (64, 64), (30, 30)),
        ("n_layers", 2, (64, 64), (14, 14)),
        ("n_layers", 4, (128, 128), (6, 6)),
        ("pixel", 3, (32, 48), (32, 48)),
    ],
)
def test_discriminator_patch_map_and_backward(name: str, n_layers: int, size: tuple, expected: tuple) -> None:
    net = build_discriminator(DiscriminatorConfig(name=name, in_channels=6, base_channels=4, n_layers=n_layers))
    out = net(torch.randn(2, 6, *size))
    assert out.shape == (2, 1, *expected)
    _assert_all_params_get_gradients(net, out)


def test_n_layers_depth_changes_the_network() -> None:
    counts = [sum(isinstance(m, nn.Conv2d) for m in _leaves(PatchDiscriminator(6, 4, n, "batch"))) for n in (1, 3, 5)]
    assert counts == [3, 5, 7]  # first conv + n_layers convs + the 1-channel head
    with pytest.raises(ValueError):
        PatchDiscriminator(6, 4, 0)


def test_basic_receptive_field_is_70() -> None:
    """The centre logit of basic PatchGAN depends on exactly a 70x70 input window."""
    net = PatchDiscriminator(1, 4, 3, "none")
    init_weights(net, "normal", 0.5)
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


# ------------------------------------------------------------------------------------------ norms and bias


def _nets_with_norm(norm: str) -> list[nn.Module]:
    return [
        build_generator(GeneratorConfig(name="unet_64", base_channels=4, norm=norm)),
        build_generator(GeneratorConfig(name="resnet_6blocks", base_channels=4, norm=norm)),
        build_discriminator(DiscriminatorConfig(name="basic", base_channels=4, norm=norm)),
        build_discriminator(DiscriminatorConfig(name="pixel", base_channels=4, norm=norm)),
    ]


@pytest.mark.parametrize("norm", NORMS)
def test_norm_layer_types(norm: str) -> None:
    # networks are plain PyTorch (the trainer swaps in SplitBatchNorm2d: i2i/nets/fast.py)
    expected = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "none": None}[norm]
    for net in _nets_with_norm(norm):
        kinds = {type(m) for m in _leaves(net) if isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d)}
        assert kinds == ({expected} if expected else set()), type(net).__name__
        for m in _leaves(net):
            if isinstance(m, nn.InstanceNorm2d):
                assert not m.affine and not m.track_running_stats  # as in the reference


@pytest.mark.parametrize("norm", NORMS)
def test_conv_bias_off_only_with_batch_norm(norm: str) -> None:
    for net in _nets_with_norm(norm):
        leaves = _leaves(net)
        for i, m in enumerate(leaves):
            if not isinstance(m, CONVS):
                continue
            nxt = leaves[i + 1] if i + 1 < len(leaves) else None
            if isinstance(nxt, nn.BatchNorm2d):
                assert m.bias is None, f"{type(net).__name__}: conv before BatchNorm keeps a bias"
            if norm != "batch":
                assert m.bias is not None, f"{type(net).__name__}: conv without BatchNorm lost its bias"


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_runs_forward(norm: str) -> None:
    g = build_generator(GeneratorConfig(name="unet_64", base_channels=4, norm=norm))
    d = build_discriminator(DiscriminatorConfig(name="basic", base_channels=4, norm=norm))
    y = g(torch.randn(2, 3, 64, 64))
    assert d(torch.cat([y, y], 1)).shape == (2, 1, 6, 6)


# ------------------------------------------------------------------------------------------------------ init


@pytest.mark.parametrize("kind", INITS)
def test_each_init_runs_and_zeroes_biases(kind: str) -> None:
    net = build_generator(GeneratorConfig(name="resnet_6blocks", base_channels=4, norm="instance", init=kind))
    for m in net.modules():
        if isinstance(m, CONVS):
            assert torch.isfinite(m.weight).all()
            assert m.bias is None or torch.count_nonzero(m.bias) == 0
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_normal_init_std_is_gain() -> None:
    net = build_generator(GeneratorConfig(name="unet_64", base_channels=16, init="normal", init_gain=0.02))
    w = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, CONVS)])
    assert w.numel() > 1_000_000
    assert abs(w.std().item() - 0.02) < 0.0005
    assert abs(w.mean().item()) < 0.0005
    bn = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 0.01 and bn.std().item() < 0.05  # BN scales ~ N(1, gain)
    assert all(torch.count_nonzero(m.bias) == 0 for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_init_gain_is_used() -> None:
    layer = nn.Conv2d(128, 128, 4)
    init_weights(layer, "normal", 0.1)
    assert abs(layer.weight.std().item() - 0.1) < 0.003
    init_weights(layer, "kaiming")
    fan_in = 128 * 16
    assert abs(layer.weight.std().item() - (2 / fan_in) ** 0.5) < 0.002
    init_weights(layer, "orthogonal", 0.5)
    flat = layer.weight.flatten(1)  # 128 x 2048: rows orthogonal, scaled by gain
    torch.testing.assert_close(flat @ flat.T, 0.25 * torch.eye(128), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", [*GENERATORS, *DISCRIMINATORS])
def test_built_networks_hold_no_uninitialised_memory(name: str) -> None:
    """Networks are allocated empty and filled by init_weights: every parameter and buffer must be set."""
    if name in GENERATORS:
        net = build_generator(GeneratorConfig(name=name, base_channels=4, norm="batch"))
    else:
        net = build_discriminator(DiscriminatorConfig(name=name, base_channels=4, norm="batch"))
    for key, value in [*net.named_parameters(), *net.named_buffers()]:
        assert torch.isfinite(value.float()).all(), key
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
        assert bn.num_batches_tracked.item() == 0


def test_init_refuses_modules_it_cannot_initialise() -> None:
    with pytest.raises(TypeError, match="GroupNorm"):
        init_weights(nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4)))


def test_unknown_init_lists_choices() -> None:
    with pytest.raises(ValueError) as err:
        build_generator(GeneratorConfig(name="unet_64", base_channels=4, init="uniform"))
    assert "uniform" in str(err.value) and all(k in str(err.value) for k in INITS)


# ------------------------------------------------------------------------------- reference parameter counts


def test_reference_parameter_counts() -> None:
    """Published pix2pix/CycleGAN counts (full-size defaults): any architecture drift changes them."""
    unet = GENERATORS["unet_256"](GeneratorConfig(name="unet_256", norm="batch"))
    assert _n_params(unet) == 54_413_955
    del unet
    resnet = GENERATORS["resnet_9blocks"](GeneratorConfig(name="resnet_9blocks", norm="instance", dropout=False))
    assert _n_params(resnet) == 11_378_179
    d = DISCRIMINATORS["basic"](DiscriminatorConfig(name="basic", in_channels=6, norm="batch"))
    assert _n_params(d) == 2_768_705


def test_defaults_are_the_pix2pix_ones() -> None:
    g, d = GeneratorConfig(), DiscriminatorConfig()
    assert (g.name, g.base_channels, g.norm, g.dropout, g.init, g.init_gain) == ("unet_256", 64, "batch", True,
                                                                                 "normal", 0.02)
    assert (d.name, d.in_channels, d.base_channels, d.n_layers, d.norm) == ("basic", 6, 64, 3, "batch")


# --------------------------------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("name", sorted(NUM_DOWNS))
@pytest.mark.parametrize("dropout", [True, False])
def test_unet_dropout_blocks(name: str, dropout: bool) -> None:
    net = build_generator(GeneratorConfig(name=name, base_channels=4, dropout=dropout))
    with_dropout = [k for k, up in enumerate(net.ups) if any(isinstance(m, nn.Dropout) for m in up.modules())]
    n = NUM_DOWNS[name]
    assert with_dropout == (list(range(1, n - 4)) if dropout else [])  # the n-5 blocks after the innermost
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == (n - 5 if dropout else 0)


def test_dropout_active_in_train_only() -> None:
    net = build_generator(GeneratorConfig(name="unet_128", base_channels=4, dropout=True))
    x = torch.randn(2, 3, 128, 128)
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_resnet_dropout_per_block() -> None:
    on = ResnetGenerator(3, 3, 6, 4, "instance", dropout=True)
    off = ResnetGenerator(3, 3, 6, 4, "instance", dropout=False)
    assert sum(isinstance(m, nn.Dropout) for m in on.modules()) == 6
    assert sum(isinstance(m, nn.Dropout) for m in off.modules()) == 0


# ---------------------------------------------------------------------------------------------- bad names


def test_unknown_generator_lists_choices() -> None:
    with pytest.raises(ValueError) as err:
        build_generator(GeneratorConfig(name="unet_512"))
    assert "unet_512" in str(err.value)
    assert all(name in str(err.value) for name in GENERATORS)


def test_unknown_discriminator_lists_choices() -> None:
    with pytest.raises(ValueError) as err:
        build_discriminator(DiscriminatorConfig(name="global"))
    assert "global" in str(err.value)
    assert all(name in str(err.value) for name in DISCRIMINATORS)


@pytest.mark.parametrize("build", ["g", "d"])
def test_unknown_norm_lists_choices(build: str) -> None:
    with pytest.raises(ValueError) as err:
        if build == "g":
            build_generator(GeneratorConfig(name="unet_64", base_channels=4, norm="group"))
        else:
            build_discriminator(DiscriminatorConfig(base_channels=4, norm="group"))
    assert "group" in str(err.value) and all(k in str(err.value) for k in NORMS)
