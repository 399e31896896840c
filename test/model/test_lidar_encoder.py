"""Sparse lidar encoder: output grid, active-site behaviour, and values against a dense-convolution emulation
of sparse convolution (catches a flipped or transposed kernel, which shapes alone would not)."""

import pytest
import torch
import torch.nn.functional as F

spconv = pytest.importorskip("spconv.pytorch")

from fusionocc_core.model.lidar_encoder import LidarEncoder, conv_algorithm_for


def _random_bn(module, gen):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.weight.data = 0.5 + torch.rand(m.num_features, generator=gen)
            m.bias.data = 0.1 * torch.randn(m.num_features, generator=gen)
            m.running_mean = 0.1 * torch.randn(m.num_features, generator=gen)
            m.running_var = 0.5 + torch.rand(m.num_features, generator=gen)


def _dense_reference(encoder, features, coords, shape):
    """Sparse conv emulated with dense conv3d: SubM keeps the active set, a strided conv activates each output
    whose 3x3x3 window holds an active input; inactive sites stay exactly zero."""
    dense = torch.zeros(1, features.shape[1], *shape)
    active = torch.zeros(1, 1, *shape, dtype=torch.bool)
    b, z, y, x = coords.long().T
    dense[b, :, z, y, x] = features
    active[b, 0, z, y, x] = True

    def pointwise(linear, v):
        return torch.einsum("bczyx,oc->bozyx", v, linear.weight) * active

    dense = pointwise(encoder.input_conv, dense)
    for stage in encoder.stages:
        for block in stage:
            weight = block.conv.weight.permute(
                0, 4, 1, 2, 3
            )  # (Cout, kz, ky, kx, Cin) -> (Cout, Cin, kz, ky, kx)
            stride = block.conv.stride[0]
            dense = F.conv3d(dense, weight, stride=stride, padding=1)
            if stride > 1:
                active = F.max_pool3d(active.float(), 3, stride=stride, padding=1) > 0
            norm = block.norm
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            dense = (dense - norm.running_mean.view(1, -1, 1, 1, 1)) * scale.view(1, -1, 1, 1, 1)
            dense = torch.relu(dense + norm.bias.view(1, -1, 1, 1, 1)) * active
    return pointwise(encoder.output_conv, dense), active


def test_values_match_dense_emulation_on_a_small_grid():
    gen = torch.Generator().manual_seed(0)
    shape = (16, 24, 32)
    encoder = LidarEncoder(
        in_channels=3, out_channels=4, sparse_shape=shape, stage_channels=(4, 6, 8, 8)
    ).eval()
    _random_bn(encoder, gen)
    cells = torch.unique(torch.stack([torch.randint(0, s, (150,), generator=gen) for s in shape], 1), dim=0)
    coords = torch.cat([torch.zeros(len(cells), 1, dtype=torch.long), cells], 1).int()
    features = torch.randn(len(cells), 3, generator=gen)
    with torch.no_grad():
        out = encoder(features, coords, batch_size=1)
        reference, active = _dense_reference(encoder, features, coords, shape)
    assert out.shape == (1, 4, 2, 3, 4)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    assert (out.abs().sum(1) > 0).equal(active[:, 0])  # zero exactly where no voxel is active


def test_output_is_the_occupancy_grid_and_only_near_points():
    encoder = LidarEncoder(in_channels=5, out_channels=8).eval()
    coords = torch.tensor(
        [[0, 64, 800, 800], [1, 3, 10, 1590]], dtype=torch.int32
    )  # (batch, z, y, x) at 0.05 m
    features = torch.ones(2, 5)
    with torch.no_grad():
        out = encoder(features, coords, batch_size=3)
    assert out.shape == (3, 8, 16, 200, 200)
    active = out.abs().sum(1) > 0  # (B, Z, Y, X)
    assert not active[2].any()  # a sample without points stays empty
    for b, z, y, x in coords.tolist():
        sites = active[b].nonzero()
        centre = torch.tensor([z, y, x]) // 8
        assert len(sites) > 0 and ((sites - centre).abs() <= 1).all()


def test_algorithm_follows_the_device():
    assert conv_algorithm_for(torch.device("cpu")) == spconv.ConvAlgo.Native
    assert conv_algorithm_for(torch.device("cuda")) == spconv.ConvAlgo.MaskImplicitGemm
    with pytest.raises(ValueError, match="divisible by 8"):
        LidarEncoder(sparse_shape=(12, 1600, 1600))
