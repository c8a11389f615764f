"""Quality options (issue 16): upsampling layers, multi-scale and spectrally normalised discriminators,
multi-scale GAN losses, feature matching, and the generator-weight EMA."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import tiny_config, write_pairs
from i2i.models.ema import EMA
from i2i.models.losses import GAN_LOSSES, GANLoss, discriminator_loss, feature_matching_loss, gradient_penalty
from i2i.nets import (
    D_NORMS,
    DISCRIMINATORS,
    GENERATORS,
    INITS,
    NORMS,
    UPSAMPLES,
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
)
from i2i.nets.fast import gemm_convolutions
from i2i.nets.layers import (
    PixelShuffleConv2d,
    ResizeConv2d,
    SpectralNormConv2d,
    init_weights,
)
from i2i.nets.patchgan import MultiscaleDiscriminator, PatchDiscriminator
from i2i.training.trainer import train

SIZE = {"unet_64": 64, "resnet_6blocks": 32}
NEW_UPSAMPLES = ("resize", "pixelshuffle")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: extra intra-op threads only fight other processes for the shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _assert_all_params_get_gradients(net: nn.Module, out: torch.Tensor | list[torch.Tensor]) -> None:
    outs = [out] if isinstance(out, torch.Tensor) else out
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# -------------------------------------------------------------------------- defaults keep checkpoints valid

# sha256 of "key:shape:dtype;..." of every registered network at base_channels=4, recorded on the commit
# before these options existed ("none" builds the same modules as "instance").
STATE_DICT_DIGESTS = {
    ("G", "unet_64", "batch"): "a7428e84a0e2110e", ("G", "unet_64", "instance"): "575a83569b977140",
    ("G", "unet_128", "batch"): "f535383ec02c488a", ("G", "unet_128", "instance"): "3ca50ad708db2227",
    ("G", "unet_256", "batch"): "340fa4f55191de7a", ("G", "unet_256", "instance"): "deb7698923229a9c",
    ("G", "resnet_6blocks", "batch"): "a24ea05f764391bc", ("G", "resnet_6blocks", "instance"): "2cd959690a0f96c2",
    ("G", "resnet_9blocks", "batch"): "05e6e1a666304591", ("G", "resnet_9blocks", "instance"): "804d2ee4147eddf8",
    ("D", "basic", "batch"): "90cef4e41aa13868", ("D", "basic", "instance"): "e7cb17adcf6cfc25",
    ("D", "n_layers", "batch"): "90cef4e41aa13868", ("D", "n_layers", "instance"): "e7cb17adcf6cfc25",
    ("D", "pixel", "batch"): "2785e355111ccfbe", ("D", "pixel", "instance"): "dbbed507d6cd2e27",
}


def _digest(net: nn.Module) -> str:
    text = ";".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in net.state_dict().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("kind,name,norm", sorted(STATE_DICT_DIGESTS))
def test_default_options_keep_every_state_dict(kind: str, name: str, norm: str) -> None:
    if kind == "G":
        net = build_generator(GeneratorConfig(name=name, base_channels=4, norm=norm))
    else:
        net = build_discriminator(DiscriminatorConfig(name=name, base_channels=4, norm=norm))
    assert _digest(net) == STATE_DICT_DIGESTS[kind, name, norm]


def test_digest_table_covers_every_old_network() -> None:
    old = {n for _, n, _ in STATE_DICT_DIGESTS}
    assert old == set(GENERATORS) | (set(DISCRIMINATORS) - {"multiscale"})


# ------------------------------------------------------------------------------------------------- upsampling


@pytest.mark.parametrize("upsample", NEW_UPSAMPLES)
@pytest.mark.parametrize("name", sorted(SIZE))
def test_upsampling_shapes_range_and_backward(name: str, upsample: str) -> None:
    s = SIZE[name]
    net = build_generator(GeneratorConfig(name=name, base_channels=4, upsample=upsample))
    out = net(torch.randn(2, 3, s, s + 2 * (8 if name == "resnet_6blocks" else s)))  # non-square too
    assert out.shape[:2] == (2, 3) and out.shape[2] == s and out.abs().max() <= 1.0
    _assert_all_params_get_gradients(net, out)
    assert net.size_multiple == build_generator(GeneratorConfig(name=name, base_channels=4)).size_multiple


@pytest.mark.parametrize("name", sorted(SIZE))
def test_every_upsampling_layer_is_replaced(name: str) -> None:
    """All x2 layers change (the U-Net's output layer too); the speed swap gives the U-Net's deconvs the matmul
    fast path."""
    n_ups = {"unet_64": 6, "resnet_6blocks": 2}[name]
    kinds = {"deconv": nn.ConvTranspose2d,
             "resize": ResizeConv2d, "pixelshuffle": PixelShuffleConv2d}
    for upsample, cls in kinds.items():
        net = build_generator(GeneratorConfig(name=name, base_channels=4, upsample=upsample))
        assert sum(type(m) is cls for m in net.modules()) == n_ups, upsample
        swapped = {ResizeConv2d: "MatmulResizeConv2d", PixelShuffleConv2d: "MatmulPixelShuffleConv2d"}
        gemm_convolutions(net)
        kinds_after = {type(m).__name__ for m in net.modules()}
        assert swapped.get(cls, "ConvTranspose2d" if name != "unet_64" else "MatmulConvTranspose2d") in kinds_after
        if upsample != "deconv":
            assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())


def test_resize_conv_is_nearest_upsampling_then_a_3x3_conv() -> None:
    """Outputs and gradients equal the definition on small maps (upsampled first) and on larger ones
    (computed per output phase at the input's resolution)."""
    layer = ResizeConv2d(5, 3)
    for side in (3, 12):
        x = torch.randn(2, 5, side, side + 1, requires_grad=True)
        ref_x, ref_w, ref_b = (t.detach().clone().requires_grad_(True) for t in (x, layer.weight, layer.bias))
        want = F.conv2d(ref_x.repeat_interleave(2, 2).repeat_interleave(2, 3), ref_w, ref_b, padding=1)
        got = layer(x)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(want)
        (got * g).sum().backward()
        (want * g).sum().backward()
        for ours, ref in ((x, ref_x), (layer.weight, ref_w), (layer.bias, ref_b)):
            torch.testing.assert_close(ours.grad, ref.grad, atol=1e-4, rtol=1e-4)
        layer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x.detach())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), layer(x.detach()), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("init", INITS)
