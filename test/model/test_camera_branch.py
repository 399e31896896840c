"""Camera branch: conformance with the original's reduced_a outputs, official checkpoint key/shape mapping,
gradients, determinism and input checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fusionocc_core.model.camera_branch import CameraBranch, CameraBranchConfig
from fusionocc_core.model.checkpoint_camera import (
    CAMERA_PREFIXES,
    CheckpointConversionError,
    convert_camera_state_dict,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REFERENCE = SHARED / "spec" / "reference"
REDUCED = REFERENCE / "reduced_a"

# reduced_a/README.txt: Swin embed 32, depths 2-2-2-2, heads 1-2-4-8, window 12; FPN_LSS out 64; CrossModalLSS
# mid 32, aspp_mid 16, feature_channels 8; input (128, 352); grids unchanged.
REDUCED_A = CameraBranchConfig(
    swin_embed_dim=32,
    swin_depths=(2, 2, 2, 2),
    swin_num_heads=(1, 2, 4, 8),
    neck_channels=64,
    input_size=(128, 352),
    fusion_mid_channels=32,
    aspp_mid_channels=16,
    feature_channels=8,
)
TINY = CameraBranchConfig(
    swin_embed_dim=8,
    swin_depths=(2, 2, 2, 2),
    swin_num_heads=(1, 1, 2, 2),
    swin_window_size=4,
    neck_channels=16,
    input_size=(64, 128),
    fusion_mid_channels=8,
    aspp_mid_channels=4,
    feature_channels=4,
    voxel_size=(2.0, 2.0, 0.8),
    grid_shape=(40, 40, 8),
)  # coarse grid: CPU Conv3d is slow


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: these small convolutions get slower, not faster, on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference_inputs() -> dict[str, torch.Tensor]:
    """inputs.pth translated to the forward contract (B, T, N, ...)."""
    inputs = torch.load(REDUCED / "inputs.pth", weights_only=True)
    imgs, sensor2egos, ego2globals, intrins, post_rots, post_trans, bda = inputs["img_inputs"]
    b, n, t = 1, 6, 2
    h, w = imgs.shape[-2:]
    images = imgs.view(b, n, t, 3, h, w).transpose(1, 2)  # camera-major (cam * 2 + frame) -> (B, T, N)
    sensor2egos = sensor2egos.view(b, t, n, 4, 4).double()  # frame-major
    ego2globals = ego2globals.view(b, t, n, 4, 4).double()
    key_ego_to_global = ego2globals[:, 0, 0][:, None, None]
    cam_to_key_ego = (torch.inverse(key_ego_to_global) @ ego2globals @ sensor2egos).float()
    return {
        "images": images,
        "intrinsics": intrins.view(b, t, n, 3, 3),
        "cam_to_key_ego": cam_to_key_ego,
        "post_rots": post_rots.view(b, t, n, 3, 3),
        "post_trans": post_trans.view(b, t, n, 3),
        "bda": bda,
        "sparse_depth": inputs["sparse_depth"][0],
    }


@pytest.fixture(scope="module")
def reduced_run() -> tuple[CameraBranch, object, dict]:
    if not (REDUCED / "state_dict.pth").exists():
        pytest.skip("shared reference data not present")
    torch.manual_seed(0)
    model = CameraBranch(REDUCED_A).eval()
    original = torch.load(REDUCED / "state_dict.pth", weights_only=True)
    model.load_state_dict(convert_camera_state_dict(original), strict=True)
    with torch.no_grad():
        out = model(**_reference_inputs())
    return model, out, torch.load(REDUCED / "outputs.pth", weights_only=True)


def _assert_close_rel(ours: torch.Tensor, reference: torch.Tensor, rel: float = 1e-4) -> None:
    scale = reference.abs().max().item()
    err = (ours.double() - reference.double()).abs().max().item()
    assert err <= rel * scale, f"max abs err {err:.3g} vs reference scale {scale:.3g}"


def test_reduced_a_depth_and_segmentation(reduced_run) -> None:
    _, out, ref = reduced_run
    assert out.key_depth.shape == (6, 88, 8, 22) and out.key_seg_logits.shape == (6, 18, 8, 22)
    _assert_close_rel(out.key_depth, ref["depth_key_frame_BNxDxhxw"])
    _assert_close_rel(out.key_seg_logits, ref["seg_key_frame_BNxCxhxw"])


def test_reduced_a_lifted_volumes(reduced_run) -> None:
    _, out, ref = reduced_run
    key, adj = out.raw_volumes
    assert key.shape == (1, 8, 16, 200, 200)
    _assert_close_rel(key[..., 80:120, 80:120], ref["img_3d_feat_key_crop_BCZYX_y80_120_x80_120"])
    _assert_close_rel(adj[..., 80:120, 80:120], ref["img_3d_feat_adj_crop_BCZYX_y80_120_x80_120"])
    for ours, name in ((key, "img_3d_feat_key_sum_f64"), (adj, "img_3d_feat_adj_sum_f64")):
        assert ours.double().sum().item() == pytest.approx(ref[name].item(), rel=1e-4)


def test_volumes_are_previous_first_after_pre_process(reduced_run) -> None:
    model, out, _ = reduced_run
    key, adj = out.raw_volumes
    assert out.volumes.shape == (1, 16, 16, 200, 200)
    with torch.no_grad():
        torch.testing.assert_close(out.volumes[:, :8], model.pre_process(adj))
        torch.testing.assert_close(out.volumes[:, 8:], model.pre_process(key))


def test_official_manifest_maps_with_equal_shapes_and_counts() -> None:
    manifest_path = REFERENCE / "fusionocc_official_state_dict.json"
    if not manifest_path.exists():
        pytest.skip("shared reference data not present")
    manifest = json.loads(manifest_path.read_text())["state_dict"]
    with torch.device("meta"):
        model = CameraBranch(CameraBranchConfig())
        original = {k: torch.empty(shape) for k, shape in manifest.items() if k.startswith(CAMERA_PREFIXES)}
    converted = convert_camera_state_dict(original)
    ours = model.state_dict()
    assert set(converted) == set(ours)
    mismatched = [k for k in ours if converted[k].shape != ours[k].shape]
    assert not mismatched, mismatched
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    assert counts["backbone"] == 86_879_608  # img_backbone
    assert counts["neck"] == 4_129_792  # img_neck
    assert counts["fusion"] + counts["depth_net"] == 4_457_954  # img_view_transformer
    assert counts["pre_process"] == 83_136  # pre_process_net


def test_conversion_names_unmapped_keys_and_bad_buffers() -> None:
    state = {
        "img_view_transformer.mystery.weight": torch.zeros(1),
        "pre_process_net.layers.1.0.conv1.conv.weight": torch.zeros(1),  # a second block: not supported
        "lidar_encoder.conv.weight": torch.zeros(1),
    }  # other prefixes belong to the full conversion
    with pytest.raises(CheckpointConversionError, match="2 camera-branch key.*mystery.*layers.1.0"):
        convert_camera_state_dict(state)
    bad_index = {"img_backbone.stages.0.blocks.0.attn.w_msa.relative_position_index": torch.zeros(16, 16)}
    with pytest.raises(CheckpointConversionError, match="window 4"):
        convert_camera_state_dict(bad_index)


def _tiny_inputs(seed: int, b: int = 1, t: int = 2, n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, w = TINY.input_size
    intrinsics = torch.tensor([[120.0, 0, 64], [0, 120.0, 40], [0, 0, 1]]).repeat(b, t, n, 1, 1)
    cam_to_ego = torch.eye(4).repeat(b, t, n, 1, 1)
    base = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    for i in range(n):
        yaw = torch.tensor(3.1416 * i)
        rot = torch.tensor(
            [[torch.cos(yaw), -torch.sin(yaw), 0], [torch.sin(yaw), torch.cos(yaw), 0], [0, 0, 1]]
        )
        cam_to_ego[:, :, i, :3, :3] = rot @ base
    if t > 1:
        cam_to_ego[:, 1, :, 0, 3] = -0.5  # previous frame half a metre behind
    sparse = torch.rand(b, n, h, w, generator=g) * 40 + 1
    sparse[torch.rand(b, n, h, w, generator=g) > 0.05] = 0.0
    return {
        "images": torch.randn(b, t, n, 3, h, w, generator=g),
        "intrinsics": intrinsics,
        "cam_to_key_ego": cam_to_ego,
        "post_rots": torch.eye(3).repeat(b, t, n, 1, 1),
        "post_trans": torch.zeros(b, t, n, 3),
        "bda": torch.eye(3).repeat(b, 1, 1),
        "sparse_depth": sparse,
    }


def test_gradients_reach_all_trainable_parameters_and_not_the_previous_frame() -> None:
    torch.manual_seed(0)
    model = CameraBranch(TINY).train()
    out = model(**_tiny_inputs(seed=1))
    assert out.volumes.shape == (1, 8, 8, 40, 40)
    assert out.raw_volumes[0].requires_grad and not out.raw_volumes[1].requires_grad
    g = torch.Generator().manual_seed(2)
    loss = (
        out.volumes * torch.randn(out.volumes.shape, generator=g)
    ).sum() + out.key_seg_logits.square().mean()
    loss = loss + (out.key_depth * torch.randn(out.key_depth.shape, generator=g)).sum()
    loss.backward()
    missing = [
        name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing, missing
    # The spatial gates end in a ReLU (as the original); their last bias starts at 1 so they start open.
    zero = [name for name, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, zero


def test_deterministic_under_a_seed_and_no_depth_dropout_in_eval() -> None:
    inputs = _tiny_inputs(seed=3, t=1)
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = CameraBranch(TINY).train()
        runs.append(model(**inputs).volumes.detach())
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    model.eval()
    no_dropout = CameraBranch(CameraBranchConfig(**{**TINY.__dict__, "depth_patch_dropout": 0.0})).eval()
    no_dropout.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).volumes, no_dropout(**inputs).volumes)


def test_input_checks_name_the_problem() -> None:
    model = CameraBranch(TINY).eval()
    inputs = _tiny_inputs(seed=4)
    with pytest.raises(ValueError, match="sparse_depth"):
        model(**{**inputs, "sparse_depth": inputs["sparse_depth"][:, :1]})
    with pytest.raises(ValueError, match="input_size"):
        model(**{**inputs, "images": inputs["images"][..., :32, :]})
    with pytest.raises(ValueError, match="Unknown camera backbone"):
        CameraBranch(CameraBranchConfig(backbone="vit"))
    with pytest.raises(ValueError, match="divisible by 32"):
        CameraBranch(CameraBranchConfig(**{**TINY.__dict__, "input_size": (80, 128)}))


def test_resnet_backbone_variant_runs() -> None:
    torch.manual_seed(0)
    config = CameraBranchConfig(**{**TINY.__dict__, "backbone": "resnet18"})
    model = CameraBranch(config).eval()
    with torch.no_grad():
        out = model(**_tiny_inputs(seed=6, t=1))
    assert out.volumes.shape == (1, 4, 8, 40, 40) and len(out.raw_volumes) == 1


def test_partial_conversion_for_bevdet_initialisation() -> None:
    if not (REDUCED / "state_dict.pth").exists():
        pytest.skip("shared reference data not present")
    original = torch.load(REDUCED / "state_dict.pth", weights_only=True)
    original["img_view_transformer.depth_net.weight"] = torch.zeros(1)  # a BEVDet-Occ key we do not have
    converted = convert_camera_state_dict(original, prefixes=("img_backbone.", "img_neck."))
    assert converted and all(k.startswith(("backbone.", "neck.")) for k in converted)
    result = CameraBranch(REDUCED_A).load_state_dict(converted, strict=False)
    assert not result.unexpected_keys
    assert {k.split(".")[0] for k in result.missing_keys} == {"fusion", "depth_net", "pre_process"}
    with pytest.raises(CheckpointConversionError, match="not camera-branch prefixes"):
        convert_camera_state_dict(original, prefixes=("lidar_encoder.",))


def test_config_from_lists_equals_config_from_tuples() -> None:
    from_lists = CameraBranchConfig(swin_depths=[2, 2, 2, 2], input_size=[64, 128], grid_shape=[40, 40, 8])
    assert from_lists == CameraBranchConfig(
        swin_depths=(2, 2, 2, 2), input_size=(64, 128), grid_shape=(40, 40, 8)
    )
    assert hash(from_lists) == hash(
        CameraBranchConfig(swin_depths=(2, 2, 2, 2), input_size=(64, 128), grid_shape=(40, 40, 8))
    )


def test_image_feature_cache_reuses_a_frame_seen_before_and_changes_nothing() -> None:
    """Streaming: call 2's previous frame is call 1's key frame; with the cache its backbone pass is skipped."""
    torch.manual_seed(0)
    model = CameraBranch(TINY).eval()
    first, second = _tiny_inputs(seed=7), _tiny_inputs(seed=8)
    second["images"][:, 1] = first["images"][:, 0]  # the previous frame of call 2 = the key frame of call 1
    calls = []
    model.backbone.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    with torch.no_grad():
        expected = [model(**first).volumes, model(**second).volumes]
        assert len(calls) == 4
        model.cache_image_features = True
        calls.clear()
        cached = [model(**first).volumes, model(**second).volumes]
    assert len(calls) == 3  # call 1: both frames; call 2: only its key frame
    for ours, reference in zip(cached, expected, strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    # with gradients (training) the cache is not used; train() empties it
    model.train()
    assert model._image_features == []
