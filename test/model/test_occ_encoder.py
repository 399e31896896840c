"""3D residual encoder and 3D FPN: shapes, structure of the original, gradients."""

import pytest
import torch
import torch.nn.functional as F

from fusionocc_core.model.occ_encoder import BasicBlock3d, OccEncoder3d, OccFPN3d, trilinear_upsample


def test_encoder_levels_and_fpn_shapes():
    torch.manual_seed(0)
    encoder = OccEncoder3d(in_channels=6, num_blocks=(1, 2, 3), channels=(4, 8, 16), strides=(1, 2, 2))
    fpn = OccFPN3d(in_channels=28, out_channels=5)
    x = torch.randn(2, 6, 8, 12, 16)  # (B, C, Z, Y, X)
    levels = encoder(x)
    assert [tuple(f.shape) for f in levels] == [(2, 4, 8, 12, 16), (2, 8, 4, 6, 8), (2, 16, 2, 3, 4)]
    assert [len(level) for level in encoder.levels] == [1, 2, 3]
    # The first block of every level projects its shortcut, even at stride 1 (as the original's layers.0.0).
    assert all(not isinstance(level[0].shortcut, torch.nn.Identity) for level in encoder.levels)
    assert isinstance(encoder.levels[2][1].shortcut, torch.nn.Identity)
    out = fpn(levels)
    assert out.shape == (2, 5, 8, 12, 16) and (out >= 0).all()


def test_fpn_upsampling_is_trilinear_align_corners():
    fpn = OccFPN3d(in_channels=3, out_channels=3).eval()
    with torch.no_grad():
        fpn.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1, 1))
    coarse = torch.arange(8.0).view(1, 1, 2, 2, 2)
    out = fpn([torch.zeros(1, 1, 4, 4, 4), coarse, torch.zeros(1, 1, 1, 1, 1)])
    bn_scale = 1 / (1 + fpn.bn.eps) ** 0.5
    # align_corners=True keeps the corner values of the coarse volume at the corners of the fine one.
    assert out[0, 1, -1, -1, -1].item() == pytest.approx(7.0 * bn_scale, rel=1e-5)
    assert out[0, 1, 0, 0, -1].item() == pytest.approx(1.0 * bn_scale, rel=1e-5)


def test_block_without_projection_refuses_shape_change():
    with pytest.raises(ValueError, match="project_shortcut"):
        BasicBlock3d(4, 8)


@pytest.mark.parametrize(("shape", "size"), [((1, 3, 4, 50, 50), (8, 100, 100)), ((2, 2, 2, 3, 4), (8, 12, 16)),
                                             ((1, 2, 1, 5, 7), (3, 9, 13)), ((1, 2, 3, 4, 6), (3, 4, 6))])
def test_trilinear_upsample_equals_interpolate(shape, size):
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    ours = trilinear_upsample(x, size)
    theirs = F.interpolate(x, size=size, mode="trilinear", align_corners=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(ours)
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    (theirs_grad,) = torch.autograd.grad(theirs, x, grad)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=5e-5)  # summation order differs


def test_fpn_equals_upsample_concatenate_then_project():
    """The FPN projects each level before upsampling (they commute); the result is the original's order."""
    torch.manual_seed(0)
    fpn = OccFPN3d(in_channels=28, out_channels=5).eval()
    fpn.bn.running_mean.normal_()
    fpn.bn.running_var.uniform_(0.5, 2.0)
    levels = [torch.randn(2, 4, 8, 12, 16), torch.randn(2, 8, 4, 6, 8), torch.randn(2, 16, 2, 3, 4)]
    upsampled = [levels[0]] + [F.interpolate(f, size=(8, 12, 16), mode="trilinear", align_corners=True)
                               for f in levels[1:]]
    expected = F.relu(fpn.bn(F.conv3d(torch.cat(upsampled, dim=1), fpn.conv.weight)))
    torch.testing.assert_close(fpn(levels), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="levels of 28 channels in total"):
        fpn(levels[:2])