def test_pixel_shuffle_gets_icnr_through_build(init: str) -> None:
    """build_generator allocates on the meta device then runs init_weights: ICNR must come out of that."""
    net = build_generator(GeneratorConfig(name="unet_64", base_channels=4, upsample="pixelshuffle", init=init))
    layers = [m for m in net.modules() if isinstance(m, PixelShuffleConv2d)]
    assert len(layers) == 6
    for m in layers:
        w = m.weight.view(-1, 4, *m.weight.shape[1:])
        assert torch.equal(w, w[:, :1].expand_as(w)), "sub-pixel kernels differ"
        assert w[:, 0].std() > 0
        # so the layer's first output is a nearest upsampling: every 2x2 block constant, no checkerboard
        y = m(torch.randn(1, m.in_channels, 5, 6))
        torch.testing.assert_close(y, F.interpolate(y[:, :, ::2, ::2], scale_factor=2, mode="nearest"))
    if init == "normal":  # the base kernels have the configured spread, as any other conv
        assert layers[0].weight.std().item() == pytest.approx(0.02, rel=0.2)


@pytest.mark.parametrize("upsample", NEW_UPSAMPLES)
def test_upsampling_state_dict_round_trip(upsample: str) -> None:
    cfg = GeneratorConfig(name="unet_64", base_channels=4, upsample=upsample)
    a, b = build_generator(cfg).eval(), build_generator(cfg).eval()
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x))
    plain = build_generator(GeneratorConfig(name="unet_64", base_channels=4))
    with pytest.raises(RuntimeError, match="size mismatch"):  # an upsampling mix-up never loads silently
        plain.load_state_dict(a.state_dict())


