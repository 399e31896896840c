"""Occupancy head: layout and gradients, sub-voxel placement of the upsampling head, labels, class offsets."""

import pytest
import torch

from fusionocc_core.model.occ_head import OccHead


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
