"""imgseg targets for the auxiliary image-segmentation loss: lidarseg points painted into each camera image.

Every lidarseg-labelled point of the keyframe sweep is moved into each camera with ego-motion compensation
(lidar -> ego at the lidar stamp -> global -> ego at the camera stamp -> camera, the devkit's
`map_pointcloud_to_image` chain), kept when its depth is at least 1 m and it lands in the image, and paints a
box of about 8 x 16 px (width x height) with its Occ3D class; nearer points win where boxes overlap; the rest
is background 17 (ignored by the loss). Maps are stored downsampled x8 as uint8: the (6, ceil(H/8), ceil(W/8))
array of one keyframe, cameras in `occ3d.CAMERA_NAMES` order, is `<imgseg_root>/<scene>/<sample_token>.npy`.
A cell of the x8 map takes the label of the box covering its centre pixel, so painting happens directly at x8.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fusionocc_core.data.files import DataFileError, read_lidarseg, read_points
from fusionocc_core.geometry import apply_transform, invert_transform, project_points
from fusionocc_core.occ3d import CAMERA_NAMES, FREE_LABEL


@dataclass(frozen=True)
class ImgsegConfig:
    """How points are painted."""

    downsample: int = 8  # stored map stride [px]
    box_width: float = 8.0  # painted box per point [px at full resolution]
    box_height: float = 16.0
    min_depth: float = 1.0  # [m], as the devkit's map_pointcloud_to_image


def lidar_to_camera(lidar: dict[str, Any], cam: dict[str, Any]) -> np.ndarray:
    """4x4 lidar -> camera transform with ego motion between the two stamps (info index entries)."""
    return (
        invert_transform(cam["sensor2ego"])
        @ invert_transform(cam["ego2global"])
        @ lidar["ego2global"]
        @ lidar["sensor2ego"]
    )


def _cell_range(center: np.ndarray, size: float, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last x8 cell whose centre pixel lies in [center - size/2, center + size/2)."""
    half_cell = stride / 2.0
    first = np.ceil((center - size / 2 - half_cell) / stride).astype(np.int64)
    stop = np.ceil((center + size / 2 - half_cell) / stride).astype(np.int64)
    return first, stop


