"""2D cross-modal fusion: shapes, the gating algebra against a hand-written forward, no-depth behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fusionocc_core.model.cross_modal_fusion import CrossModalFusion
from fusionocc_core.model.depth_net import DepthSegNet, camera_params


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: small ops get slower, not faster, on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
        for name, buf in module.named_buffers():
            if name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=g))
            elif name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=g))


def test_fusion_matches_hand_written_gating() -> None:
    fusion = CrossModalFusion(image_channels=12, depth_channels=10, mid_channels=6).eval()
    _randomise(fusion, seed=0)
    image = torch.randn(3, 12, 5, 7)
    depth = F.one_hot(torch.randint(0, 10, (3, 5, 7)), 10).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        f_c = fusion.image_reduce(image)
        f_d = fusion.depth_encoder(depth)
        w_c = torch.sigmoid(fusion.channel_gate_image[0](f_c.mean(dim=(2, 3))))[..., None, None]
        w_d = torch.sigmoid(fusion.channel_gate_depth[0](f_d.mean(dim=(2, 3))))[..., None, None]
        mixed = fusion.fuse_conv(torch.cat([f_c * w_d, f_d * w_c], dim=1))  # each path by the OTHER's weights
        z_c = torch.relu(
            fusion.spatial_gate_image[2](
                torch.relu(fusion.spatial_gate_image[0](mixed[:, :6].mean(1, keepdim=True)))
            )
        )
        z_d = torch.relu(
            fusion.spatial_gate_depth[2](
                torch.relu(fusion.spatial_gate_depth[0](mixed[:, 6:].mean(1, keepdim=True)))
            )
        )
        expected = fusion.out_block(torch.cat([f_c * (1 + z_d), f_d * (1 + z_c)], dim=1))
        out = fusion(image, depth)
    assert out.shape == (3, 12, 5, 7)
    torch.testing.assert_close(out, expected)


def test_fusion_depth_changes_image_path() -> None:
    fusion = CrossModalFusion(image_channels=8, depth_channels=10, mid_channels=4).eval()
    _randomise(fusion, seed=1)
    image = torch.randn(1, 8, 4, 4)
    no_depth = torch.zeros(1, 10, 4, 4)
    some_depth = no_depth.clone()
    some_depth[0, 3, 1, 1] = 1.0
    with torch.no_grad():
        a, b = fusion(image, no_depth), fusion(image, some_depth)
    assert torch.isfinite(a).all() and not torch.allclose(a, b)


def test_camera_params_order() -> None:
    intrinsics = torch.tensor([[[[1.0, 0, 3], [0, 2, 4], [0, 0, 1]]]])
    post_rots = torch.tensor([[[[5.0, 6, 0], [8, 9, 0], [0, 0, 1]]]])
    post_trans = torch.tensor([[[7.0, 10, 0]]])
    bda = torch.tensor([[[11.0, 12, 0], [13, 14, 0], [0, 0, 15]]])
    cam = torch.arange(16, dtype=torch.float).view(1, 1, 4, 4) + 16
    values = camera_params(intrinsics, post_rots, post_trans, bda, cam)
    assert values.shape == (1, 1, 27)
    assert values[0, 0, :15].tolist() == [float(v) for v in range(1, 16)]
    assert values[0, 0, 15:].tolist() == [float(v) for v in range(16, 28)]


def test_depth_seg_net_shapes_and_feature_split() -> None:
    net = DepthSegNet(
        in_channels=16,
        mid_channels=8,
        depth_channels=20,
        feature_channels=6,
        num_classes=18,
        aspp_mid_channels=4,
    ).eval()
    depth, feature, seg = net(torch.randn(4, 16, 6, 10), torch.randn(2, 2, 27))
    assert depth.shape == (4, 20, 6, 10) and feature.shape == (4, 6, 6, 10) and seg.shape == (4, 18, 6, 10)
    assert net.seg_channels == 3 and net.context_channels == 3
