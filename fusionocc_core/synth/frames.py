"""Per-frame work of one scene: the sensor timeline and the renderer that writes each sample_data's files.

Every frame is independent (own random stream seeded by its timestamp), so frames can be rendered in any
order and in worker processes; the outputs carry what the tables need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusionocc_core.occ3d import LIDAR_NAME
from fusionocc_core.synth.camera import render_camera
from fusionocc_core.synth.config import VERSION, SynthConfig
from fusionocc_core.synth.files import write_jpeg, write_npz
from fusionocc_core.synth.layout import build_world
from fusionocc_core.synth.lidar import LidarSweep, simulate_sweep
from fusionocc_core.synth.occupancy import mask_camera, mask_lidar, semantics
from fusionocc_core.synth.raycast import BoxScene, box_corners
from fusionocc_core.synth.sensors import (
    CAMERA_PERIOD,
    CAMERAS,
    KEYFRAME_PERIOD,
    LIDAR,
    LIDAR_PERIOD,
    CameraSpec,
)
from fusionocc_core.synth.tables import make_token
from fusionocc_core.synth.transforms import rot_z
from fusionocc_core.synth.world import BoxSet, World, count_points_in_boxes

BASE_TIMESTAMP = 1_700_000_000_000_000  # [us]
LIDAR_PER_KEYFRAME = round(KEYFRAME_PERIOD / LIDAR_PERIOD)  # 10
CAMERA_PER_KEYFRAME = round(KEYFRAME_PERIOD / CAMERA_PERIOD)  # 6


@dataclass(frozen=True)
class Frame:
    """One sample_data to write."""

    time: float  # [s] since the scene's first keyframe
    channel: str
    keyframe: int  # the sample it belongs to (the next keyframe for sweeps)
    is_key: bool


@dataclass(frozen=True)
class KeyframeObjects:
    """What a keyframe lidar frame measured about the annotated objects near the ego."""

    agents: np.ndarray  # (K,) agent indices within the annotation radius
    centres: np.ndarray  # (K, 3) box centres, global [m]
    yaws: np.ndarray  # (K,) [rad]
    num_lidar_pts: np.ndarray  # (K,) lidar points inside each box
    visible_fraction: np.ndarray  # (K,) fraction of probe points seen from the camera rig


@dataclass(frozen=True)
class FrameOutput:
    """A written frame: its sample_data fields, ego pose and (keyframe lidar only) object measurements."""

    frame: Frame
    token: str
    timestamp: int
    filename: str
    width: int
    height: int
    fileformat: str
    translation: np.ndarray  # ego position (3,) [m]
    yaw: float  # ego yaw [rad]
    objects: KeyframeObjects | None = None


def scene_world(*, seed: int, scene_index: int, keyframes_per_scene: int) -> World:
    """The world of scene `scene_index` (0-based) of a dataset made with `seed` (the generator's truth)."""
    duration = (keyframes_per_scene - 1) * KEYFRAME_PERIOD + 0.1
    return build_world(np.random.default_rng([seed, scene_index, 0]), duration=duration)


def scene_frames(config: SynthConfig) -> list[Frame]:
    """All sample_data of one scene in time order: 20 Hz lidar, 12 Hz cameras staggered after the lidar."""
    k = config.keyframes_per_scene
    frames = []
    for j in range(LIDAR_PER_KEYFRAME * (k - 1) + 1):
        if config.with_sweeps or j % LIDAR_PER_KEYFRAME == 0:
            key = j % LIDAR_PER_KEYFRAME == 0
            frames.append(Frame(j * LIDAR_PERIOD, LIDAR_NAME, -(-j // LIDAR_PER_KEYFRAME), key))
    for camera in CAMERAS:
        for m in range(CAMERA_PER_KEYFRAME * (k - 1) + 1):
            if config.with_sweeps or m % CAMERA_PER_KEYFRAME == 0:
                key = m % CAMERA_PER_KEYFRAME == 0
                frames.append(
                    Frame(m * CAMERA_PERIOD + camera.delay, camera.name, -(-m // CAMERA_PER_KEYFRAME), key)
                )
    return sorted(frames, key=lambda f: (f.time, f.channel))


class SceneNames:
    """Names, tokens and timestamps of one scene (shared by the frame renderer and the table writer)."""

    def __init__(self, config: SynthConfig, index: int) -> None:
        self.config, self.index = config, index
        self.name = f"scene-{index + 1:04d}"
        self.log_name = f"synth-{config.seed}-{index + 1:04d}"
        self.t0 = BASE_TIMESTAMP + config.seed * 10_000_000_000 + index * 100_000_000
        self.sample_tokens = [self.tok("sample", k) for k in range(config.keyframes_per_scene)]

    def tok(self, *parts: object) -> str:
        return make_token(self.config.seed, self.index, *parts)

    def timestamp(self, time: float) -> int:
        return self.t0 + round(time * 1e6)


class FrameRenderer:
    """Renders and writes the files of the frames of one scene."""

    def __init__(self, root: Path, config: SynthConfig, index: int) -> None:
        self.root, self.config, self.index = root, config, index
        self.names = SceneNames(config, index)
        self.world = scene_world(
            seed=config.seed, scene_index=index, keyframes_per_scene=config.keyframes_per_scene
        )
        self._rays: dict[tuple[str, int, int], np.ndarray] = {}

    def render(self, frame: Frame) -> FrameOutput:
        """Writes one frame's files (image or point cloud, and for keyframe sweeps lidarseg and Occ3D)."""
        names = self.names
        stamp = names.timestamp(frame.time)
        token = names.tok("sample_data", frame.channel, stamp)
        position, yaw = self.world.ego_pose(frame.time)
        rotation = rot_z(yaw)
        scene = BoxScene(self.world.boxes_at(frame.time), anchor=position)
        rng = np.random.default_rng([self.config.seed, self.index, 1, stamp])
        folder = "samples" if frame.is_key else "sweeps"
        base = f"{folder}/{frame.channel}/{names.log_name}__{frame.channel}__{stamp}"
        objects = None
        if frame.channel == LIDAR_NAME:
            sweep = simulate_sweep(
                scene,
                spec=LIDAR,
                origin=position + rotation @ np.array(LIDAR.translation),
                rotation=rotation @ LIDAR.rotation,
                rng=rng,
            )
            filename, width, height, fileformat = base + ".pcd.bin", 0, 0, "pcd"
            sweep.points.tofile(self.root / filename)
            if frame.is_key:
                sweep.category.astype(np.uint8).tofile(self.root / f"lidarseg/{VERSION}/{token}_lidarseg.bin")
                self._write_occupancy(frame.keyframe, sweep, scene, position, yaw)
                objects = self._measure_objects(frame.keyframe, sweep, scene, position, yaw)
        else:
            camera = next(c for c in CAMERAS if c.name == frame.channel)
            width, height, fileformat = self.config.image_width, self.config.image_height, "jpg"
            filename = base + ".jpg"
            scale = 1.0 if frame.is_key else self.config.sweep_image_scale
            w, h = max(8, round(width * scale)), max(8, round(height * scale))
            render = render_camera(
                scene,
                origin=position + rotation @ np.array(camera.translation),
                rotation=rotation @ camera.rotation,
                rays_cam=self._pixel_rays(camera, w, h),
                width=w,
                height=h,
                sun=self.world.sun,
                rng=rng,
            )
            rgb = render.rgb
            if (w, h) != (width, height):  # sweeps rendered smaller for speed
                rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
            write_jpeg(self.root / filename, rgb, quality=self.config.jpeg_quality)
        return FrameOutput(frame, token, stamp, filename, width, height, fileformat, position, yaw, objects)

    def _pixel_rays(self, camera: CameraSpec, width: int, height: int) -> np.ndarray:
        key = (camera.name, width, height)
        if key not in self._rays:
            self._rays[key] = camera.pixel_rays(width, height)
        return self._rays[key]

    def _measure_objects(
        self, k: int, sweep: LidarSweep, scene: BoxScene, position: np.ndarray, yaw: float
    ) -> KeyframeObjects:
        agents = self.world.agents
        centres, yaws = agents.boxes(self.world.road, k * KEYFRAME_PERIOD)
        near = np.nonzero(np.hypot(*(centres[:, :2] - position[:2]).T) <= self.config.annotation_radius)[0]
        rotation = rot_z(yaw)
        xyz = (
            sweep.points[:, :3] @ (rotation @ LIDAR.rotation).T
            + position
            + rotation @ np.array(LIDAR.translation)
        )
        counts = count_points_in_boxes(xyz, centres[near], agents.size[near], yaws[near])
        fraction = _visible_fraction(scene, position, yaw, centres[near], yaws[near], agents.size[near], near)
        return KeyframeObjects(near, centres[near], yaws[near], counts, fraction)

    def _write_occupancy(
        self, k: int, sweep: LidarSweep, scene: BoxScene, position: np.ndarray, yaw: float
    ) -> None:
        boxes = scene.boxes.transformed(-yaw, -rot_z(-yaw) @ position)
        labels = semantics(boxes)
        lidar_mask = mask_lidar(
            np.array(LIDAR.translation), sweep.directions @ LIDAR.rotation.T, sweep.ranges
        )
        cams = [(c.rotation, np.array(c.translation), c.intrinsics(1600, 900), 1600, 900) for c in CAMERAS]
        camera_mask = mask_camera(scene, ego_rotation=rot_z(yaw), ego_translation=position, cameras=cams)
        folder = self.root / "gts" / self.names.name / self.names.sample_tokens[k]
        folder.mkdir(parents=True, exist_ok=True)
        write_npz(folder / "labels.npz", semantics=labels, mask_lidar=lidar_mask, mask_camera=camera_mask)


def _visible_fraction(
    scene: BoxScene,
    position: np.ndarray,
    yaw: float,
    centres: np.ndarray,
    yaws: np.ndarray,
    sizes: np.ndarray,
    agents: np.ndarray,
) -> np.ndarray:
    """Fraction of 9 probe points per box (centre, shrunk corners) seen unoccluded from the camera rig."""
    n = len(centres)
    shrunk = BoxSet(
        centres,
        sizes * 0.6,
        yaws,
        *(np.zeros(n, np.uint8),) * 3,
        np.zeros((n, 3), np.float32),
        np.zeros(n, np.int32),
        np.zeros((n, 2), np.float32),
    )
    probes = np.concatenate([centres[:, None], box_corners(shrunk)], 1).reshape(-1, 3)
    owner = np.repeat(agents, 9)
    eye = position + rot_z(yaw) @ np.array([1.0, 0.0, 1.55])
    rel = probes - eye
    dist = np.linalg.norm(rel, axis=1)
    hits = scene.cast(eye, rel / dist[:, None], max_distance=dist)
    seen = ~hits.hit | (scene.boxes.instance[np.maximum(hits.primitive, 0)] == owner)
    return seen.reshape(n, 9).mean(1)


# ---- worker processes: one renderer per scene, built on first use ----

_WORKER: dict[str, object] = {}


def init_worker(root: Path, config: SynthConfig) -> None:
    """Pool initializer: remembers where and what to render."""
    _WORKER.update(root=root, config=config, renderers={})


def render_in_worker(task: tuple[int, Frame]) -> FrameOutput:
    """Renders frame `task[1]` of scene `task[0]` in a worker process."""
    index, frame = task
    renderers: dict[int, FrameRenderer] = _WORKER["renderers"]  # type: ignore[assignment]
    if index not in renderers:
        renderers.clear()  # scenes come in order: keep one world at a time
        renderers[index] = FrameRenderer(_WORKER["root"], _WORKER["config"], index)  # type: ignore[arg-type]
    return renderers[index].render(frame)
