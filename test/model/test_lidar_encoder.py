"""Sparse lidar encoder: output grid, active-site behaviour, and values against a dense-convolution emulation
of sparse convolution (catches a flipped or transposed kernel, which shapes alone would not)."""

import pytest
import torch
import torch.nn.functional as F

spconv = pytest.importorskip("spconv.pytorch")

from fusionocc_core.model.lidar_encoder import LidarEncoder, conv_algorithm_for, sparse_backend_for


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


@pytest.mark.parametrize("backend", ["spconv", "torch"])
def test_values_match_dense_emulation_on_a_small_grid(backend):
    gen = torch.Generator().manual_seed(0)
    shape = (16, 24, 32)
    encoder = LidarEncoder(
        in_channels=3, out_channels=4, sparse_shape=shape, stage_channels=(4, 6, 8, 8), sparse_backend=backend
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


@pytest.mark.parametrize("backend", ["spconv", "torch"])
def test_output_is_the_occupancy_grid_and_only_near_points(backend):
    encoder = LidarEncoder(in_channels=5, out_channels=8, sparse_backend=backend).eval()
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


def _clustered_voxels(shape, batch_size, gen, clusters=12, per_cluster=400):
    """Surface-like voxel clusters (a lidar sweep's sparsity: few neighbours at the fine level, many after
    downsampling), unique and sorted like dynamic_voxelize's output."""
    cells = []
    for b in range(batch_size):
        centres = torch.stack([torch.randint(4, s - 4, (clusters,), generator=gen) for s in shape], 1)
        offsets = torch.randint(-6, 7, (clusters, per_cluster, 3), generator=gen)
        offsets[..., 0] = offsets[..., 0] // 4  # flatter in z, as the ground and walls are
        pts = (centres[:, None] + offsets).reshape(-1, 3)
        pts = torch.maximum(torch.minimum(pts, torch.tensor(shape) - 1), torch.zeros(3, dtype=torch.long))
        cells.append(torch.cat([torch.full((len(pts), 1), b), pts], 1))
    return torch.unique(torch.cat(cells), dim=0).int()


@pytest.mark.parametrize("training", [False, True])
def test_torch_backend_equals_spconv_on_the_encoder(training):
    """The whole encoder (shared SubM rulebooks, strided convs, BatchNorm folded at inference, dense output)
    on both backends with the same weights; in training mode also the gradients."""
    gen = torch.Generator().manual_seed(1)
    shape = (32, 64, 64)
    encoder = LidarEncoder(in_channels=5, out_channels=6, sparse_shape=shape, stage_channels=(8, 16, 24, 32))
    _random_bn(encoder, gen)
    encoder.train(training)
    coords = _clustered_voxels(shape, 2, gen)
    features = torch.randn(len(coords), 5, generator=gen)
    outputs, grads = {}, {}
    for backend in ("spconv", "torch"):
        encoder.sparse_backend = backend
        encoder.zero_grad()
        state = {k: v.clone() for k, v in encoder.state_dict().items()}  # BN running stats move in training
        with torch.set_grad_enabled(training):
            out = encoder(features, coords, batch_size=2)
            if training:
                (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
                grads[backend] = {n: p.grad.clone() for n, p in encoder.named_parameters()}
        outputs[backend] = out.detach()
        encoder.load_state_dict(state)
    assert outputs["torch"].shape == (2, 6, 4, 8, 8)
    torch.testing.assert_close(outputs["torch"], outputs["spconv"], rtol=1e-4, atol=1e-4)
    for name in grads.get("spconv", {}):
        torch.testing.assert_close(grads["torch"][name], grads["spconv"][name], rtol=1e-3, atol=1e-4,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_submanifold_rulebooks_are_shared_per_indice_key(monkeypatch):
    import fusionocc_core.model.lidar_encoder as module

    calls = {"subm": 0, "strided": 0}
    subm, strided = module.submanifold_rulebook, module.strided_rulebook

    def count_subm(*args, **kwargs):
        calls["subm"] += 1
        return subm(*args, **kwargs)

    def count_strided(*args, **kwargs):
        calls["strided"] += 1
        return strided(*args, **kwargs)

    monkeypatch.setattr(module, "submanifold_rulebook", count_subm)
    monkeypatch.setattr(module, "strided_rulebook", count_strided)
    encoder = LidarEncoder(in_channels=3, out_channels=4, sparse_shape=(16, 24, 32),
                           stage_channels=(4, 6, 8, 8))
    coords = _clustered_voxels((16, 24, 32), 1, torch.Generator().manual_seed(2), clusters=3, per_cluster=50)
    with torch.no_grad():
        encoder.eval()(torch.randn(len(coords), 3), coords, batch_size=1)
    assert calls == {"subm": 4, "strided": 3}  # 8 SubM layers over 4 index sets, 3 downsampling convs


def test_backend_follows_the_device_and_can_be_forced():
    assert sparse_backend_for(torch.device("cpu")) == "torch"
    assert sparse_backend_for(torch.device("cuda")) == "spconv"
    assert sparse_backend_for(torch.device("cpu"), "spconv") == "spconv"
    assert sparse_backend_for(torch.device("cuda"), "torch") == "torch"
    with pytest.raises(ValueError, match="unknown sparse backend"):
        LidarEncoder(sparse_shape=(16, 24, 32), sparse_backend="native")


def test_layers_the_torch_backend_cannot_run_are_refused():
    from fusionocc_core.model.lidar_encoder import check_torch_backend_support

    check_torch_backend_support(LidarEncoder(sparse_shape=(16, 24, 32)))  # the encoder's own layers: fine
    for conv in (spconv.SubMConv3d(2, 2, 3, dilation=2, indice_key="a"), spconv.SubMConv3d(2, 2, 2),
                 spconv.SparseInverseConv3d(2, 2, 3, indice_key="a")):
        with pytest.raises(NotImplementedError, match="sparse_backend='spconv'"):
            check_torch_backend_support(torch.nn.Sequential(conv))
