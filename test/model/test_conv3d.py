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
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert list(ours.state_dict()) == list(reference.state_dict())


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
