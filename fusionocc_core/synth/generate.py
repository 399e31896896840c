"""Writes a synthetic world as a nuScenes v1.0-mini dataroot with lidarseg and Occ3D ground truth.

Layout: `v1.0-mini/*.json`, `samples/<channel>/`, `sweeps/<channel>/`, `lidarseg/v1.0-mini/`, `maps/`,
`gts/<scene_name>/<sample_token>/labels.npz`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_core.synth.camera import render_camera
from fusionocc_core.synth.categories import CATEGORY_NAMES, visibility_token
from fusionocc_core.synth.config import VERSION, SynthConfig
from fusionocc_core.synth.errors import SynthError
from fusionocc_core.synth.files import write_jpeg, write_npz
from fusionocc_core.synth.layout import build_world
from fusionocc_core.synth.lidar import LidarSweep, simulate_sweep
from fusionocc_core.synth.maps import write_map
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
from fusionocc_core.synth.tables import Tables, make_token
from fusionocc_core.synth.transforms import matrix_to_quat, rot_z, yaw_to_quat
from fusionocc_core.synth.world import World, count_points_in_boxes

COMPLETE_MARKER = "SYNTH_COMPLETE"  # written last: a dataroot without it is unfinished
_BASE_TIMESTAMP = 1_700_000_000_000_000  # [us]
_LIDAR_PER_KEYFRAME = round(KEYFRAME_PERIOD / LIDAR_PERIOD)  # 10
_CAMERA_PER_KEYFRAME = round(KEYFRAME_PERIOD / CAMERA_PERIOD)  # 6


@dataclass(frozen=True)
class _Frame:
    """One sample_data to write."""

    time: float  # [s] since the scene's first keyframe
    channel: str
    keyframe: int  # the sample it belongs to (the next keyframe for sweeps)
    is_key: bool


def generate_dataset(
    out_dir: Path,
    *,
    num_scenes: int,
    keyframes_per_scene: int,
    seed: int,
    image_width: int = 1600,
    image_height: int = 900,
    with_sweeps: bool = True,
    sweep_image_scale: float = 0.5,
    progress: bool = True,
) -> Path:
    """Generates a synthetic nuScenes + lidarseg + Occ3D dataset into `out_dir`.

    Args:
        out_dir: dataroot to create; must not exist or be empty.
        num_scenes: number of scenes.
        keyframes_per_scene: samples (2 Hz keyframes) per scene.
        seed: master seed; the same options reproduce the same bytes.
        image_width, image_height: camera image size [px] (intrinsics scale with it).
        with_sweeps: write the 20 Hz lidar sweeps and 12 Hz camera frames between keyframes too.
        sweep_image_scale: render scale of camera sweeps (upsampled to full size), for speed.
        progress: show tqdm progress bars.

    Returns:
        The dataroot (`out_dir`).

    Raises:
        SynthError: on invalid options or when `out_dir` already holds files.
    """
    config = SynthConfig(
        num_scenes=num_scenes,
        keyframes_per_scene=keyframes_per_scene,
        seed=seed,
        image_width=image_width,
        image_height=image_height,
        with_sweeps=with_sweeps,
        sweep_image_scale=sweep_image_scale,
    )
    return _generate(Path(out_dir), config, progress=progress)


def ensure_dataset(
    cache_dir: Path,
    *,
    num_scenes: int,
    keyframes_per_scene: int,
    seed: int,
    image_width: int = 1600,
    image_height: int = 900,
    with_sweeps: bool = True,
    sweep_image_scale: float = 0.5,
    progress: bool = True,
) -> Path:
    """Returns the dataroot of a cached dataset with these options, generating it once if needed.

    The dataset lives in `cache_dir/synth-<hash of options and generator version>`; it is generated into a
    temporary folder and renamed when complete, under a file lock, so concurrent callers never see half a
    dataset.

    Args: as `generate_dataset`, with `cache_dir` the folder holding cached datasets.

    Returns:
        The dataroot.
    """
    config = SynthConfig(
        num_scenes=num_scenes,
        keyframes_per_scene=keyframes_per_scene,
        seed=seed,
        image_width=image_width,
        image_height=image_height,
        with_sweeps=with_sweeps,
        sweep_image_scale=sweep_image_scale,
    )
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"synth-{config.cache_key()}"
    if (final / COMPLETE_MARKER).exists():
        return final
    with open(cache_dir / f".synth-{config.cache_key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the dataset complete
        if (final / COMPLETE_MARKER).exists():
            return final
        tmp = cache_dir / f".tmp-{config.cache_key()}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover
        _generate(tmp, config, progress=progress)
        os.rename(tmp, final)
    return final


def _generate(root: Path, config: SynthConfig, *, progress: bool) -> Path:
    if root.exists() and any(root.iterdir()):
        raise SynthError(f"{root} exists already and is not empty, not overwriting.")
    for channel in (*CAMERA_NAMES, LIDAR_NAME):
        (root / "samples" / channel).mkdir(parents=True, exist_ok=True)
        if config.with_sweeps:
            (root / "sweeps" / channel).mkdir(parents=True, exist_ok=True)
    for folder in (f"lidarseg/{VERSION}", "maps", "gts"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    tables = Tables(config.seed)
    for channel in CAMERA_NAMES:
        tables.add(
            "sensor", {"token": tables.sensor_token(channel), "channel": channel, "modality": "camera"}
        )
    tables.add(
        "sensor", {"token": tables.sensor_token(LIDAR_NAME), "channel": LIDAR_NAME, "modality": "lidar"}
    )
    for index in range(config.num_scenes):
        _SceneWriter(root, tables, config, index, progress=progress).write()
    tables.write(root / VERSION)
    (root / COMPLETE_MARKER).write_text(f"{config}\n")
    return root


def scene_world(*, seed: int, scene_index: int, keyframes_per_scene: int) -> World:
    """The world of scene `scene_index` (0-based) of a dataset made with `seed` (the generator's truth)."""
    duration = (keyframes_per_scene - 1) * KEYFRAME_PERIOD + 0.1
    return build_world(np.random.default_rng([seed, scene_index, 0]), duration=duration)


def _frames(config: SynthConfig) -> list[_Frame]:
    """All sample_data of one scene in time order."""
    k = config.keyframes_per_scene
    frames = []
    for j in range(_LIDAR_PER_KEYFRAME * (k - 1) + 1):
        if config.with_sweeps or j % _LIDAR_PER_KEYFRAME == 0:
            frames.append(
                _Frame(
                    j * LIDAR_PERIOD, LIDAR_NAME, -(-j // _LIDAR_PER_KEYFRAME), j % _LIDAR_PER_KEYFRAME == 0
                )
            )
    for camera in CAMERAS:
        for m in range(_CAMERA_PER_KEYFRAME * (k - 1) + 1):
            if config.with_sweeps or m % _CAMERA_PER_KEYFRAME == 0:
                frames.append(
                    _Frame(
                        m * CAMERA_PERIOD + camera.delay,
                        camera.name,
                        -(-m // _CAMERA_PER_KEYFRAME),
                        m % _CAMERA_PER_KEYFRAME == 0,
                    )
                )
    return sorted(frames, key=lambda f: (f.time, f.channel))


class _SceneWriter:
    """Generates and writes one scene: world, sensor data, annotations and Occ3D ground truth."""

    def __init__(
        self, root: Path, tables: Tables, config: SynthConfig, index: int, *, progress: bool
    ) -> None:
        self.root, self.tables, self.config, self.index = root, tables, config, index
        self.progress = progress
        self.rng_seed = (config.seed, index)
        self.world: World = scene_world(
            seed=config.seed, scene_index=index, keyframes_per_scene=config.keyframes_per_scene
        )
        self.name = f"scene-{index + 1:04d}"
        self.log_name = f"synth-{config.seed}-{index + 1:04d}"
        self.t0 = _BASE_TIMESTAMP + config.seed * 10_000_000_000 + index * 100_000_000
        self.sample_tokens = [
            make_token(config.seed, index, "sample", k) for k in range(config.keyframes_per_scene)
        ]
        self.scene_token = make_token(config.seed, index, "scene")
        self.calibration: dict[str, str] = {}
        self._rays: dict[tuple[str, int, int], np.ndarray] = {}

    def tok(self, *parts: object) -> str:
        return make_token(self.config.seed, self.index, *parts)

    def timestamp(self, time: float) -> int:
        return self.t0 + round(time * 1e6)

    def write(self) -> None:
        self._write_static_records()
        frames = _frames(self.config)
        last: dict[str, dict] = {}
        keyframe_sweeps: dict[int, tuple[LidarSweep, BoxScene, np.ndarray, float]] = {}
        bar = tqdm(frames, desc=self.name, unit="frame", disable=not self.progress, leave=False)
        for frame in bar:
            record = self._write_frame(frame, keyframe_sweeps)
            if frame.channel in last:
                last[frame.channel]["next"] = record["token"]
                record["prev"] = last[frame.channel]["token"]
            last[frame.channel] = record
        # Samples, annotations and ground truth once every keyframe's lidar sweep exists.
        for k, token in enumerate(self.sample_tokens):
            time = k * KEYFRAME_PERIOD
            self.tables.add(
                "sample",
                {
                    "token": token,
                    "timestamp": self.timestamp(time),
                    "scene_token": self.scene_token,
                    "prev": self.sample_tokens[k - 1] if k > 0 else "",
                    "next": self.sample_tokens[k + 1] if k + 1 < len(self.sample_tokens) else "",
                },
            )
        annotations: dict[int, list[dict]] = {}
        for k in range(self.config.keyframes_per_scene):
            sweep, scene, position, yaw = keyframe_sweeps.pop(k)
            self._write_annotations(k, sweep, scene, position, yaw, annotations)
            self._write_occupancy(k, sweep, scene, position, yaw)
        self._write_instances(annotations)
        self.tables.add(
            "scene",
            {
                "token": self.scene_token,
                "log_token": self.tok("log"),
                "nbr_samples": len(self.sample_tokens),
                "first_sample_token": self.sample_tokens[0],
                "last_sample_token": self.sample_tokens[-1],
                "name": self.name,
                "description": self.world.description,
            },
        )

    def _write_static_records(self) -> None:
        log_token, map_token = self.tok("log"), self.tok("map")
        self.tables.add(
            "log",
            {
                "token": log_token,
                "logfile": self.log_name,
                "vehicle": "synth-ego",
                "date_captured": "2026-11-25",
                "location": "synthetic-town",
            },
        )
        filename = f"maps/{map_token}.png"
        write_map(self.root / filename, self.world)
        self.tables.add(
            "map",
            {
                "token": map_token,
                "log_tokens": [log_token],
                "category": "semantic_prior",
                "filename": filename,
            },
        )
        width, height = self.config.image_width, self.config.image_height
        for camera in CAMERAS:
            token = self.tok("calibrated_sensor", camera.name)
            self.calibration[camera.name] = token
            self.tables.add(
                "calibrated_sensor",
                {
                    "token": token,
                    "sensor_token": self.tables.sensor_token(camera.name),
                    "translation": list(camera.translation),
                    "rotation": matrix_to_quat(camera.rotation).tolist(),
                    "camera_intrinsic": camera.intrinsics(width, height).tolist(),
                },
            )
        token = self.tok("calibrated_sensor", LIDAR_NAME)
        self.calibration[LIDAR_NAME] = token
        self.tables.add(
            "calibrated_sensor",
            {
                "token": token,
                "sensor_token": self.tables.sensor_token(LIDAR_NAME),
                "translation": list(LIDAR.translation),
                "rotation": matrix_to_quat(LIDAR.rotation).tolist(),
                "camera_intrinsic": [],
            },
        )

    def _write_frame(self, frame: _Frame, keyframe_sweeps: dict) -> dict:
        stamp = self.timestamp(frame.time)
        token = self.tok("sample_data", frame.channel, stamp)
        position, yaw = self.world.ego_pose(frame.time)
        rotation = rot_z(yaw)
        self.tables.add(
            "ego_pose",
            {
                "token": token,
                "timestamp": stamp,
                "rotation": yaw_to_quat(yaw).tolist(),
                "translation": position.tolist(),
            },
        )
        scene = BoxScene(self.world.boxes_at(frame.time), anchor=position)
        rng = np.random.default_rng([self.config.seed, self.index, 1, stamp])
        folder = "samples" if frame.is_key else "sweeps"
        base = f"{folder}/{frame.channel}/{self.log_name}__{frame.channel}__{stamp}"
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
                keyframe_sweeps[frame.keyframe] = (sweep, scene, position, yaw)
                seg_name = f"lidarseg/{VERSION}/{token}_lidarseg.bin"
                sweep.category.astype(np.uint8).tofile(self.root / seg_name)
                self.tables.add(
                    "lidarseg", {"token": token, "sample_data_token": token, "filename": seg_name}
                )
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
            rgb = (
                render.rgb
                if (w, h) == (width, height)
                else cv2.resize(render.rgb, (width, height), interpolation=cv2.INTER_LINEAR)
            )
            write_jpeg(self.root / filename, rgb, quality=self.config.jpeg_quality)
        return self.tables.add(
            "sample_data",
            {
                "token": token,
                "sample_token": self.sample_tokens[min(frame.keyframe, len(self.sample_tokens) - 1)],
                "ego_pose_token": token,
                "calibrated_sensor_token": self.calibration[frame.channel],
                "timestamp": stamp,
                "fileformat": fileformat,
                "is_key_frame": frame.is_key,
                "height": height,
                "width": width,
                "filename": filename,
                "prev": "",
                "next": "",
            },
        )

    def _pixel_rays(self, camera: CameraSpec, width: int, height: int) -> np.ndarray:
        key = (camera.name, width, height)
        if key not in self._rays:
            self._rays[key] = camera.pixel_rays(width, height)
        return self._rays[key]

    def _write_annotations(
        self,
        k: int,
        sweep: LidarSweep,
        scene: BoxScene,
        position: np.ndarray,
        yaw: float,
        annotations: dict[int, list[dict]],
    ) -> None:
        agents = self.world.agents
        time = k * KEYFRAME_PERIOD
        centres, yaws = agents.boxes(self.world.road, time)
        near = np.nonzero(np.hypot(*(centres[:, :2] - position[:2]).T) <= self.config.annotation_radius)[0]
        if len(near) == 0:
            return
        lidar_rotation = rot_z(yaw) @ LIDAR.rotation
        xyz = sweep.points[:, :3] @ lidar_rotation.T + position + rot_z(yaw) @ np.array(LIDAR.translation)
        points = np.zeros(len(agents), dtype=np.int64)
        points[near] = count_points_in_boxes(xyz, centres[near], agents.size[near], yaws[near])
        fraction = self._visible_fraction(
            scene, position, yaw, centres[near], yaws[near], agents.size[near], near
        )
        visibility = visibility_token(fraction)
        for j, agent in enumerate(near):
            attribute = agents.attribute[agent]
            record = self.tables.add(
                "sample_annotation",
                {
                    "token": self.tok("sample_annotation", k, int(agent)),
                    "sample_token": self.sample_tokens[k],
                    "instance_token": self.tok("instance", int(agent)),
                    "visibility_token": str(visibility[j]),
                    "attribute_tokens": [self.tables.attribute_token(attribute)] if attribute else [],
                    "translation": centres[agent].tolist(),
                    "size": [
                        float(agents.size[agent, 1]),
                        float(agents.size[agent, 0]),
                        float(agents.size[agent, 2]),
                    ],
                    "rotation": yaw_to_quat(yaws[agent]).tolist(),
                    "prev": "",
                    "next": "",
                    "num_lidar_pts": int(points[agent]),
                    "num_radar_pts": 0,
                },
            )
            chain = annotations.setdefault(int(agent), [])
            if chain:
                chain[-1]["next"] = record["token"]
                record["prev"] = chain[-1]["token"]
            chain.append(record)

    def _visible_fraction(
        self,
        scene: BoxScene,
        position: np.ndarray,
        yaw: float,
        centres: np.ndarray,
        yaws: np.ndarray,
        sizes: np.ndarray,
        agents: np.ndarray,
    ) -> np.ndarray:
        """Fraction of 9 probe points per box (centre, shrunk corners) seen unoccluded from the camera rig."""
        from fusionocc_core.synth.world import BoxSet  # local: only the corner helper's input type

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

    def _write_instances(self, annotations: dict[int, list[dict]]) -> None:
        agents = self.world.agents
        for agent in sorted(annotations):
            chain = annotations[agent]
            self.tables.add(
                "instance",
                {
                    "token": self.tok("instance", agent),
                    "category_token": self.tables.category_token(CATEGORY_NAMES[agents.category[agent]]),
                    "nbr_annotations": len(chain),
                    "first_annotation_token": chain[0]["token"],
                    "last_annotation_token": chain[-1]["token"],
                },
            )

    def _write_occupancy(
        self, k: int, sweep: LidarSweep, scene: BoxScene, position: np.ndarray, yaw: float
    ) -> None:
        to_ego = rot_z(-yaw)
        boxes = scene.boxes.transformed(-yaw, -to_ego @ position)
        labels = semantics(boxes)
        lidar_dirs = sweep.directions @ LIDAR.rotation.T
        lidar_mask = mask_lidar(np.array(LIDAR.translation), lidar_dirs, sweep.ranges)
        cams = [(c.rotation, np.array(c.translation), c.intrinsics(1600, 900), 1600, 900) for c in CAMERAS]
        camera_mask = mask_camera(scene, ego_rotation=rot_z(yaw), ego_translation=position, cameras=cams)
        folder = self.root / "gts" / self.name / self.sample_tokens[k]
        folder.mkdir(parents=True, exist_ok=True)
        write_npz(folder / "labels.npz", semantics=labels, mask_lidar=lidar_mask, mask_camera=camera_mask)
