"""The oneDNN-routed Conv3d equals nn.Conv3d in outputs and gradients, and keeps its state-dict keys."""
import pytest
import torch
from torch import nn

from fusionocc_core.model.conv3d import Conv3d


@pytest.mark.parametrize("in_channels, out_channels, stride, bias", [(4, 4, 1, False), (3, 8, 2, True),
                                                                     (12, 8, 1, False), (16, 16, 1, False),
                                                                     (16, 32, 2, True)])
def test_matches_nn_conv3d_outputs_and_gradients(in_channels, out_channels, stride, bias):
    torch.manual_seed(0)
    reference = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
    ours = Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, in_channels, 6, 10, 12, requires_grad=True)
    y_ref, y = reference(x), ours(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(y)
    g_ref = torch.autograd.grad(y_ref, (x, reference.weight), grad)
    g = torch.autograd.grad(y, (x, ours.weight), grad)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert list(ours.state_dict()) == list(reference.state_dict())


def test_non_cubic_kernel_stride_padding_and_dilation_follow_the_axis_permutation():
    """The wrapper reorders the spatial axes (largest first): every per-axis argument must move with them."""
    torch.manual_seed(1)
    kwargs = dict(kernel_size=(1, 3, 5), stride=(1, 2, 1), padding=(0, 1, 2), dilation=(1, 1, 2), bias=True)
    reference, ours = nn.Conv3d(3, 5, **kwargs), Conv3d(3, 5, **kwargs)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 5, 21, 13, requires_grad=True)  # sizes in mixed order: permutation (D1, D2, D0)
    y_ref, y = reference(x), ours(x)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, (x, ours.weight, ours.bias), grad),
                    torch.autograd.grad(y_ref, (x, reference.weight, reference.bias), grad), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _backward_backends(conv: nn.Module, x: torch.Tensor) -> list:
    """ATen's backend choice for every convolution_backward that conv's gradient runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    chosen = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default:
                _grad_out, inp, weight, _, stride, padding, dilation, transposed, output_padding, groups, _ = args
                chosen.append(torch._C._select_conv_backend(inp, weight, None, stride, padding, dilation,
                                                            transposed, output_padding, groups, None))
            return func(*args, **(kwargs or {}))

    x = x.clone().requires_grad_()
    y = conv(x)
    with Spy():
        y.sum().backward()
    return chosen


def test_gradients_of_grid_sized_convolutions_run_on_onednn():
    """On the occupancy grid (B=1, Z=16 first) PyTorch picks its reference kernel for the gradients of
    few-channel convolutions; the wrapper's permuted channels-last call gets oneDNN for them."""
    x = torch.randn(1, 4, 16, 100, 100)
    reference, ours = nn.Conv3d(4, 4, 3, padding=1, bias=False), Conv3d(4, 4, 3, padding=1, bias=False)
    assert _backward_backends(reference, x) == [torch._C._ConvBackend.Slow3d], \
        "PyTorch now picks oneDNN itself for these gradients: the axis permutation may go"
    assert _backward_backends(ours, x) == [torch._C._ConvBackend.Mkldnn]


def test_small_cpu_convolutions_run_on_onednn_not_the_reference_kernel():
    """The reason the class exists: PyTorch's own choice for these shapes is `slow_conv3d`."""
    from torch.profiler import ProfilerActivity, profile

    conv = Conv3d(16, 16, 3, padding=1, bias=False)
    x = torch.randn(1, 16, 4, 20, 20)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        conv(x)
        nn.functional.conv3d(x, conv.weight, None, 1, 1)
    names = [event.key for event in prof.key_averages()]
    assert "aten::mkldnn_convolution" in names
    assert "aten::slow_conv3d_forward" in names, "PyTorch now picks oneDNN itself: the wrapper may go"
