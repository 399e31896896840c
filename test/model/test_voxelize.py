"""Dynamic voxelization against a brute-force per-point reference."""

from collections import defaultdict

import pytest
import torch

from fusionocc_core.model.voxelize import dynamic_voxelize, grid_shape_zyx


def _brute_force(points, batch_size, low=(-40.0, -40.0, -1.0), size=0.05, shape_zyx=(128, 1600, 1600)):
    groups = defaultdict(list)
    for row in points.tolist():
        b = int(row[0])
        cell = [
            int(torch.floor((torch.tensor(row[1 + a], dtype=torch.float32) - torch.tensor(low[a])) / size))
            for a in range(3)
        ]
        x, y, z = cell
        if not (0 <= x < shape_zyx[2] and 0 <= y < shape_zyx[1] and 0 <= z < shape_zyx[0]):
            continue
        assert 0 <= b < batch_size
        groups[(b, z, y, x)].append(row[1:])
    keys = sorted(groups)
    means = torch.tensor([[sum(c) / len(c) for c in zip(*groups[k], strict=True)] for k in keys], dtype=torch.float64)
    return torch.tensor(keys, dtype=torch.int32), means, [len(groups[k]) for k in keys]


def _points(seed=0, n=600):
    gen = torch.Generator().manual_seed(seed)
    # Cluster points so that many voxels hold several points; some points fall outside the range.
    centres = torch.tensor([-40.0, -40.0, -1.0]) + torch.rand(40, 3, generator=gen) * torch.tensor(
        [80.0, 80.0, 6.4]
    )
    xyz = centres[torch.randint(0, 40, (n,), generator=gen)] + 0.04 * torch.randn(n, 3, generator=gen)
    xyz[:10] = torch.tensor([45.0, 0.0, 0.0])  # out of range in x
    xyz[10:15] = torch.tensor([0.0, 0.0, -1.5])  # below the grid
    feats = torch.rand(n, 2, generator=gen)
    batch = torch.randint(0, 3, (n, 1), generator=gen).float()
    return torch.cat([batch, xyz, feats], dim=1)


def test_matches_brute_force():
    points = _points()
    voxels = dynamic_voxelize(points, batch_size=3)
    coords, means, counts = _brute_force(points, 3)
    assert torch.equal(voxels.coords, coords)
    torch.testing.assert_close(voxels.features.double(), means, rtol=1e-5, atol=1e-5)
    assert voxels.num_points_per_voxel.tolist() == counts
    assert max(counts) > 1  # the case really averages
    assert voxels.coords.dtype == torch.int32 and voxels.spatial_shape == (128, 1600, 1600)


def test_grid_shape_is_1600_1600_128():
    assert grid_shape_zyx() == (128, 1600, 1600)


def test_explicit_batch_size_keeps_empty_trailing_samples():
    points = torch.tensor([[0.0, 1.0, 2.0, 0.5, 7.0]])
    voxels = dynamic_voxelize(points, batch_size=2)  # sample 1 has no points; the original would infer B = 1
    assert voxels.batch_size == 2 and voxels.coords[:, 0].tolist() == [0]
    assert voxels.coords[0, 1:].tolist() == [
        30,
        840,
        820,
    ]  # z, y, x: floor((0.5+1)/0.05), (2+40)/.05, (1+40)/.05


def test_upper_edge_and_nan_points_are_dropped():
    points = torch.tensor(
        [[0.0, 39.999999, 0.0, 0.0, 1.0], [0.0, float("nan"), 0.0, 0.0, 1.0], [0.0, -40.0, -40.0, -1.0, 1.0]]
    )
    voxels = dynamic_voxelize(points, batch_size=1)
    assert (voxels.coords[:, 1:] < torch.tensor([128, 1600, 1600], dtype=torch.int32)).all()
    assert voxels.coords[-1].tolist() == [0, 0, 0, 0] or voxels.coords[0].tolist() == [0, 0, 0, 0]
    assert torch.isfinite(voxels.features).all()


def test_bad_batch_index_is_rejected():
    points = torch.tensor([[2.0, 1.0, 2.0, 0.5, 7.0]])
    with pytest.raises(ValueError, match="outside"):
        dynamic_voxelize(points, batch_size=2)
    with pytest.raises(ValueError, match=r"\(P, 1 \+ F\)"):
        dynamic_voxelize(torch.zeros(3, 3), batch_size=1)