def paint_imgseg(
    uv: np.ndarray,
    depth: np.ndarray,
    labels: np.ndarray,
    *,
    width: int,
    height: int,
    config: ImgsegConfig = ImgsegConfig(),
) -> np.ndarray:
    """Paints projected points into one downsampled label map.

    Args:
        uv: (N, 2) pixel coordinates at full resolution.
        depth: (N,) depth [m]; points below `config.min_depth` or outside the image are dropped.
        labels: (N,) Occ3D class ids.
        width, height: full image size [px].
        config: box size and stride.

    Returns:
        (ceil(height / s), ceil(width / s)) uint8 map, background 17.
    """
    s = config.downsample
    out_h, out_w = -(-height // s), -(-width // s)
    out = np.full((out_h, out_w), FREE_LABEL, dtype=np.uint8)
    keep = (
        (depth >= config.min_depth)
        & (uv[:, 0] >= 0)
        & (uv[:, 0] < width)
        & (uv[:, 1] >= 0)
        & (uv[:, 1] < height)
    )
    uv, depth, labels = uv[keep], depth[keep], labels[keep]
    if not len(depth):
        return out
    c0, c1 = _cell_range(uv[:, 0], config.box_width, s)
    r0, r1 = _cell_range(uv[:, 1], config.box_height, s)
    nc = int(np.ceil(config.box_width / s)) + 1
    nr = int(np.ceil(config.box_height / s)) + 1
    cols = c0[:, None, None] + np.arange(nc)[None, None, :]  # (N, 1, nc)
    rows = r0[:, None, None] + np.arange(nr)[None, :, None]  # (N, nr, 1)
    valid = (cols < c1[:, None, None]) & (rows < r1[:, None, None])
    valid &= (cols >= 0) & (cols < out_w) & (rows >= 0) & (rows < out_h)
    cols, rows = np.broadcast_arrays(cols, rows)
    point = np.broadcast_to(np.arange(len(depth))[:, None, None], valid.shape)
    lin = (rows * out_w + cols)[valid]
    point = point[valid]
    # Nearest point wins, deterministically: sort by (cell, depth) and keep each cell's first entry.
    order = np.lexsort((depth[point], lin))
    lin, point = lin[order], point[order]
    first = np.r_[True, lin[1:] != lin[:-1]]
    out.reshape(-1)[lin[first]] = labels[point[first]]
    return out


def imgseg_for_sample(
    points_lidar: np.ndarray,
    labels: np.ndarray,
    info: dict[str, Any],
    *,
    config: ImgsegConfig = ImgsegConfig(),
) -> np.ndarray:
    """(6, h, w) uint8 imgseg maps of one keyframe from its lidar points (lidar frame) and Occ3D labels."""
    maps = []
    for name in CAMERA_NAMES:
        cam = info["cams"][name]
        pts_cam = apply_transform(lidar_to_camera(info["lidar"], cam), points_lidar.astype(np.float64))
        uv, depth = project_points(pts_cam, cam["intrinsics"])
        maps.append(paint_imgseg(uv, depth, labels, width=cam["width"], height=cam["height"], config=config))
    return np.stack(maps)


def load_keyframe_lidarseg(
    dataroot: Path, info: dict[str, Any], lookup: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keyframe lidar xyz (lidar frame) and Occ3D labels of its lidarseg file.

    Raises:
        FileNotFoundError: the sample has no lidarseg record (with the fixing command).
        DataFileError (a ValueError): the point or lidarseg file is missing or damaged, or the label count
            differs from the point count; the message names the file to blame.
    """
    lidar = info["lidar"]
    if lidar.get("lidarseg_path") is None:
        raise FileNotFoundError(
            f"sample {info['token']} has no lidarseg record; install the nuScenes-lidarseg "
            f"tables and files into {dataroot} and run `fusionocc check-data {dataroot}`"
        )
    points_path = dataroot / lidar["path"]
    points = read_points(points_path)  # checked first: a damaged sweep must not be blamed on its labels
    raw = read_lidarseg(dataroot / lidar["lidarseg_path"], len(points), points_path)
    return points[:, :3], lookup[raw]


def _write_one(task: tuple[Path, Path, dict[str, Any], np.ndarray, ImgsegConfig]) -> None:
    """Computes and atomically writes one keyframe's maps (top level so worker processes can run it)."""
    dataroot, target, info, lookup, config = task
    xyz, labels = load_keyframe_lidarseg(dataroot, info, lookup)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.stem + ".tmp.npy")
    np.save(tmp, imgseg_for_sample(xyz, labels, info, config=config))
    tmp.replace(target)


def write_imgseg(
    index: dict[str, Any],
    out_root: str | Path,
    *,
    config: ImgsegConfig = ImgsegConfig(),
    overwrite: bool = False,
    workers: int = 0,
    progress: bool = True,
) -> int:
    """Writes the imgseg map of every keyframe of an info index; returns how many files were written.

    Existing files are kept unless `overwrite`, so an interrupted run resumes where it stopped. A damaged
    input file (DataFileError) is different: the maps this call created are removed before it is raised, so
    nothing half-done stays behind (the fixed dataset is prepared afresh).

    Args:
        index: info index (`infos.build_infos` / `load_infos`).
        out_root: imgseg folder; files go to `<out_root>/<scene>/<token>.npy`.
        config: painting options.
        overwrite: recompute existing files.
        workers: worker processes (0 = this process); each keyframe is independent.
        progress: tqdm bar.
    """
    dataroot, out_root = Path(index["dataroot"]), Path(out_root)
    tasks = [
        (dataroot, out_root / info["imgseg_path"], info, index["lidarseg_to_occ"], config)
        for info in index["samples"]
        if overwrite or not (out_root / info["imgseg_path"]).exists()
    ]
    existed = {task[1] for task in tasks if task[1].exists()}  # only with overwrite
    bar = tqdm(total=len(tasks), desc="imgseg", unit="sample", disable=not progress)
    try:
        if workers > 0 and len(tasks) > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_one, tasks, chunksize=8):
                    bar.update()
        else:
            for task in tasks:
                _write_one(task)
                bar.update()
    except DataFileError:
        # Not on KeyboardInterrupt: an interrupted run keeps its maps and resumes.
        for _, target, *_ in tasks:
            if target not in existed:
                target.unlink(missing_ok=True)
            target.with_name(target.stem + ".tmp.npy").unlink(missing_ok=True)
        for folder in {target.parent for _, target, *_ in tasks}:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: a scene folder this call created
        raise
    finally:
        bar.close()
    return len(tasks)
