"""Tests for the matmul-backed convolutions in i2i.nets.layers: same maths as torch's, used only when eager on CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from i2i.nets import fast
from i2i.nets.fast import (
    GEMM_MAX_POSITIONS,
    MatmulConv2d,
    MatmulConvTranspose2d,
    SplitBatchNorm2d,
    separate_batches,
)


def _grads(layer: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    out = layer(x)
    (out * weights).sum().backward()
    grads = [x.grad, layer.weight.grad] + ([] if layer.bias is None else [layer.bias.grad])
    return [out.detach(), *grads]


@pytest.fixture
def count_gemm(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each time the matmul formulation (unfold for convs, fold for transposed convs) runs."""
    calls: list[str] = []
    unfold, fold = F.unfold, F.fold
    monkeypatch.setattr(fast.F, "unfold", lambda *a, **k: calls.append("unfold") or unfold(*a, **k))
    monkeypatch.setattr(fast.F, "fold", lambda *a, **k: calls.append("fold") or fold(*a, **k))
    return calls


# (our layer, torch's, channels in, channels out, the matmul path's marker, input sizes per stride/padding)
PAIRS = [
    (MatmulConv2d, nn.Conv2d, 5, 7, "unfold", {(2, 1): (6, 10), (1, 1): (5, 4), (2, 0): (8, 8)}),
    (MatmulConvTranspose2d, nn.ConvTranspose2d, 6, 3, "fold", {(2, 1): (3, 5), (1, 1): (4, 4), (2, 0): (2, 2)}),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("stride,padding", [(2, 1), (1, 1), (2, 0)])
@pytest.mark.parametrize("ours_cls,ref_cls,c_in,c_out,marker,sizes", PAIRS, ids=["conv", "transposed"])
def test_matches_torch_forward_and_backward(
    count_gemm: list[str], ours_cls: type, ref_cls: type, c_in: int, c_out: int, marker: str,
    sizes: dict, stride: int, padding: int, bias: bool,
) -> None:
    torch.manual_seed(0)
    ours = ours_cls(c_in, c_out, 4, stride=stride, padding=padding, bias=bias)
    ref = ref_cls(c_in, c_out, 4, stride=stride, padding=padding, bias=bias)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, c_in, *sizes[stride, padding])
    w = torch.randn(ref(x).shape)
    for got, want in zip(_grads(ours, x, w), _grads(ref, x, w), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert count_gemm == [marker]


def test_bf16_autocast_stays_close_to_fp32() -> None:
    torch.manual_seed(0)
    conv, up = MatmulConv2d(64, 32, 4, 2, 1), MatmulConvTranspose2d(32, 16, 4, 2, 1)
    x = torch.randn(1, 64, 8, 8)
    want = up(conv(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = up(conv(x))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


def test_large_maps_use_torch_convolution(count_gemm: list[str]) -> None:
    side = int(GEMM_MAX_POSITIONS**0.5) * 2 + 2  # output (conv) and input (transposed) above the limit
    MatmulConv2d(3, 4, 4, 2, 1)(torch.randn(1, 3, 2 * side, 2 * side))
    MatmulConvTranspose2d(3, 4, 4, 2, 1)(torch.randn(1, 3, side, side))
    assert count_gemm == []


def test_the_limit_counts_positions_of_the_whole_batch(count_gemm: list[str]) -> None:
    side = int(GEMM_MAX_POSITIONS**0.5)  # one image at the limit, two above it
    MatmulConv2d(3, 4, 4, 2, 1)(torch.randn(1, 3, 2 * side, 2 * side))
    assert count_gemm == ["unfold"]
    MatmulConv2d(3, 4, 4, 2, 1)(torch.randn(2, 3, 2 * side, 2 * side))
    MatmulConvTranspose2d(3, 4, 4, 2, 1)(torch.randn(2, 3, side, side))
    assert count_gemm == ["unfold"]


def test_traced_graphs_keep_the_standard_op(count_gemm: list[str]) -> None:
    """Exported/traced models must stay plain convolutions (portable, shape-generic)."""
    net = nn.Sequential(MatmulConv2d(3, 4, 4, 2, 1), MatmulConvTranspose2d(4, 3, 4, 2, 1)).eval()
    x = torch.randn(1, 3, 8, 8)
    traced = torch.jit.trace(net, x, check_trace=False)
    assert count_gemm == []
    assert "im2col" not in str(traced.inlined_graph) and "_convolution" in str(traced.inlined_graph)
    torch.testing.assert_close(traced(x), net(x), atol=1e-5, rtol=1e-5)


def test_state_dicts_are_the_standard_ones() -> None:
    """Checkpoints stay loadable into plain torch layers (and the reference code)."""
    ours, ref = MatmulConvTranspose2d(4, 3, 4, 2, 1), nn.ConvTranspose2d(4, 3, 4, 2, 1)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(ours.state_dict())


def test_separate_batches_normalises_each_sub_batch_on_its_own() -> None:
    torch.manual_seed(0)
    bn, twin = SplitBatchNorm2d(3), SplitBatchNorm2d(3)
    a, b = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5) * 3 + 1
    with separate_batches(nn.Sequential(bn), 2):
        both = bn(torch.cat([a, b]))
    torch.testing.assert_close(both, torch.cat([twin(a), twin(b)]))
    torch.testing.assert_close(bn.running_mean, twin.running_mean)
    torch.testing.assert_close(bn.running_var, twin.running_var)
    assert bn.splits == 1  # restored: outside the block the whole batch shares statistics again
    mixed = bn(torch.cat([a, b]))
    assert not torch.allclose(mixed, both, atol=1e-3)