def test_bad_generator_options_list_the_choices() -> None:
    with pytest.raises(ValueError) as err:
        build_generator(GeneratorConfig(name="unet_64", base_channels=4, upsample="bicubic"))
    assert "bicubic" in str(err.value) and all(k in str(err.value) for k in UPSAMPLES)
    with pytest.raises(ValueError) as err:  # spectral norm is a discriminator option
        build_generator(GeneratorConfig(name="resnet_6blocks", base_channels=4, norm="spectral"))
    assert "spectral" in str(err.value) and all(k in str(err.value) for k in NORMS)


@pytest.fixture(scope="module")
def upsampling_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("upsampling_export")
    data, runs = write_pairs(tmp / "pairs"), {}
    for upsample in NEW_UPSAMPLES:
        cfg = tiny_config(data, tmp / "runs", name=upsample, max_steps=1)
        cfg.model_config.generator.upsample = upsample
        runs[upsample] = train(cfg, progress=False).run_dir
    return runs


@pytest.mark.parametrize("upsample", NEW_UPSAMPLES)
def test_checkpoint_records_upsampling_and_torchscript_export_matches(
    upsampling_runs: dict[str, Path], upsample: str, tmp_path: Path
) -> None:
    from i2i.translation.export import export
    from i2i.translation.translator import Translator, load_generator

    run = upsampling_runs[upsample]
    net, gen_cfg, *_ = load_generator(run)
    assert gen_cfg.upsample == upsample
    assert any(isinstance(m, ResizeConv2d if upsample == "resize" else PixelShuffleConv2d) for m in net.modules())
    module = torch.jit.load(str(export(run, tmp_path / "g.pt", fmt="torchscript")))
    translator = Translator.from_pretrained(run, precision="fp32")
    for shape in [(1, 3, 64, 64), (2, 3, 100, 70)]:  # 100x70 needs the padded, cropped path (tiling's too)
        x = torch.rand(*shape) * 2 - 1
        with torch.no_grad():
            np.testing.assert_allclose(module(x).numpy(), translator.translate_tensor(x).numpy(), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("upsample", NEW_UPSAMPLES)
def test_onnx_export_matches(upsampling_runs: dict[str, Path], upsample: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need the export extra (onnxruntime)")
    from i2i.translation.export import export
    from i2i.translation.translator import Translator

    run = upsampling_runs[upsample]
    session = ort.InferenceSession(str(export(run, tmp_path / "g.onnx", fmt="onnx")),
                                   providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 80, 96) * 2 - 1
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    expected = Translator.from_pretrained(run, precision="fp32").translate_tensor(x).numpy()
    np.testing.assert_allclose(y, expected, atol=1e-4)


# ------------------------------------------------------------------------------------------- discriminators


@pytest.mark.parametrize("num_d,size,shapes", [(2, 64, [(6, 6), (2, 2)]), (3, 128, [(14, 14), (6, 6), (2, 2)])])
def test_multiscale_logit_maps_and_backward(num_d: int, size: int, shapes: list) -> None:
    net = build_discriminator(DiscriminatorConfig(name="multiscale", base_channels=4, num_d=num_d))
    assert isinstance(net, MultiscaleDiscriminator) and len(net.scales) == num_d
    out = net(torch.randn(2, 6, size, size))
    assert [tuple(o.shape) for o in out] == [(2, 1, *s) for s in shapes]
    _assert_all_params_get_gradients(net, out)


def test_multiscale_scale_k_judges_the_input_pooled_k_times() -> None:
    net = build_discriminator(DiscriminatorConfig(name="multiscale", base_channels=4, num_d=3, norm="none"))
    x = torch.rand(1, 6, 128, 128)
    pooled = [x, F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)]
    pooled.append(F.avg_pool2d(pooled[1], 3, 2, 1, count_include_pad=False))
    corner = pooled[1][0, 0, 0, 0].item()
    assert corner == pytest.approx(x[0, 0, :2, :2].mean().item())  # the corner averages 4 pixels, not 9 with zeros
    for d, x_k, out in zip(net.scales, pooled, net(x), strict=True):
        assert isinstance(d, PatchDiscriminator)
        torch.testing.assert_close(out, d(x_k))
    assert not torch.allclose(net.scales[0].model[0].weight, net.scales[1].model[0].weight)  # independent


@pytest.mark.parametrize("name,num_d,blocks", [("basic", 1, 4), ("n_layers", 1, 3), ("pixel", 1, 2),
                                               ("multiscale", 2, 4)])
def test_features_end_with_the_logits_forward_returns(name: str, num_d: int, blocks: int) -> None:
    net = build_discriminator(DiscriminatorConfig(name=name, base_channels=4, n_layers=2 if name == "n_layers" else 3,
                                                  num_d=num_d, norm="none"))
    x = torch.randn(2, 6, 64, 64)
    feats, out = net.features(x), net(x)
    logits = [out] if isinstance(out, torch.Tensor) else out
    assert len(feats) == num_d
    for scale, want in zip(feats, logits, strict=True):
        assert len(scale) == blocks + 1
        torch.testing.assert_close(scale[-1], want)
        assert all(f.shape[0] == 2 and f.min() < 0 for f in scale[:-1])  # LeakyReLU outputs keep negatives


def test_num_d_belongs_to_the_multiscale_discriminator() -> None:
    with pytest.raises(ValueError, match="num_d"):
        build_discriminator(DiscriminatorConfig(name="basic", base_channels=4, num_d=2))
    with pytest.raises(ValueError, match="num_d"):
        build_discriminator(DiscriminatorConfig(name="multiscale", base_channels=4, num_d=0))
    assert len(build_discriminator(DiscriminatorConfig(name="multiscale", base_channels=4)).scales) == 2


@pytest.mark.parametrize("name", ["basic", "pixel", "multiscale"])
def test_spectral_norm_on_every_conv_and_no_activation_norm(name: str) -> None:
    num_d = 2 if name == "multiscale" else 1
    net = build_discriminator(DiscriminatorConfig(name=name, base_channels=4, norm="spectral", num_d=num_d))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, SpectralNormConv2d) for m in convs)
    assert all(m.bias is not None for m in convs)  # no BatchNorm shift to replace it
    assert not any(isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) for m in net.modules())
    out = net(torch.randn(2, 6, 64, 64))
    _assert_all_params_get_gradients(net, out)
    assert "spectral" in D_NORMS


