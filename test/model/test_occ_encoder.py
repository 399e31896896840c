"""3D residual encoder, 3D FPN and occupancy head: shapes, structure of the original, gradients."""

import pytest
import torch
import torch.nn.functional as F

from fusionocc_core.model.occ_encoder import BasicBlock3d, OccEncoder3d, OccFPN3d, trilinear_upsample
from fusionocc_core.model.occ_head import OccHead


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


def test_head_layout_and_gradients():
    torch.manual_seed(0)
    head = OccHead(in_channels=4, hidden_channels=8, num_classes=18)
    x = torch.randn(1, 4, 3, 5, 7, requires_grad=True)  # (B, C, Z, Y, X)
    logits = head(x)
    assert logits.shape == (1, 7, 5, 3, 18)  # (B, X, Y, Z, classes)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    # Voxel (x=6, y=0, z=2) of the logits depends on input voxel (z=2, y=0, x=6) (channels-last permute).
    x2 = x.detach().clone()
    x2[0, :, 2, 0, 6] += 1.0
    with torch.no_grad():
        diff = (head(x2) - head(x.detach())).abs().sum(-1)[0]
    assert diff[6, 0, 2] > 0 and diff[0, 4, 0] == 0


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


def test_upsampling_head_places_each_sub_voxel():
    torch.manual_seed(0)
    head = OccHead(in_channels=4, hidden_channels=8, num_classes=3, upsample=2).eval()
    x = torch.randn(1, 4, 2, 3, 5)  # (B, C, Z, Y, X) coarse
    with torch.no_grad():
        logits = head(x)
        coarse = head._coarse_logits(x).view(1, 5, 3, 2, 2, 2, 2, 3)  # (B, X, Y, Z, dx, dy, dz, K)
    assert logits.shape == (1, 10, 6, 4, 3)
    # fine voxel (2x + dx, 2y + dy, 2z + dz) is coarse voxel (x, y, z)'s sub-voxel (dx, dy, dz)
    for x_, y_, z_, dx, dy, dz in [(0, 0, 0, 0, 0, 0), (4, 2, 1, 1, 1, 1), (3, 1, 0, 1, 0, 1), (2, 0, 1, 0, 1, 0)]:
        assert torch.equal(logits[0, 2 * x_ + dx, 2 * y_ + dy, 2 * z_ + dz], coarse[0, x_, y_, z_, dx, dy, dz])


@pytest.mark.parametrize("upsample", [1, 2])
def test_head_labels_equal_the_argmax_of_the_logits(upsample):
    torch.manual_seed(1)
    head = OccHead(in_channels=4, hidden_channels=8, num_classes=18, upsample=upsample).eval()
    x = torch.randn(2, 4, 2, 3, 5)
    with torch.no_grad():
        assert torch.equal(head.labels(x), head(x).argmax(-1).to(torch.uint8))


def test_class_offsets_shift_every_sub_voxel():
    torch.manual_seed(2)
    head = OccHead(in_channels=4, hidden_channels=8, num_classes=3, upsample=2).eval()
    x = torch.randn(1, 4, 2, 2, 2)
    offsets = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        before = head(x)
        head.add_class_offsets(offsets)
        torch.testing.assert_close(head(x), before + offsets)
    with pytest.raises(ValueError, match="class offsets must be"):
        head.add_class_offsets(torch.zeros(6))


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
