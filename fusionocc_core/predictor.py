"""ROS-free inference: decoded sensor data + calibration + ego pose in, Occ3D labels out.

`Predictor` wraps a FusionOcc model for streaming use (the ROS node is a thin shell around it):

- images: one batched pass for all cameras on the model's device: uint8 -> float, resize so the width matches
  the network input (`resize_antialiased`: bicubic with antialiasing, as PIL's resize in the original and as
  the training/evaluation data pipeline, which shares the function), round to uint8 levels, bottom crop
  (`post_rot = diag(s, s, 1)`, `post_tran = (-crop_w, -crop_h, 0)`, so
  `pixel_in = post_rot @ (K @ X / z) + post_tran`), mmlab ImageNet normalisation (RGB);
- temporal history kept inside: the previous camera frame about `keyframe_interval_s` (0.5 s) earlier and
  the lidar sweeps nearest to 1..7 keyframe intervals earlier, all moved into the current ego frame through
  the ego poses; the points carry their time lag [s] as the last column;
- the history is cleared when time goes backwards, when the gap to the previous frame exceeds `max_gap_s` or
  when the ego moved more than `max_pose_jump_m` between two frames (bag loops, relocalisation);
- a rig different from the configured one (camera count, names/order, image size) is warned about once;
- per-stage timings [ms] come with every result.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fusionocc_core.errors import FusionOccError
from fusionocc_core.image_resize import resize_antialiased, scaled_size
from fusionocc_core.lidar_thinning import thinning_mask
from fusionocc_core.occ3d import CAMERA_NAMES, GRID_SHAPE
from fusionocc_core.visibility import bev_observed

LOGGER = logging.getLogger(__name__)

IMAGE_MEAN = (123.675, 116.28, 103.53)  # mmlab ImageNet mean, RGB, 0..255
IMAGE_STD = (58.395, 57.12, 57.375)
NOMINAL_IMAGE_SIZE = (1600, 900)  # (width, height) of the nuScenes cameras the model was trained on
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
STAGES: tuple[str, ...] = ("images", "history", "depth", "inference", "total")
NUM_LIDAR_KEYFRAMES = 7  # previous lidar keyframes fused with the current sweep by default, as in training


class PredictorError(FusionOccError, ValueError):
    """Invalid predictor configuration or sensor frame; the message names the problem."""


@dataclass(frozen=True)
class SensorFrame:
    """One synchronised set of decoded sensor data.

    Attributes:
        images: (N, H0, W0, 3) uint8 RGB, or a sequence of N (H0_i, W0_i, 3) arrays when sizes differ.
        intrinsics: (N, 3, 3) camera matrices of these images [px].
        cam_to_ego: (N, 4, 4) camera -> ego transforms (camera frame x right, y down, z forward).
        lidar_points: (P, 4 or 5) [x, y, z, intensity(, ring)] in the lidar frame.
        lidar_to_ego: (4, 4) lidar -> ego transform.
        ego_to_global: (4, 4) ego pose at the lidar stamp.
        stamp_s: the lidar stamp [s].
        camera_names: optional camera names in the order of `images` (checked against the predictor's).
        camera_present: optional (N,) bool; False marks a camera whose image is missing (sensor dropout):
            its entry in `images` is a placeholder of any size and its features are zeroed in the model.
        camera_ego_to_global: optional (N, 4, 4) ego pose at each image's own stamp. Cameras do not fire at the
            lidar stamp (nuScenes: up to ~45 ms apart, 0.7 m at 15 m/s), and the training data places each
            camera with its own ego pose, as BEVDet/FusionOcc do; None uses `ego_to_global` for every camera.
    """

    images: np.ndarray | Sequence[np.ndarray]
    intrinsics: np.ndarray
    cam_to_ego: np.ndarray
    lidar_points: np.ndarray
    lidar_to_ego: np.ndarray
    ego_to_global: np.ndarray
    stamp_s: float
    camera_names: tuple[str, ...] | None = None
    camera_present: np.ndarray | None = None
    camera_ego_to_global: np.ndarray | None = None


@dataclass(frozen=True)
class PredictionResult:
    """Labels of one frame.

    Attributes:
        labels: (200, 200, 16) uint8 Occ3D class ids indexed [x, y, z] in the ego frame at `stamp_s`.
        stamp_s: the frame's stamp [s].
        timings_ms: per stage ("images", "history", "depth", "inference", "total") [ms].
        lidar_sweeps: number of lidar sweeps fused (current + previous keyframes).
        previous_camera_lag_s: age of the previous camera frame used (0 when the current one was repeated).
        reset: True when the temporal history was cleared before this frame.
        observed_bev: (200, 200) bool [x, y], the columns a lidar ray of the fused sweeps crossed
            (`fusionocc_core.visibility.bev_observed`); None unless the predictor was made with observe_bev.
    """

    labels: np.ndarray
    stamp_s: float
    timings_ms: dict[str, float]
    lidar_sweeps: int
    previous_camera_lag_s: float
    reset: bool
    observed_bev: np.ndarray | None = None


@dataclass
class ModelInputs:
    """The tensors of one model call (batch size 1, T = 2: index 0 current, 1 previous), on the device."""

    images: torch.Tensor  # (1, 2, N, 3, H, W) normalised
    intrinsics: torch.Tensor  # (1, 2, N, 3, 3)
    cam_to_key_ego: torch.Tensor  # (1, 2, N, 4, 4)
    post_rots: torch.Tensor  # (1, 2, N, 3, 3)
    post_trans: torch.Tensor  # (1, 2, N, 3)
    bda: torch.Tensor  # (1, 3, 3)
    points: torch.Tensor  # (P, 6) [batch, x, y, z, intensity, time_lag_s]
    sparse_depth: torch.Tensor  # (1, N, H, W)
    camera_mask: torch.Tensor | None = None  # (1, 2, N), 0 = missing image; None when every camera is there

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for `FusionOcc.forward` / `FusionOcc.predict` (`camera_mask` only when a camera
        is missing)."""
        names = ["images", "intrinsics", "cam_to_key_ego", "post_rots", "post_trans", "bda", "points",
                 "sparse_depth"]
        if self.camera_mask is not None:
            names.append("camera_mask")
        return {name: getattr(self, name) for name in names}


@dataclass
class _CameraFrame:
    stamp_s: float
    pixels: torch.Tensor  # (N, 3, H, W) uint8 after resize + crop, on the device
    intrinsics: np.ndarray  # (N, 3, 3)
    cam_to_ego: np.ndarray  # (N, 4, 4)
    post_rots: np.ndarray  # (N, 3, 3)
    post_trans: np.ndarray  # (N, 3)
    camera_ego_to_global: np.ndarray  # (N, 4, 4) ego pose at each image's stamp
    present: np.ndarray  # (N,) bool, False for a missing camera (dropout)


@dataclass
class _LidarSweep:
    stamp_s: float
    points: np.ndarray  # (P, 4) float32 [x, y, z, intensity] in the ego frame at stamp_s
    ego_to_global: np.ndarray
    origin: np.ndarray  # (3,) the lidar's position in the ego frame at stamp_s (where its rays start)


@dataclass
class _History:
    cameras: deque[_CameraFrame] = field(default_factory=deque)
    sweeps: deque[_LidarSweep] = field(default_factory=deque)
    last_stamp_s: float | None = None
    last_pose: np.ndarray | None = None


def model_input_size(model: Any) -> tuple[int, int]:
    """(height, width) of the network's camera input, read from the model's config.

    Raises:
        PredictorError: the model exposes no input size.
    """
    config = getattr(model, "config", None)
    for path in (("camera", "input_size"), ("input_size",), ("image_size",)):
        value: Any = config
        for name in path:
            value = getattr(value, name, None)
        if value is not None:
            height, width = (int(v) for v in value)
            return height, width
    raise PredictorError(
        f"cannot read the network input size from {type(model).__name__}.config "
        "(looked for camera.input_size, input_size, image_size); pass input_size=(H, W)"
    )


def resize_crop_params(
    image_size: tuple[int, int], input_size: tuple[int, int]
) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """Test-time resize + bottom crop of BEVDet/FusionOcc.

    Args:
        image_size: (width, height) of the source image.
        input_size: (height, width) of the network input.

    Returns:
        (scale, (resized_w, resized_h), (crop_w, crop_h)): the image is resized by `scale` to the resized
        size, then the window starting at (crop_w, crop_h) of the input size is cut (negative = zero padding).
    """
    width, height = image_size
    in_h, in_w = input_size
    scale = in_w / width
    resized = scaled_size(width, height, scale)
    crop_h = resized[1] - in_h  # bottom crop: keep the lowest rows
    crop_w = max(0, resized[0] - in_w) // 2
    return scale, resized, (crop_w, crop_h)


class Predictor:
    """Streaming FusionOcc inference on decoded sensor frames (see the module docstring).

    Args:
        model: a FusionOcc model (or any module with the same `predict`/`forward` keyword interface).
        device: "cpu", "cuda", "cuda:1", or "auto" (CUDA when available).
        precision: "fp32", "fp16" or "bf16" (autocast; the model weights stay fp32).
        camera_names: camera order the model expects.
        input_size: (H, W) network input; read from the model's config when None.
        temporal: False disables the history (the current frame is repeated as the previous one and only the
            current sweep is used).
        keyframe_interval_s: spacing of the previous camera frame and of the lidar keyframes [s].
        num_lidar_keyframes: previous lidar keyframes fused with the current sweep.
        max_gap_s: a larger gap between two frames clears the history [s].
        max_pose_jump_m: a larger ego displacement between two frames clears the history [m].
        thin_points: thin each sweep as the model was trained (`fusionocc_core.lidar_thinning`: ring > 16 plus
            every 5th other point, identical to the offline evaluation); needs the ring column.
        sparse_depth_fn: `sparse_depth_map`-compatible function; the model package's by default.
        observe_bev: also compute which bird's-eye columns the fused sweeps observed
            (`PredictionResult.observed_bev`, a few ms per sweep), to tell unknown space from free space.

    Raises:
        PredictorError: an unknown precision, a precision the device cannot run, or invalid options.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        camera_names: Sequence[str] = CAMERA_NAMES,
        input_size: tuple[int, int] | None = None,
        temporal: bool = True,
        keyframe_interval_s: float = 0.5,
        num_lidar_keyframes: int = NUM_LIDAR_KEYFRAMES,
        max_gap_s: float = 2.0,
        max_pose_jump_m: float = 10.0,
        thin_points: bool = True,
        sparse_depth_fn: Callable[..., torch.Tensor] | None = None,
        observe_bev: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise PredictorError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if keyframe_interval_s <= 0 or num_lidar_keyframes < 0 or max_gap_s <= 0 or max_pose_jump_m <= 0:
            raise PredictorError(
                "keyframe_interval_s, max_gap_s and max_pose_jump_m must be > 0 and num_lidar_keyframes >= 0"
            )
        self.device = resolve_device(device)
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        if self.dtype != torch.float32:
            _check_autocast(self.device, self.dtype)
        self.model: Any = model.to(self.device).eval()  # FusionOcc or any module with the same predict()
        camera: Any = getattr(self.model, "camera", None)
        if hasattr(camera, "cache_image_features"):  # a frame's backbone pass serves again as the previous frame
            camera.cache_image_features = True
        self.camera_names = tuple(camera_names)
        self.input_size: tuple[int, int] = (
            (input_size[0], input_size[1]) if input_size is not None else model_input_size(model))
        self.temporal = temporal
        self.keyframe_interval_s = float(keyframe_interval_s)
        self.num_lidar_keyframes = int(num_lidar_keyframes)
        self.max_gap_s = float(max_gap_s)
        self.max_pose_jump_m = float(max_pose_jump_m)
        self.thin_points = thin_points
        self._sparse_depth_fn = sparse_depth_fn
        self.observe_bev = observe_bev
        self._history = _History()
        self._warned: set[str] = set()
        self.resets: Counter[str] = Counter()
        self._mean = torch.tensor(IMAGE_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGE_STD, device=self.device).view(1, 3, 1, 1)

    # ------------------------------------------------------------------------------------------ builders

    @classmethod
    def from_checkpoint(cls, path: str, *, device: str = "auto", **options: Any) -> Predictor:
        """Loads a checkpoint and wraps it; options as __init__. Either format: a fusionocc checkpoint (its config
        is stored inside) or the published FusionOcc .pth as downloaded (the preset its weights fit is built and
        the conversion report logged by `fusionocc_core.model.checkpoint`).

        Raises:
            CheckpointError: one line saying why the file cannot be used.
        """
        from fusionocc_core.model.checkpoint import load_checkpoint

        resolved = resolve_device(device)
        return cls(load_checkpoint(path, resolved), device=resolved, **options)

    @classmethod
    def from_preset(
        cls, name: str, *, device: str = "auto", seed: int | None = 0, **options: Any
    ) -> Predictor:
        """A preset model ("official", "fast", "tiny") with seeded random weights (tests, benchmarks)."""
        from fusionocc_core.model.presets import build_model

        if seed is not None:
            torch.manual_seed(seed)
        return cls(build_model(name), device=device, **options)

    # ------------------------------------------------------------------------------------------ streaming

    def reset(self, reason: str = "requested") -> None:
        """Clears the temporal history."""
        self._history = _History()
        self._clear_image_feature_cache()
        self.resets[reason] += 1

    def _clear_image_feature_cache(self) -> None:
        camera: Any = getattr(self.model, "camera", None)
        if hasattr(camera, "clear_image_feature_cache"):
            camera.clear_image_feature_cache()

    @torch.inference_mode()
    def warm_up(self, num_points: int = 20_000, seed: int = 0) -> float:
        """Runs the model once on made-up inputs of the real shapes and returns the time it took [ms].

        A process's first inference pays one-off costs (oneDNN kernel selection, allocator growth, lazy
        imports) of up to a few times a normal frame; a node that pays them on its first real frame drops the
        sweeps that arrive meanwhile. The temporal history is not touched."""
        height, width = self.input_size
        n = len(self.camera_names)
        generator = torch.Generator().manual_seed(seed)
        intrinsics = torch.tensor([[width, 0.0, width / 2], [0.0, width, height / 2], [0.0, 0.0, 1.0]])
        camera_to_ego = torch.eye(4)
        camera_to_ego[:3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # looks +x
        angle = torch.rand(num_points, generator=generator) * 2 * torch.pi
        distance = 2 + torch.rand(num_points, generator=generator) * 30
        points = torch.stack([torch.zeros(num_points), distance * torch.cos(angle), distance * torch.sin(angle),
                              torch.rand(num_points, generator=generator) * 3 - 1,
                              torch.rand(num_points, generator=generator), torch.zeros(num_points)], dim=1)
        inputs = ModelInputs(
            images=torch.zeros(1, 2, n, 3, height, width), intrinsics=intrinsics.expand(1, 2, n, 3, 3),
            cam_to_key_ego=camera_to_ego.expand(1, 2, n, 4, 4), post_rots=torch.eye(3).expand(1, 2, n, 3, 3),
            post_trans=torch.zeros(1, 2, n, 3), bda=torch.eye(3).unsqueeze(0), points=points,
            sparse_depth=torch.zeros(1, n, height, width))
        kwargs = {k: v.to(self.device).contiguous() for k, v in inputs.as_kwargs().items()}
        timer = _Timer(self.device)
        with self._autocast():
            self.model.predict(**kwargs)
        timer.lap("inference")
        self._clear_image_feature_cache()  # the made-up images must not serve as a real previous frame
        return timer.timings["inference"]

    @torch.inference_mode()
    def predict(self, frame: SensorFrame) -> PredictionResult:
        """Runs one frame and updates the temporal history.

        Raises:
            PredictorError: a malformed frame (the message names the field and the expected shape).
        """
        timer = _Timer(self.device)
        inputs, info = self.prepare(frame, timer=timer)
        with self._autocast():
            labels = self.model.predict(**inputs.as_kwargs())  # (1, 200, 200, 16)
        labels = _to_labels(labels)
        timer.lap("inference")
        timer.total()
        return PredictionResult(
            labels=labels,
            stamp_s=float(frame.stamp_s),
            timings_ms=timer.timings,
            lidar_sweeps=info["lidar_sweeps"],
            previous_camera_lag_s=info["prev_lag"],
            reset=info["reset"],
            observed_bev=info["observed_bev"],
        )

    @torch.inference_mode()
    def prepare(
        self, frame: SensorFrame, *, timer: _Timer | None = None
    ) -> tuple[ModelInputs, dict[str, Any]]:
        """Preprocesses one frame into model inputs and updates the history (what `predict` runs first)."""
        timer = timer or _Timer(self.device)
        images, intrinsics, cam_to_ego, points, lidar_to_ego, ego_to_global, camera_poses = self._validated(
            frame)
        present = np.ones(len(images), dtype=bool)
        if frame.camera_present is not None:
            present = np.asarray(frame.camera_present, dtype=bool).reshape(-1)
            if present.shape != (len(images),):
                raise PredictorError(f"camera_present must have one entry per image ({len(images)}), "
                                     f"got {present.shape[0]}")
        stamp = float(frame.stamp_s)
        reset = self._maybe_reset(stamp, ego_to_global)

        current = self._camera_frame(stamp, images, intrinsics, cam_to_ego, camera_poses, present)
        timer.lap("images")

        points_ego = points[:, :3] @ lidar_to_ego[:3, :3].T + lidar_to_ego[:3, 3]
        keep: slice | np.ndarray = slice(None)
        if self.thin_points:
            if points.shape[1] >= 5:
                keep = thinning_mask(points[:, 4])
            else:
                self._warn_once("no_ring", "lidar points have no ring column: thinning is off, the model sees "
                                           "denser clouds than it was trained on")
        sweep = _LidarSweep(
            stamp, np.concatenate([points_ego, points[:, 3:4]], 1)[keep].astype(np.float32), ego_to_global,
            lidar_to_ego[:3, 3].astype(np.float64),
        )
        previous = self._previous_camera(stamp) if self.temporal else None
        sweeps = [sweep, *self._previous_sweeps(stamp)] if self.temporal else [sweep]
        world_to_current = np.linalg.inv(ego_to_global)
        fused, origins = [], []
        for past in sweeps:
            to_current = world_to_current @ past.ego_to_global
            xyz = past.points[:, :3].astype(np.float64) @ to_current[:3, :3].T + to_current[:3, 3]
            lag = np.full((xyz.shape[0], 1), stamp - past.stamp_s)
            fused.append(np.concatenate([np.zeros((xyz.shape[0], 1)), xyz, past.points[:, 3:4], lag], 1))
            origins.append(to_current[:3, :3] @ past.origin + to_current[:3, 3])
        fused_points = np.concatenate(fused)  # (P, 6) [batch, x, y, z, intensity, lag]
        points_tensor = torch.from_numpy(fused_points.astype(np.float32)).to(self.device)

        prev = previous or current
        frames = (current, prev)
        cam_to_key = np.stack(  # each camera placed with the ego pose at its own image stamp
            [np.einsum("ij,njk,nkl->nil", world_to_current, f.camera_ego_to_global, f.cam_to_ego)
             for f in frames]
        )
        as_tensor = self._tensor
        pixels = torch.stack([f.pixels for f in frames])  # (2, N, 3, H, W) uint8
        normalised = (pixels.float() - self._mean) / self._std
        inputs = ModelInputs(
            images=normalised.unsqueeze(0),
            intrinsics=as_tensor(np.stack([f.intrinsics for f in frames]))[None],
            cam_to_key_ego=as_tensor(cam_to_key)[None],
            post_rots=as_tensor(np.stack([f.post_rots for f in frames]))[None],
            post_trans=as_tensor(np.stack([f.post_trans for f in frames]))[None],
            bda=torch.eye(3, device=self.device)[None],
            points=points_tensor,
            sparse_depth=torch.zeros(0),
            camera_mask=None if all(f.present.all() for f in frames)
            else torch.from_numpy(np.stack([f.present for f in frames]).astype(np.float32))[None].to(self.device),
        )
        self._remember(current, sweep)
        timer.lap("history")

        height, width = self.input_size
        depth_fn = self._sparse_depth_fn or _default_sparse_depth_fn()
        inputs.sparse_depth = depth_fn(  # from the whole current sweep, before thinning (as in training)
            torch.from_numpy(points_ego.astype(np.float32)).to(self.device),
            inputs.intrinsics[0, 0],
            inputs.cam_to_key_ego[0, 0],
            inputs.post_rots[0, 0],
            inputs.post_trans[0, 0],
            height,
            width,
        )[None].float()  # (1, N, H, W)
        timer.lap("depth")
        info: dict[str, Any] = {
            "lidar_sweeps": len(sweeps),
            "reset": reset,
            "prev_lag": 0.0 if previous is None else stamp - previous.stamp_s,
            "observed_bev": None,
        }
        if self.observe_bev:
            info["observed_bev"] = bev_observed(fused_points[:, 1:4], np.stack(origins),
                                                np.repeat(np.arange(len(fused)), [len(f) for f in fused]))
            timer.lap("visibility")
        return inputs, info

    # ------------------------------------------------------------------------------------------ internals

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

    def _autocast(self) -> Any:
        if self.dtype == torch.float32:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            LOGGER.warning(message)

    def _validated(
        self, frame: SensorFrame
    ) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
               np.ndarray]:
        images = frame.images
        if isinstance(images, np.ndarray):
            if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
                raise PredictorError(
                    f"images must be (N, H, W, 3) uint8 RGB, got {images.shape} {images.dtype}"
                )
        else:
            images = list(images)
            for index, image in enumerate(images):
                if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                    raise PredictorError(
                        f"image {index} must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}"
                    )
        count = len(images)
        intrinsics = _array(frame.intrinsics, (count, 3, 3), "intrinsics")
        cam_to_ego = _array(frame.cam_to_ego, (count, 4, 4), "cam_to_ego")
        lidar_to_ego = _array(frame.lidar_to_ego, (4, 4), "lidar_to_ego")
        ego_to_global = _array(frame.ego_to_global, (4, 4), "ego_to_global")
        if frame.camera_ego_to_global is None:
            camera_poses = np.repeat(ego_to_global[None], count, axis=0)
        else:
            camera_poses = _array(frame.camera_ego_to_global, (count, 4, 4), "camera_ego_to_global")
        points = np.asarray(frame.lidar_points)
        if points.ndim != 2 or points.shape[1] < 4:
            raise PredictorError(
                f"lidar_points must be (P, 4 or 5) [x, y, z, intensity(, ring)], got {points.shape}"
            )
        if not np.isfinite(points[:, :4]).all():
            raise PredictorError("lidar_points contain NaN or infinite values; drop them first")
        if not np.isfinite(float(frame.stamp_s)):
            raise PredictorError(f"stamp_s must be finite, got {frame.stamp_s}")
        self._check_rig(frame, images)
        return images, intrinsics, cam_to_ego, points, lidar_to_ego, ego_to_global, camera_poses

    def _check_rig(self, frame: SensorFrame, images: list[np.ndarray] | np.ndarray) -> None:
        if len(images) != len(self.camera_names):
            self._warn_once(
                "count",
                f"the rig has {len(images)} cameras, the model was set up for "
                f"{len(self.camera_names)} ({', '.join(self.camera_names)}); running anyway, "
                "expect degraded occupancy",
            )
        if frame.camera_names is not None and tuple(frame.camera_names) != self.camera_names:
            self._warn_once(
                "order",
                f"camera order {', '.join(frame.camera_names)} differs from the model's "
                f"{', '.join(self.camera_names)}; images are used in the order given",
            )
        sizes = {(image.shape[1], image.shape[0]) for image in images}
        nominal = NOMINAL_IMAGE_SIZE
        aspect = {round(w / h, 3) for w, h in sizes}
        if aspect != {round(nominal[0] / nominal[1], 3)}:
            self._warn_once(
                "size",
                f"image size(s) {sorted(sizes)} (width, height) have another aspect ratio "
                f"than the {nominal[0]}x{nominal[1]} training images; the resize + bottom "
                "crop sees a different field of view",
            )

    def _maybe_reset(self, stamp: float, ego_to_global: np.ndarray) -> bool:
        history = self._history
        reason = None
        if history.last_stamp_s is not None and history.last_pose is not None:
            gap = stamp - history.last_stamp_s
            jump = float(np.linalg.norm(ego_to_global[:3, 3] - history.last_pose[:3, 3]))
            if gap <= 0:
                reason = "time_backwards"
            elif gap > self.max_gap_s:
                reason = "time_gap"
            elif jump > self.max_pose_jump_m:
                reason = "pose_jump"
            if reason is not None:
                LOGGER.info("temporal history cleared (%s: gap %.3f s, ego moved %.2f m)", reason, gap, jump)
                self.reset(reason)
        history = self._history
        history.last_stamp_s, history.last_pose = stamp, ego_to_global.copy()
        return reason is not None

    def _camera_frame(
        self,
        stamp: float,
        images: list[np.ndarray] | np.ndarray,
        intrinsics: np.ndarray,
        cam_to_ego: np.ndarray,
        camera_poses: np.ndarray,
        present: np.ndarray,
    ) -> _CameraFrame:
        height, width = self.input_size
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault((image.shape[1], image.shape[0]), []).append(index)
        pixels = torch.empty((len(images), 3, height, width), dtype=torch.uint8, device=self.device)
        post_rots = np.tile(np.eye(3), (len(images), 1, 1))
        post_trans = np.zeros((len(images), 3))
        for size, indices in groups.items():  # one batched pass per distinct image size (usually one)
            scale, resized, (crop_w, crop_h) = resize_crop_params(size, self.input_size)
            if isinstance(images, np.ndarray) and len(groups) == 1:
                batch = torch.from_numpy(images)
            else:
                batch = torch.from_numpy(np.stack([images[i] for i in indices]))
            batch = batch.to(self.device).permute(0, 3, 1, 2)  # (n, 3, H0, W0) uint8
            batch = resize_antialiased(batch, resized)
            pixels[indices] = _crop(batch, crop_w, crop_h, height, width)
            post_rots[indices, 0, 0] = post_rots[indices, 1, 1] = scale
            post_trans[indices, 0], post_trans[indices, 1] = -crop_w, -crop_h
        return _CameraFrame(
            stamp,
            pixels,
            intrinsics.astype(np.float64),
            cam_to_ego.astype(np.float64),
            post_rots,
            post_trans,
            camera_poses.astype(np.float64),
            present,
        )

    def _previous_camera(self, stamp: float) -> _CameraFrame | None:
        """The remembered camera frame nearest to one keyframe interval ago (within half an interval)."""
        target = stamp - self.keyframe_interval_s
        best = min(self._history.cameras, key=lambda f: abs(f.stamp_s - target), default=None)
        if best is None or abs(best.stamp_s - target) > self.keyframe_interval_s / 2:
            return None
        return best

    def _previous_sweeps(self, stamp: float) -> list[_LidarSweep]:
        """For k = 1..num_lidar_keyframes the remembered sweep nearest to k intervals ago (each used once)."""
        chosen: list[_LidarSweep] = []
        for k in range(1, self.num_lidar_keyframes + 1):
            target = stamp - k * self.keyframe_interval_s
            candidates = [s for s in self._history.sweeps if all(s is not c for c in chosen)]
            best = min(candidates, key=lambda s: abs(s.stamp_s - target), default=None)
            if best is not None and abs(best.stamp_s - target) <= self.keyframe_interval_s / 2:
                chosen.append(best)
        return chosen

    def _remember(self, camera: _CameraFrame, sweep: _LidarSweep) -> None:
        """Keeps frames at least a fifth of an interval apart, as far back as the history reaches."""
        spacing = self.keyframe_interval_s / 5
        history = self._history
        if not history.cameras or camera.stamp_s - history.cameras[-1].stamp_s >= spacing * 0.95:
            history.cameras.append(camera)
            history.sweeps.append(sweep)
        camera_horizon = camera.stamp_s - 1.5 * self.keyframe_interval_s
        while history.cameras and history.cameras[0].stamp_s < camera_horizon:
            history.cameras.popleft()
        lidar_horizon = camera.stamp_s - (self.num_lidar_keyframes + 0.5) * self.keyframe_interval_s
        while history.sweeps and history.sweeps[0].stamp_s < lidar_horizon:
            history.sweeps.popleft()


class _Timer:
    """Per-stage wall-clock timings [ms] (synchronising CUDA so GPU work is attributed to its stage)."""

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._start = self._last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        if self._cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self._last) * 1e3
        self._last = now

    def total(self) -> None:
        self.timings["total"] = (self._last - self._start) * 1e3


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; otherwise torch.device(device), checked to exist."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PredictorError(
            f"device {device!r} requested but CUDA is not available (torch {torch.__version__})"
        )
    return resolved


def _check_autocast(device: torch.device, dtype: torch.dtype) -> None:
    try:
        with torch.autocast(device.type, dtype=dtype):
            torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except (RuntimeError, AssertionError) as error:
        raise PredictorError(f"precision {dtype} is not supported on {device}: {error}") from None
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise PredictorError(f"bf16 is not supported by {torch.cuda.get_device_name(device)}")


def _array(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise PredictorError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise PredictorError(f"{name} contains NaN or infinite values")
    return array


def _crop(batch: torch.Tensor, crop_w: int, crop_h: int, height: int, width: int) -> torch.Tensor:
    """Window [crop_h, crop_h + height) x [crop_w, crop_w + width) of (n, 3, H, W), zero outside the image."""
    out = torch.zeros((batch.shape[0], 3, height, width), dtype=batch.dtype, device=batch.device)
    src_y0, src_x0 = max(crop_h, 0), max(crop_w, 0)
    src_y1, src_x1 = min(crop_h + height, batch.shape[2]), min(crop_w + width, batch.shape[3])
    if src_y1 > src_y0 and src_x1 > src_x0:
        out[:, :, src_y0 - crop_h : src_y1 - crop_h, src_x0 - crop_w : src_x1 - crop_w] = batch[
            :, :, src_y0:src_y1, src_x0:src_x1
        ]
    return out


def _to_labels(labels: Any) -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim == 4:
        array = array[0]
    if array.shape != GRID_SHAPE:
        raise PredictorError(f"model returned labels of shape {array.shape}, expected {GRID_SHAPE}")
    return array.astype(np.uint8, copy=False)


def _default_sparse_depth_fn() -> Callable[..., torch.Tensor]:
    try:
        from fusionocc_core.model.lidar_depth import sparse_depth_map
    except ImportError as error:
        raise PredictorError(
            f"fusionocc_core.model.lidar_depth.sparse_depth_map is not available ({error}); "
            "pass sparse_depth_fn"
        ) from None
    return sparse_depth_map
