"""Writes a synthetic world as a nuScenes v1.0-mini dataroot with lidarseg and Occ3D ground truth.

Layout: `v1.0-mini/*.json`, `samples/<channel>/`, `sweeps/<channel>/`, `lidarseg/v1.0-mini/`, `maps/`,
`gts/<scene_name>/<sample_token>/labels.npz`. Frames are rendered by `frames.FrameRenderer` (optionally in
worker processes); this module assembles the tables and manages the cache.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import multiprocessing.pool
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME
from fusionocc_core.synth.categories import CATEGORY_NAMES, visibility_token
from fusionocc_core.synth.config import VERSION, SynthConfig
from fusionocc_core.synth.errors import SynthError
from fusionocc_core.synth.frames import (
    FrameOutput,
    FrameRenderer,
    SceneNames,
    init_worker,
    render_in_worker,
    scene_frames,
    scene_world,
)
from fusionocc_core.synth.maps import write_map
from fusionocc_core.synth.sensors import CAMERAS, KEYFRAME_PERIOD, LIDAR
from fusionocc_core.synth.tables import Tables
from fusionocc_core.synth.transforms import matrix_to_quat, yaw_to_quat

__all__ = ["COMPLETE_MARKER", "ensure_dataset", "generate_dataset", "scene_world"]

COMPLETE_MARKER = "SYNTH_COMPLETE"  # written last: a dataroot without it is unfinished


def default_workers() -> int:
    """A sensible worker count for the command line: the usable CPUs, at most 4 (the rule of every
    `--workers`, `fusionocc_core.cli_options.default_workers`)."""
    from fusionocc_core.cli_options import default_workers as shared

    return shared()


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
    workers: int = 1,
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
        workers: processes rendering frames (1 = in this process); the output does not depend on it. With
            more than one, worker processes are spawned: a calling script needs `if __name__ == "__main__":`.
        progress: show a tqdm progress bar.

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
    return _generate(Path(out_dir), config, workers=workers, progress=progress)


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
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Returns the dataroot of a cached dataset with these options, generating it once if needed.

    The dataset lives in `cache_dir/synth-<hash of options and generator version>`; it is generated into a
    temporary folder and renamed when complete, under a file lock, so concurrent callers never see half a
    dataset and never generate it twice.

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
        try:
            _generate(tmp, config, workers=workers, progress=progress)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # never leave half a dataset behind
            raise
        os.rename(tmp, final)
    return final


def _generate(root: Path, config: SynthConfig, *, workers: int, progress: bool) -> Path:
    if root.exists() and any(root.iterdir()):
        raise SynthError(f"{root} exists already and is not empty, not overwriting.")
    if workers < 1:
        raise SynthError(f"workers must be >= 1, got {workers}.")
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
    frames = scene_frames(config)
    tasks = [(index, frame) for index in range(config.num_scenes) for frame in frames]
    bar = tqdm(total=len(tasks), desc="synth", unit="frame", disable=not progress, leave=False)
    with _FrameOutputs(root, config, tasks, workers) as outputs:
        for index in range(config.num_scenes):
            writer = _SceneTables(root, tables, config, index)
            for _ in frames:
                writer.add_frame(next(outputs))
                bar.update()
            writer.finish()
    bar.close()
    tables.write(root / VERSION)
    (root / COMPLETE_MARKER).write_text(f"{config}\n")
    return root


class _FrameOutputs:
    """Context manager yielding the `FrameOutput` of every task in order, from a process pool or inline."""

    def __init__(self, root: Path, config: SynthConfig, tasks: list, workers: int) -> None:
        self.root, self.config, self.tasks, self.workers = root, config, tasks, min(workers, len(tasks))
        self.pool: multiprocessing.pool.Pool | None = None

    def __enter__(self) -> Iterator[FrameOutput]:
        if self.workers > 1:
            # spawn, not fork: Embree's threads in the parent make forking unsafe.
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(self.workers, initializer=init_worker, initargs=(self.root, self.config))
            return self.pool.imap(render_in_worker, self.tasks, chunksize=2)
        return self._inline()

    def _inline(self) -> Iterator[FrameOutput]:
        renderer: FrameRenderer | None = None
        for index, frame in self.tasks:
            if renderer is None or renderer.index != index:
                renderer = FrameRenderer(self.root, self.config, index)
            yield renderer.render(frame)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.pool is not None:
            if exc_type is None:
                self.pool.close()
            else:
                self.pool.terminate()  # do not wait for frames nobody will use
            self.pool.join()


class _SceneTables:
    """Builds the table records of one scene from its frame outputs."""

    def __init__(self, root: Path, tables: Tables, config: SynthConfig, index: int) -> None:
        self.tables, self.config = tables, config
        self.names = SceneNames(config, index)
        self.world = scene_world(
            seed=config.seed, scene_index=index, keyframes_per_scene=config.keyframes_per_scene
        )
        self.scene_token = self.names.tok("scene")
        self.calibration: dict[str, str] = {}
        self.last: dict[str, dict] = {}
        self.objects: dict[int, FrameOutput] = {}
        self._static_records(root)

    def _static_records(self, root: Path) -> None:
        names, tables = self.names, self.tables
        log_token, map_token = names.tok("log"), names.tok("map")
        tables.add(
            "log",
            {
                "token": log_token,
                "logfile": names.log_name,
                "vehicle": "synth-ego",
                "date_captured": "2026-11-25",
                "location": "synthetic-town",
            },
        )
        filename = f"maps/{map_token}.png"
        write_map(root / filename, self.world)
        tables.add(
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
            token = names.tok("calibrated_sensor", camera.name)
            self.calibration[camera.name] = token
            tables.add(
                "calibrated_sensor",
                {
                    "token": token,
                    "sensor_token": tables.sensor_token(camera.name),
                    "translation": list(camera.translation),
                    "rotation": matrix_to_quat(camera.rotation).tolist(),
                    "camera_intrinsic": camera.intrinsics(width, height).tolist(),
                },
            )
        token = names.tok("calibrated_sensor", LIDAR_NAME)
        self.calibration[LIDAR_NAME] = token
        tables.add(
            "calibrated_sensor",
            {
                "token": token,
                "sensor_token": tables.sensor_token(LIDAR_NAME),
                "translation": list(LIDAR.translation),
                "rotation": matrix_to_quat(LIDAR.rotation).tolist(),
                "camera_intrinsic": [],
            },
        )

    def add_frame(self, out: FrameOutput) -> None:
        frame = out.frame
        self.tables.add(
            "ego_pose",
            {
                "token": out.token,
                "timestamp": out.timestamp,
                "rotation": yaw_to_quat(out.yaw).tolist(),
                "translation": out.translation.tolist(),
            },
        )
        samples = self.names.sample_tokens
        record = self.tables.add(
            "sample_data",
            {
                "token": out.token,
                "sample_token": samples[min(frame.keyframe, len(samples) - 1)],
                "ego_pose_token": out.token,
                "calibrated_sensor_token": self.calibration[frame.channel],
                "timestamp": out.timestamp,
                "fileformat": out.fileformat,
                "is_key_frame": frame.is_key,
                "height": out.height,
                "width": out.width,
                "filename": out.filename,
                "prev": "",
                "next": "",
            },
        )
        if frame.channel in self.last:
            self.last[frame.channel]["next"] = out.token
            record["prev"] = self.last[frame.channel]["token"]
        self.last[frame.channel] = record
        if frame.channel == LIDAR_NAME and frame.is_key:
            self.tables.add(
                "lidarseg",
                {
                    "token": out.token,
                    "sample_data_token": out.token,
                    "filename": f"lidarseg/{VERSION}/{out.token}_lidarseg.bin",
                },
            )
            self.objects[frame.keyframe] = out

    def finish(self) -> None:
        """Samples, annotations, instances and the scene, once all frames are in."""
        names, tables = self.names, self.tables
        samples = names.sample_tokens
        for k, token in enumerate(samples):
            tables.add(
                "sample",
                {
                    "token": token,
                    "timestamp": names.timestamp(k * KEYFRAME_PERIOD),
                    "scene_token": self.scene_token,
                    "prev": samples[k - 1] if k > 0 else "",
                    "next": samples[k + 1] if k + 1 < len(samples) else "",
                },
            )
        chains: dict[int, list[dict]] = {}
        agents = self.world.agents
        for k in range(len(samples)):
            objects = self.objects[k].objects
            assert objects is not None  # keyframe lidar frames always measure objects
            visibility = visibility_token(objects.visible_fraction)
            for j, agent in enumerate(objects.agents.tolist()):
                attribute = agents.attribute[agent]
                record = tables.add(
                    "sample_annotation",
                    {
                        "token": names.tok("sample_annotation", k, agent),
                        "sample_token": samples[k],
                        "instance_token": names.tok("instance", agent),
                        "visibility_token": str(visibility[j]),
                        "attribute_tokens": [tables.attribute_token(attribute)] if attribute else [],
                        "translation": objects.centres[j].tolist(),
                        "size": [
                            float(agents.size[agent, 1]),
                            float(agents.size[agent, 0]),
                            float(agents.size[agent, 2]),
                        ],
                        "rotation": yaw_to_quat(objects.yaws[j]).tolist(),
                        "prev": "",
                        "next": "",
                        "num_lidar_pts": int(objects.num_lidar_pts[j]),
                        "num_radar_pts": 0,
                    },
                )
                chain = chains.setdefault(agent, [])
                if chain:
                    chain[-1]["next"] = record["token"]
                    record["prev"] = chain[-1]["token"]
                chain.append(record)
        for agent in sorted(chains):
            chain = chains[agent]
            tables.add(
                "instance",
                {
                    "token": names.tok("instance", agent),
                    "category_token": tables.category_token(CATEGORY_NAMES[agents.category[agent]]),
                    "nbr_annotations": len(chain),
                    "first_annotation_token": chain[0]["token"],
                    "last_annotation_token": chain[-1]["token"],
                },
            )
        tables.add(
            "scene",
            {
                "token": self.scene_token,
                "log_token": names.tok("log"),
                "nbr_samples": len(samples),
                "first_sample_token": samples[0],
                "last_sample_token": samples[-1],
                "name": names.name,
                "description": self.world.description,
            },
        )