def test_spectral_norm_divides_by_the_largest_singular_value() -> None:
    layer = init_weights(SpectralNormConv2d(6, 8, 4, stride=2, padding=1), "normal", 0.5)
    sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), 2)
    assert sigma > 1.5  # so the division is visible
    norms = []
    for _ in range(100):  # training-mode calls refine the estimate, from below (u^T W v <= sigma_max)
        norms.append(torch.linalg.matrix_norm(layer.normalised_weight().detach().flatten(1), 2).item())
    assert all(n >= 1.0 - 1e-6 for n in norms) and norms[-1] == pytest.approx(1.0, abs=1e-3)
    x = torch.randn(2, 6, 16, 16)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight / sigma, layer.bias, stride=2, padding=1),
                               atol=1e-4, rtol=1e-3)
    # the gradient flows through the weight only (u, v are constants) and matches torch's own spectral_norm
    ref = nn.utils.parametrizations.spectral_norm(nn.Conv2d(6, 8, 4, stride=2, padding=1))
    with torch.no_grad():
        ref.parametrizations.weight.original.copy_(layer.weight)
        ref.bias.copy_(layer.bias)
        ref.parametrizations.weight[0]._u.copy_(layer.weight_u)
    layer.eval()
    ref.eval()
    ref.parametrizations.weight[0]._v.copy_(F.normalize(layer.weight.detach().flatten(1).T @ layer.weight_u, dim=0))
    layer(x).square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, ref.parametrizations.weight.original.grad, atol=1e-4, rtol=1e-3)


