import pytest
import torch
from torch.nn import functional as F

from gankit.models import strided_conv
from gankit.models.strided_conv import StridedConv2d, StridedConvTranspose2d, _StridedConv


@pytest.mark.parametrize("transposed, c_in, c_out", [(False, 3, 4), (True, 3, 4), (False, 1, 4), (True, 3, 1)])
def test_gradients_and_second_order_gradients_are_exact(transposed, c_in, c_out):
    torch.manual_seed(0)
    side = 3 if transposed else 6  # the smaller map is 3×3 either way
    x = torch.randn(2, c_in, side, side, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(
        *((c_in, c_out) if transposed else (c_out, c_in)), 4, 4, dtype=torch.float64, requires_grad=True
    )
    bias = torch.randn(c_out, dtype=torch.float64, requires_grad=True)

    def conv(x, weight, bias):
        return _StridedConv.apply(x, weight, bias, transposed)

    assert torch.autograd.gradcheck(conv, (x, weight, bias))
    assert torch.autograd.gradgradcheck(conv, (x, weight, bias))  # the gradient penalty differentiates twice


@pytest.mark.parametrize(
    "layer, side", [(StridedConv2d, 8), (StridedConv2d, 16), (StridedConvTranspose2d, 4), (StridedConvTranspose2d, 8)]
)
def test_bf16_weight_gradient_matches_onednn_and_takes_the_matrix_product(layer, side, monkeypatch):
    torch.manual_seed(0)
    calls, original = [], strided_conv.patch_weight_grad
    monkeypatch.setattr(strided_conv, "patch_weight_grad", lambda *a: calls.append(1) or original(*a))
    module = layer(16, 32).to(memory_format=torch.channels_last)
    x = torch.randn(8, 16, side, side).contiguous(memory_format=torch.channels_last)
    reference = F.conv_transpose2d if layer is StridedConvTranspose2d else F.conv2d
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x)
        expected_y = reference(x, module.weight, module.bias, stride=2, padding=1)
    grad = torch.randn_like(y)
    w_ref = module.weight.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ref = reference(x, w_ref, module.bias.detach(), stride=2, padding=1)
    (y * grad).sum().backward()
    (y_ref * grad).sum().backward()
    assert calls, "the matrix-product weight gradient was not used"
    assert torch.equal(y, expected_y)
    scale = w_ref.grad.abs().max()
    assert (module.weight.grad - w_ref.grad).abs().max() / scale < 1e-2  # bf16 rounding of the same sums
    assert torch.allclose(module.bias.grad, grad.float().sum((0, 2, 3)), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (8, 8), (4, 7)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_transposed_convolution_to_one_channel_matches_torch(shape, channels_last):
    torch.manual_seed(0)
    x, weight = torch.randn(3, 6, *shape, dtype=torch.float64), torch.randn(6, 1, 4, 4, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = F.conv_transpose2d(x, weight, stride=2, padding=1)
    assert torch.allclose(strided_conv.transposed_to_one_channel(x, weight), expected, atol=1e-12)


def test_fp32_and_large_maps_keep_onednn(monkeypatch):
    monkeypatch.setattr(strided_conv, "patch_weight_grad", lambda *a: pytest.fail("matrix product used"))
    module = StridedConv2d(4, 8)
    module(torch.randn(2, 4, 8, 8)).sum().backward()  # fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        module(torch.randn(2, 4, 32, 32)).sum().backward()  # a 16×16 output map
        StridedConvTranspose2d(4, 8)(torch.randn(2, 4, 16, 16)).sum().backward()  # a 16×16 input map


@pytest.mark.parametrize("side", [7, 8])
def test_one_channel_input_gradient_matches_torch_for_odd_and_even_sides(side):
    torch.manual_seed(0)
    module = StridedConv2d(1, 4)
    x = torch.randn(2, 1, side, side, requires_grad=True)
    y = module(x)
    (grad_x,) = torch.autograd.grad(y, x, torch.ones_like(y))
    (expected,) = torch.autograd.grad(
        F.conv2d(x, module.weight, module.bias, stride=2, padding=1), x, torch.ones_like(y)
    )
    assert torch.allclose(grad_x, expected, atol=1e-5)
