"""Predictor preprocessing and temporal history, on a stub model (the real-model equality test is below)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fusionocc_core.lidar_thinning import thinning_mask
from fusionocc_core.occ3d import CAMERA_NAMES, GRID_SHAPE
from fusionocc_core.predictor import (
    IMAGE_MEAN,
    PredictionResult,
    Predictor,
    PredictorError,
    SensorFrame,
    resize_crop_params,
)

INPUT = (64, 176)  # (H, W): 1600x900 scaled by 0.11 -> 176x99, bottom 64 rows kept
W0, H0 = 400, 225  # small test images with the nuScenes aspect ratio

@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small tensors on a shared 2-core machine: torch's spinning worker threads cost 10x more than they
    save (measured 270 ms vs 16 ms per prepare under load), so this module runs torch single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



class StubModel(torch.nn.Module):
    """Records its inputs; labels depend on them so a mix-up would show."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(camera=SimpleNamespace(input_size=INPUT))
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.calls: list[dict[str, torch.Tensor]] = []

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        self.calls.append(inputs)
        level = (inputs["images"].mean() * 10 + inputs["points"].shape[0]).floor() % 18
        return torch.nn.functional.one_hot(level.long().expand(1, *GRID_SHAPE), 18).float() * self.weight

    def predict(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.forward(**inputs).argmax(-1).to(torch.uint8)


def zero_depth(points, intrinsics, cam_to_ego, post_rots, post_trans, height, width, **_):
    return torch.zeros((intrinsics.shape[0], height, width))


def _rotation_about_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rig():
    """Six cameras around the ego (x right, y down, z forward), intrinsics for W0 x H0."""
    cam_to_ego = np.tile(np.eye(4), (6, 1, 1))
    forward = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # camera axes in ego
    for i, yaw in enumerate(np.deg2rad([55, 0, -55, 110, 180, -110])):
        cam_to_ego[i, :3, :3] = _rotation_about_z(yaw) @ forward
        cam_to_ego[i, :3, 3] = [1.5 * np.cos(yaw), 0.5 * np.sin(yaw), 1.5]
    k = np.array([[320.0, 0.0, W0 / 2], [0.0, 320.0, H0 / 2], [0.0, 0.0, 1.0]])
    return np.tile(k, (6, 1, 1)), cam_to_ego


LIDAR_TO_EGO = np.eye(4)
LIDAR_TO_EGO[:3, :3], LIDAR_TO_EGO[:3, 3] = _rotation_about_z(-np.pi / 2), [0.9, 0.0, 1.8]
WORLD = np.random.default_rng(0).uniform([-30, -30, 0], [60, 30, 3], size=(500, 3))  # static points, global


def _pose(x: float, yaw: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = _rotation_about_z(yaw), [100.0 + x, 50.0, 0.0]
    return pose


def _frame(stamp: float, pose: np.ndarray, *, images=None, count: int = 6) -> SensorFrame:
    intrinsics, cam_to_ego = _rig()
    to_lidar = np.linalg.inv(pose @ LIDAR_TO_EGO)
    points = np.concatenate(
        [WORLD @ to_lidar[:3, :3].T + to_lidar[:3, 3], np.full((500, 1), 7.0), np.zeros((500, 1))], 1
    )
    if images is None:
        images = np.full((count, H0, W0, 3), 90, np.uint8)
    return SensorFrame(
        images=images,
        intrinsics=intrinsics[:count],
        cam_to_ego=cam_to_ego[:count],
        lidar_points=points,
        lidar_to_ego=LIDAR_TO_EGO,
        ego_to_global=pose,
        stamp_s=stamp,
    )


def _predictor(**options) -> Predictor:
    options.setdefault("device", "cpu")
    options.setdefault("thin_points", False)  # these tests follow every point through the geometry
    return Predictor(StubModel(), sparse_depth_fn=zero_depth, **options)


def test_sweeps_are_thinned_like_the_training_data_and_depth_uses_the_whole_sweep():
    frame = _frame(0.0, _pose(0.0))
    frame.lidar_points[:, 4] = np.arange(500) % 32  # ring index: beams 0..31
    seen = {}

    def recording_depth(points_xyz, *args):
        seen["depth_points"] = points_xyz.shape[0]
        return zero_depth(points_xyz, *args)

    predictor = Predictor(StubModel(), device="cpu", sparse_depth_fn=recording_depth)
    inputs, _ = predictor.prepare(frame)
    expected = thinning_mask(frame.lidar_points[:, 4])
    assert 0 < expected.sum() < 500
    assert inputs.points.shape[0] == expected.sum()  # one sweep: exactly the shared rule's points
    assert seen["depth_points"] == 500


def test_resize_crop_params_match_bevdet_test_time_augmentation():
    assert resize_crop_params((1600, 900), (256, 704)) == (0.44, (704, 396), (0, 140))
    scale, resized, crop = resize_crop_params((800, 450), (256, 704))
    assert scale == pytest.approx(0.88) and resized == (704, 396) and crop == (0, 140)
    assert resize_crop_params((1600, 400), (256, 704))[2] == (0, 176 - 256)  # too short: zero padding on top


def test_a_projected_point_lands_where_post_rot_and_post_trans_say():
    intrinsics, cam_to_ego = _rig()
    target_ego = np.array([12.0, 1.0, 0.5])  # ahead, seen by CAM_FRONT (index 1)
    to_cam = np.linalg.inv(cam_to_ego[1])
    xyz = to_cam[:3, :3] @ target_ego + to_cam[:3, 3]
    u, v = (intrinsics[1] @ (xyz / xyz[2]))[:2]
    images = np.zeros((6, H0, W0, 3), np.uint8)
    images[1, int(v) - 3 : int(v) + 4, int(u) - 3 : int(u) + 4] = 255
    predictor = _predictor()
    inputs, _ = predictor.prepare(_frame(0.0, _pose(0.0), images=images))
    image = inputs.images[0, 0, 1, 0]  # current frame, CAM_FRONT, red channel
    row, col = np.unravel_index(int(image.argmax()), image.shape)
    expected = inputs.post_rots[0, 0, 1].numpy() @ np.array([u, v, 1.0]) + inputs.post_trans[0, 0, 1].numpy()
    assert abs(col - expected[0]) <= 1.0 and abs(row - expected[1]) <= 1.0
    np.testing.assert_allclose(inputs.intrinsics[0, 0].numpy(), intrinsics, rtol=1e-6)


def test_images_are_normalised_with_the_mmlab_imagenet_mean_and_std():
    images = np.broadcast_to(np.round(IMAGE_MEAN).astype(np.uint8), (6, H0, W0, 3)).copy()
    inputs, _ = _predictor().prepare(_frame(0.0, _pose(0.0), images=images))
    assert inputs.images.shape == (1, 2, 6, 3, *INPUT)
    assert inputs.images.abs().max() < 0.01
    assert inputs.post_rots[0, 0, 0, 0, 0] == pytest.approx(INPUT[1] / W0)
    assert inputs.post_trans[0, 0, 0, 1] == pytest.approx(-(int(H0 * INPUT[1] / W0) - INPUT[0]))


def test_temporal_history_moves_past_sweeps_and_camera_into_the_current_ego_frame():
    predictor = _predictor()
    speed, rate, frames = 8.0, 10.0, 41
    for j in range(frames):  # 4 s at 10 Hz, ego driving and turning slowly
        stamp = 1000.0 + j / rate
        pose = _pose(speed * j / rate, yaw=0.05 * j / rate)
        inputs, info = predictor.prepare(_frame(stamp, pose))
    assert info["lidar_sweeps"] == 8 and not info["reset"]
    points = inputs.points.numpy()
    lags = np.unique(points[:, 5].round(3))
    np.testing.assert_allclose(lags, 0.5 * np.arange(8), atol=0.051)
    # Every sweep saw the same static world: moved into the current ego frame they coincide.
    to_ego = np.linalg.inv(pose)
    expected = WORLD @ to_ego[:3, :3].T + to_ego[:3, 3]
    for lag in lags:
        np.testing.assert_allclose(points[points[:, 5].round(3) == lag, 1:4], expected, atol=1e-3)
    assert (points[:, 0] == 0).all() and (points[:, 4] == 7.0).all()
    assert info["prev_lag"] == pytest.approx(0.5, abs=0.051)
    _, cam_to_ego = _rig()
    previous = frames - 1 - round(info["prev_lag"] * rate)
    previous_pose = _pose(speed * previous / rate, yaw=0.05 * previous / rate)
    np.testing.assert_allclose(
        inputs.cam_to_key_ego[0, 1].numpy(), np.linalg.inv(pose) @ previous_pose @ cam_to_ego, atol=1e-4
    )
    np.testing.assert_allclose(inputs.cam_to_key_ego[0, 0].numpy(), cam_to_ego, atol=1e-5)


def test_first_frame_repeats_itself_and_non_temporal_mode_uses_only_the_current_data():
    inputs, info = _predictor().prepare(_frame(5.0, _pose(0.0)))
    assert info["lidar_sweeps"] == 1 and info["prev_lag"] == 0.0
    torch.testing.assert_close(inputs.images[0, 0], inputs.images[0, 1])
    predictor = _predictor(temporal=False)
    for j in range(8):
        inputs, info = predictor.prepare(_frame(5.0 + j * 0.1, _pose(j * 0.5)))
    assert info["lidar_sweeps"] == 1 and info["prev_lag"] == 0.0


@pytest.mark.parametrize(
    "stamp,x,reason",
    [(4.2, 2.0, "time_backwards"), (9.0, 2.4, "time_gap"), (4.3, 50.0, "pose_jump"), (4.3, 2.4, None)],
)
def test_history_resets_on_time_backwards_gaps_and_pose_jumps(stamp, x, reason):
    predictor = _predictor()
    for j in range(6):
        predictor.prepare(_frame(4.0 + j * 0.05, _pose(j * 0.4)))  # last frame at 4.25 s, x = 2.0 m
    _, info = predictor.prepare(_frame(stamp, _pose(x)))
    assert info["reset"] == (reason is not None)
    assert info["lidar_sweeps"] == (1 if reason else 2)
    assert sum(predictor.resets.values()) == (reason is not None)
    if reason:
        assert predictor.resets[reason] == 1


def test_a_different_rig_is_warned_about_once(caplog):
    predictor = _predictor()
    with caplog.at_level(logging.WARNING, logger="fusionocc_core.predictor"):
        for j in range(3):
            predictor.prepare(_frame(j * 0.1, _pose(0.0), count=5))
        wide = np.zeros((6, 200, 600, 3), np.uint8)
        predictor.prepare(_frame(1.0, _pose(0.0), images=wide))
        predictor.prepare(_frame(1.1, _pose(0.0), images=wide))
        predictor.prepare(
            SensorFrame(**{**_frame(1.2, _pose(0.0)).__dict__, "camera_names": tuple(reversed(CAMERA_NAMES))})
        )
    messages = [r.getMessage() for r in caplog.records]
    assert sum("5 cameras" in m for m in messages) == 1
    assert sum("aspect ratio" in m for m in messages) == 1
    assert sum("camera order" in m for m in messages) == 1


def test_predict_returns_labels_timings_and_calls_the_model_once():
    predictor = _predictor()
    result = predictor.predict(_frame(0.0, _pose(0.0)))
    assert isinstance(result, PredictionResult)
    assert result.labels.shape == GRID_SHAPE and result.labels.dtype == np.uint8
    assert set(result.timings_ms) == {"images", "history", "depth", "inference", "total"}
    assert result.timings_ms["total"] >= result.timings_ms["inference"] >= 0
    assert len(predictor.model.calls) == 1
    inputs = predictor.model.calls[0]
    assert inputs["sparse_depth"].shape == (1, 6, *INPUT) and inputs["bda"].shape == (1, 3, 3)
    assert inputs["points"].shape == (500, 6)


def test_bf16_runs_on_cpu_and_bad_options_are_rejected():
    result = _predictor(precision="bf16").predict(_frame(0.0, _pose(0.0)))
    assert result.labels.shape == GRID_SHAPE
    with pytest.raises(PredictorError, match="precision must be one of fp32, fp16, bf16"):
        _predictor(precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(PredictorError, match="CUDA is not available"):
            _predictor(device="cuda")


@pytest.mark.parametrize(
    "change,match",
    [
        ({"intrinsics": np.zeros((5, 3, 3))}, r"intrinsics must have shape \(6, 3, 3\)"),
        ({"images": np.zeros((6, H0, W0), np.uint8)}, r"images must be \(N, H, W, 3\) uint8"),
        ({"lidar_points": np.full((3, 5), np.nan)}, "NaN"),
        ({"lidar_points": np.zeros((3, 2))}, "lidar_points must be"),
        ({"ego_to_global": np.eye(3)}, "ego_to_global must have shape"),
    ],
)
def test_malformed_frames_are_rejected_naming_the_field(change, match):
    frame = SensorFrame(**{**_frame(0.0, _pose(0.0)).__dict__, **change})
    with pytest.raises(PredictorError, match=match):
        _predictor().prepare(frame)


def test_sparse_depth_from_the_model_package_marks_the_current_sweep():
    pytest.importorskip("fusionocc_core.model.lidar_depth")
    # Ground points ahead of the ego, given in the lidar frame.
    gx, gy = np.meshgrid(np.linspace(4, 40, 40), np.linspace(-8, 8, 20))
    ground_ego = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    to_lidar = np.linalg.inv(LIDAR_TO_EGO)
    lidar = np.concatenate([ground_ego @ to_lidar[:3, :3].T + to_lidar[:3, 3], np.ones((gx.size, 2))], 1)
    frame = SensorFrame(**{**_frame(0.0, _pose(0.0)).__dict__, "lidar_points": lidar})
    predictor = Predictor(StubModel(), device="cpu")  # default sparse_depth_fn: the model package's
    inputs, _ = predictor.prepare(frame)
    depth = inputs.sparse_depth
    assert depth.shape == (1, 6, *INPUT)
    front = depth[0, 1].numpy()
    assert (front > 0).sum() > 50 and front.max() < 45.0
    # Project the points into CAM_FRONT ourselves: each depth pixel holds the nearest point landing there.
    intrinsics, cam_to_ego = _rig()
    to_cam = np.linalg.inv(cam_to_ego[1])
    cam = ground_ego @ to_cam[:3, :3].T + to_cam[:3, 3]
    pixels = (cam / cam[:, 2:3]) @ intrinsics[1].T @ inputs.post_rots[0, 0, 1].numpy().T
    pixels = np.round(pixels + inputs.post_trans[0, 0, 1].numpy())
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < INPUT[1]) & (pixels[:, 1] >= 0) & (pixels[:, 1] < INPUT[0])
    inside &= (cam[:, 2] >= 1.0) & (cam[:, 2] < 45.0)
    expected = np.zeros(INPUT)
    landing = zip(pixels[inside, :2].astype(int).tolist(), cam[inside, 2], strict=True)
    for (u, v), z in sorted(landing, key=lambda e: -e[1]):
        expected[v, u] = z  # nearest last, so it wins
    np.testing.assert_allclose(front, expected, atol=1e-3)


class Recording(torch.nn.Module):
    """Wraps a model and records every `predict` call's inputs and output (one inference per frame)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config, self.calls = model, model.config, []

    def predict(self, **inputs: torch.Tensor) -> torch.Tensor:
        output = self.inner.predict(**inputs)
        self.calls.append(({k: v.clone() for k, v in inputs.items()}, output.clone()))
        return output


def test_predictor_equals_calling_the_tiny_model_on_the_same_tensors():
    presets = pytest.importorskip("fusionocc_core.model.presets")
    torch.manual_seed(0)
    model = Recording(presets.build_model("tiny").eval())
    frames = [_frame(10.0 + 0.5 * j, _pose(4.0 * j)) for j in range(2)]  # second frame: temporal inputs
    reference = Predictor(model.inner, device="cpu")
    predictor = Predictor(model, device="cpu")
    assert predictor.input_size == tuple(model.config.camera.input_size)
    for frame in frames:
        expected, info = reference.prepare(frame)  # the tensors a direct model call gets
        result = predictor.predict(frame)
        inputs, output = model.calls[-1]
        for name, tensor in expected.as_kwargs().items():
            torch.testing.assert_close(inputs[name], tensor, rtol=0, atol=0, msg=name)
        np.testing.assert_array_equal(result.labels, output[0].numpy())  # the model's own labels
        assert result.lidar_sweeps == info["lidar_sweeps"]
    assert len(model.calls) == 2
    assert result.lidar_sweeps == 2 and result.previous_camera_lag_s == pytest.approx(0.5)
    assert result.timings_ms["inference"] > 0


def test_warm_up_runs_the_model_once_and_leaves_the_history_alone():
    presets = pytest.importorskip("fusionocc_core.model.presets")
    torch.manual_seed(0)
    model = Recording(presets.build_model("tiny").eval())
    predictor = Predictor(model, device="cpu")
    assert predictor.warm_up(num_points=2000) > 0
    assert len(model.calls) == 1 and model.calls[0][0]["images"].shape[:3] == (1, 2, 6)
    frame = _frame(10.0, _pose(0.0))
    result = predictor.predict(frame)
    assert result.lidar_sweeps == 1 and result.previous_camera_lag_s == 0  # no history came from the warm-up
    np.testing.assert_array_equal(result.labels, Predictor(model.inner, device="cpu").predict(frame).labels)


def test_from_preset_and_from_checkpoint_build_the_same_tiny_model(tmp_path):
    pytest.importorskip("fusionocc_core.model.presets")
    from fusionocc_core.model.checkpoint import save_checkpoint

    first = Predictor.from_preset("tiny", device="cpu", seed=3, precision="bf16")
    again = Predictor.from_preset("tiny", device="cpu", seed=3)
    assert first.precision == "bf16" and first.input_size == tuple(first.model.config.camera.input_size)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, first.model)
    loaded = Predictor.from_checkpoint(str(path), device="cpu", temporal=False)
    assert loaded.temporal is False and loaded.input_size == first.input_size
    for reference in (again, loaded):
        state, other = first.model.state_dict(), reference.model.state_dict()
        assert state.keys() == other.keys()
        assert all(torch.equal(state[k], other[k]) for k in state)


REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "reference"
MANIFEST = REFERENCE / "fusionocc_official_state_dict.json"
REDUCED_A = REFERENCE / "reduced_a" / "state_dict.pth"




@pytest.mark.skipif(not MANIFEST.is_file(), reason="reference manifest not present")
@pytest.mark.slow
def test_from_checkpoint_takes_the_published_download(published_checkpoint):
    """What the node does with `checkpoint:=<the authors' .pth>`: the official preset at its 512 x 1408 input,
    the file's weights in it (no forward: 109 M parameters at full resolution take minutes on 2 cores)."""
    path = published_checkpoint
    predictor = Predictor.from_checkpoint(str(path), device="cpu")
    from fusionocc_core.model.presets import get_config

    assert predictor.model.config == get_config("official") and predictor.input_size == (512, 1408)
    assert predictor.device == torch.device("cpu") and not predictor.model.training
    original = torch.load(path, weights_only=True, mmap=True)["state_dict"]
    state = predictor.model.state_dict()
    pairs = {
        "camera.neck.conv.0.weight": "img_neck.conv.0.weight",
        "head.predicter.2.bias": "predicter.2.bias",
        "occ_encoder.levels.2.2.bn2.running_var": "img_bev_encoder_backbone.layers.2.2.conv2.bn.running_var",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(state[ours], original[theirs]), ours


@pytest.mark.skipif(not REDUCED_A.is_file(), reason="reference data not present")
def test_from_checkpoint_takes_the_configuration_a_published_format_file_fits_and_names_bad_files(tmp_path):
    from fusionocc_core.model.checkpoint import CheckpointError

    predictor = Predictor.from_checkpoint(str(REDUCED_A), device="cpu")
    assert predictor.input_size == (128, 352)  # reduced_a's input, from the configuration its weights fit
    garbage = tmp_path / "fusion_occ.pth"
    garbage.write_bytes(b"<html>404 Not Found</html>")  # what a failed download leaves
    with pytest.raises(CheckpointError, match=r"^cannot read checkpoint .*not a torch checkpoint [^\n]*$"):
        Predictor.from_checkpoint(str(garbage), device="cpu")


def test_camera_pixels_equal_the_evaluation_data_pipeline():
    """Node (Predictor) and offline evaluation (OccupancyDataset, test-time augmentation) feed the network the
    same pixels and matrices for the same image: both resize with `resize_antialiased`."""
    from fusionocc_core.data.augment import (
        ImageAugConfig,
        image_aug_matrices,
        normalize_image,
        sample_image_aug,
        warp_image,
    )

    rng = np.random.default_rng(3)
    ys, xs = np.mgrid[0:H0, 0:W0]
    texture = 127 + 100 * np.sin(xs / 1.3) * np.cos(ys / 2.1)  # fine detail: aliases without a prefilter
    images = np.clip(texture[None, ..., None] + rng.normal(0, 20, (6, H0, W0, 3)), 0, 255).astype(np.uint8)
    inputs, _ = _predictor().prepare(_frame(0.0, _pose(0.0), images=images))
    aug = sample_image_aug((H0, W0), ImageAugConfig(input_size=INPUT), train=False, rng=rng)
    post_rot, post_tran = image_aug_matrices(aug)
    np.testing.assert_allclose(inputs.post_rots[0, 0, 0].numpy(), post_rot, rtol=1e-6)
    np.testing.assert_allclose(inputs.post_trans[0, 0, 0].numpy(), post_tran, rtol=1e-6)
    for camera in range(6):
        offline = normalize_image(warp_image(images[camera], post_rot, post_tran, INPUT, resize=aug.resize))
        np.testing.assert_allclose(inputs.images[0, 0, camera].numpy(), offline, atol=1e-5)


def test_each_camera_is_placed_with_the_ego_pose_at_its_own_stamp():
    """A camera that fired while the ego had moved 0.3 m further (in a yawed world frame) is 0.3 m further ahead
    in the key ego frame; the others are where the sweep's pose puts them. A malformed pose array is refused."""
    pose = _pose(0.0, yaw=0.4)
    moved = pose.copy()
    moved[:3, 3] += pose[:3, :3] @ np.array([0.3, 0.0, 0.0])  # 0.3 m along the ego's own x axis
    camera_poses = np.repeat(pose[None], 6, axis=0)
    camera_poses[2] = moved
    frame = _frame(0.0, pose)
    with_poses, _ = _predictor().prepare(SensorFrame(**{**frame.__dict__, "camera_ego_to_global": camera_poses}))
    sweep_pose, _ = _predictor().prepare(frame)
    delta = (with_poses.cam_to_key_ego - sweep_pose.cam_to_key_ego)[0, 0, :, :3, 3].numpy()
    np.testing.assert_allclose(delta[2], [0.3, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.delete(delta, 2, axis=0), 0.0, atol=1e-6)
    with pytest.raises(PredictorError, match="camera_ego_to_global must have shape"):
        _predictor().prepare(SensorFrame(**{**frame.__dict__, "camera_ego_to_global": camera_poses[:5]}))


def test_observe_bev_casts_each_fused_sweep_from_where_the_lidar_was():
    from fusionocc_core.visibility import bev_observed

    assert _predictor().predict(_frame(0.0, _pose(0.0))).observed_bev is None  # off by default
    predictor = _predictor(observe_bev=True)
    for j in range(11):  # 1 s at 10 Hz driving 8 m/s: 3 sweeps fused (current + keyframes 0.5 s apart)
        pose = _pose(0.8 * j)
        result = predictor.predict(_frame(10.0 + j / 10, pose))
    assert result.lidar_sweeps == 3 and "visibility" in result.timings_ms
    inputs = predictor.model.calls[-1]
    points = inputs["points"].numpy()
    lags = np.round(points[:, 5], 3)
    # where each sweep's lidar was, in the current ego frame: 4 m and 8 m behind the current lidar
    origins = np.array([LIDAR_TO_EGO[:3, 3] - [4.0 * k, 0.0, 0.0] for k in range(3)])
    expected = bev_observed(points[:, 1:4], origins, np.round(lags / 0.5).astype(int))
    np.testing.assert_array_equal(result.observed_bev, expected)
    # the single current sweep alone sees less than the three together
    alone = bev_observed(points[lags == 0, 1:4], origins[:1])
    assert alone.sum() < result.observed_bev.sum()