def test_spectral_norm_power_iteration_state() -> None:
    layer = init_weights(SpectralNormConv2d(3, 4, 3), "normal", 0.02)
    assert set(layer.state_dict()) == {"weight", "bias", "weight_u"}
    u0 = layer.weight_u.clone()
    assert u0.norm().item() == pytest.approx(1.0)
    layer.eval()
    layer(torch.randn(1, 3, 8, 8))
    assert torch.equal(layer.weight_u, u0)  # eval leaves u alone
    layer.train()
    with torch.no_grad():
        layer.weight.mul_(-1).add_(torch.randn_like(layer.weight) * 0.02)  # a new weight: u must move
    layer(torch.randn(1, 3, 8, 8))
    assert not torch.equal(layer.weight_u, u0)
    twin = SpectralNormConv2d(3, 4, 3)
    twin.load_state_dict(layer.state_dict())
    torch.testing.assert_close(twin.eval()(torch.ones(1, 3, 8, 8)), layer.eval()(torch.ones(1, 3, 8, 8)))


def test_spectral_norm_in_bf16_autocast() -> None:
    layer = init_weights(SpectralNormConv2d(6, 8, 4, stride=2, padding=1), "normal", 0.5)
    x = torch.randn(2, 6, 16, 16)
    want = layer.eval()(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
    assert got.dtype == torch.bfloat16 and layer.weight_u.dtype == torch.float32
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


# ------------------------------------------------------------------------------------- losses at many scales


@pytest.mark.parametrize("kind", GAN_LOSSES)
@pytest.mark.parametrize("for_discriminator", [True, False])
def test_gan_loss_of_scales_is_the_mean_of_per_scale_losses(kind: str, for_discriminator: bool) -> None:
    loss = GANLoss(kind)
    preds = [torch.randn(2, 1, 6, 6), torch.randn(2, 1, 2, 2).to(torch.bfloat16)]
    for real in (True, False):
        want = (loss(preds[0], real, for_discriminator) + loss(preds[1], real, for_discriminator)) / 2
        got = loss(preds, real, for_discriminator)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(loss([preds[0]], True), loss(preds[0], True))


def test_spectral_critic_takes_one_power_step_per_pass() -> None:
    critic = build_discriminator(DiscriminatorConfig(name="basic", base_channels=4, norm="spectral"))
    twin = copy.deepcopy(critic)
    real, fake = torch.randn(2, 6, 64, 64), torch.randn(2, 6, 64, 64)
    discriminator_loss(GANLoss("hinge"), critic, real, fake)
    twin(real)  # one call: one step, whatever the batch holds
    for (name, a), b in zip(critic.named_buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


class _LinearCritic(nn.Module):
    """Scale k returns sum(w_k * x) per sample: its input gradient is w_k everywhere."""

    def __init__(self, norms: list[float]) -> None:
        super().__init__()
        ws = [torch.randn(3, 4, 4) for _ in norms]
        self.ws = nn.ParameterList(nn.Parameter(w / w.norm() * n) for w, n in zip(ws, norms, strict=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [(x * w).flatten(1).sum(1) for w in self.ws]


def test_gradient_penalty_of_a_multiscale_critic_averages_per_scale_penalties() -> None:
    critic = _LinearCritic([0.5, 3.0])
    gp = gradient_penalty(critic, torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4), weight=10.0)
    assert gp.item() == pytest.approx(10.0 * ((0.5 - 1) ** 2 + (3.0 - 1) ** 2) / 2, rel=1e-4)
    gp.backward()  # create_graph: trains every scale
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in critic.ws)


def test_wgangp_discriminator_loss_with_multiscale_critic() -> None:
    critic = build_discriminator(DiscriminatorConfig(name="multiscale", base_channels=4, num_d=2, norm="none"))
    out = discriminator_loss(GANLoss("wgangp"), critic, torch.randn(2, 6, 64, 64), torch.randn(2, 6, 64, 64))
    assert set(out) == {"loss", "real", "fake", "gp"} and out["gp"] > 0
    out["loss"].backward()


def test_feature_matching_loss_is_pix2pixhd_weighted_l1() -> None:
    # two scales of 2 blocks + logits; |real - fake| = const per block
    def feats(offsets: list[list[float]]) -> list[list[torch.Tensor]]:
        return [[torch.full((2, 3, 4, 4), o) for o in scale] + [torch.randn(2, 1, 2, 2)] for scale in offsets]

    real = feats([[0.0, 0.0], [0.0, 0.0]])
    fake = [[t.clone().requires_grad_(True) for t in s] for s in feats([[1.0, 3.0], [0.5, 0.5]])]
    real_leaf = real[0][0].requires_grad_(True)
    loss = feature_matching_loss(real, fake)
    # per scale: 4 / L * sum over L blocks = 4 * mean; logits ignored; mean over the scales
    assert loss.item() == pytest.approx((4 * (1 + 3) / 2 + 4 * 0.5) / 2)
    loss.backward()
    assert real_leaf.grad is None  # the real features are targets
    assert fake[0][0].grad is not None and fake[0][-1].grad is None  # logits not matched
    assert feature_matching_loss(real, real).item() == 0.0
    with pytest.raises(ValueError, match="scales"):
        feature_matching_loss(real, fake[:1])


def test_feature_matching_loss_on_a_discriminator_in_bf16() -> None:
    critic = build_discriminator(DiscriminatorConfig(name="multiscale", base_channels=4, num_d=2))
    real, fake = torch.randn(2, 6, 64, 64), torch.randn(2, 6, 64, 64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = feature_matching_loss(critic.features(real), critic.features(fake))
    assert loss.dtype == torch.float32 and loss.dim() == 0 and loss > 0
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------------- EMA


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))


def _perturb(net: nn.Module) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.train()(torch.randn(4, 2, 5, 5))  # moves the BatchNorm running statistics


def test_ema_decay_zero_copies_and_one_freezes() -> None:
    net = _net()
    copy_ema, frozen = EMA(net, decay=0.0), EMA(net, decay=1.0, debias=False)
    start = copy.deepcopy(net.state_dict())
    _perturb(net)
    copy_ema.update()
    frozen.update()
    for key, value in net.state_dict().items():
        assert torch.equal(copy_ema.state_dict()[key], value), key
    for (key, value), p in zip(frozen.module.named_parameters(), net.parameters(), strict=True):
        assert torch.equal(value, start[key]) and not torch.equal(value, p), key
    assert torch.equal(frozen.state_dict()["1.running_mean"], net.state_dict()["1.running_mean"])  # copied


@pytest.mark.parametrize("debias", [False, True])
def test_ema_hand_computed_steps(debias: bool) -> None:
    net = _net()
    ema = EMA(net, decay=0.9, debias=debias)
    theta = [copy.deepcopy(net[0].weight.detach())]
    for _ in range(2):
        _perturb(net)
        ema.update()
        theta.append(net[0].weight.detach().clone())
    # debias: the decay-weighted mean of the weights after updates 1 and 2, (0.9 t1 + t2) / 1.9; else
    # shadow <- 0.9 shadow + 0.1 live from the initial weights
    debiased, plain = (0.9 * theta[1] + theta[2]) / 1.9, 0.9 * (0.9 * theta[0] + 0.1 * theta[1]) + 0.1 * theta[2]
    want = debiased if debias else plain
    torch.testing.assert_close(ema.module[0].weight, want)
    assert ema.num_updates == 2
    assert ema.update_weight() == pytest.approx(0.1 / (1 - 0.9**3) if debias else 0.1)


def test_ema_state_dict_loads_into_the_network_and_resumes() -> None:
    net = _net()
    ema = EMA(net, decay=0.5)
    _perturb(net)
    ema.update()
    state = ema.state_dict()
    assert state.keys() == net.state_dict().keys()
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    fresh = _net()
    ema.copy_to(fresh)
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value)
    resumed = EMA(_net(), decay=0.5)
    resumed.load_state_dict(state, num_updates=ema.num_updates)
    assert resumed.num_updates == 1 and resumed.update_weight() == ema.update_weight()
    with pytest.raises(ValueError, match="decay"):
        EMA(net, decay=1.5)
