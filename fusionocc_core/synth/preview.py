"""One-figure preview of a synthetic sample: six cameras, lidar bird's-eye view by class, Occ3D ground truth.

    python -m fusionocc_core.synth.preview --out docs/images/synth_sample.png

renders `docs/images/synth_sample.png` from a cached 1600x900 dataset (generated on first use).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fusionocc_core.occ3d import (
    CLASS_COLORS,
    CLASS_NAMES,
    FREE_LABEL,
    LIDAR_NAME,
    voxel_centers,
)
from fusionocc_core.synth.categories import CATEGORY_TO_OCC

_CAMERA_GRID = (
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_RIGHT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
)


def _bev_image(semantics: np.ndarray) -> np.ndarray:
    """Top-down RGB (rows = +x forward at the top, columns = +y left on the left) of the highest occupied
    voxel in each column; white where the column is free."""
    occupied = semantics != FREE_LABEL
    top = semantics.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    labels = np.take_along_axis(semantics, top[..., None], 2)[..., 0]
    rgb = CLASS_COLORS[labels].astype(np.float32) / 255.0
    rgb[~occupied.any(2)] = 1.0
    shade = 0.6 + 0.4 * top / (semantics.shape[2] - 1)  # higher = brighter
    rgb *= np.where(occupied.any(2), shade, 1.0)[..., None]
    return rgb[::-1, ::-1]  # x up, y to the left


def _voxel_view(
    semantics: np.ndarray,
    keep: np.ndarray,
    *,
    size: int = 700,
    azimuth_deg: float = 200.0,
    elevation_deg: float = 38.0,
) -> np.ndarray:
    """Orthographic 3D view (RGB, white background) of the voxels in `keep`, nearest voxel per pixel."""
    centres = voxel_centers()[keep].astype(np.float64)
    colors = CLASS_COLORS[semantics[keep]].astype(np.float64) / 255.0
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    forward = -np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])  # viewing direction
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    scale = size / 70.0  # [px / m]
    u = (centres @ right) * scale + size / 2
    v = -(centres @ up) * scale + size / 2
    depth = centres @ forward
    splat = int(np.ceil(0.4 * scale * 1.1))
    offsets = np.stack(np.meshgrid(np.arange(splat), np.arange(splat)), -1).reshape(-1, 2) - splat // 2
    pu = (np.round(u)[:, None] + offsets[None, :, 0]).astype(np.int64).ravel()
    pv = (np.round(v)[:, None] + offsets[None, :, 1]).astype(np.int64).ravel()
    owner = np.repeat(np.arange(len(centres)), len(offsets))
    inside = (pu >= 0) & (pu < size) & (pv >= 0) & (pv < size)
    pixel = (pv * size + pu)[inside]
    owner = owner[inside]
    order = np.lexsort((depth[owner], pixel))  # per pixel, nearest first
    first = np.unique(pixel[order], return_index=True)[1]
    image = np.ones((size * size, 3))
    winner = owner[order][first]
    shade = 0.55 + 0.45 * (centres[winner, 2] + 1.0) / 6.4  # higher voxels brighter, like a sunlit top
    image[pixel[order][first]] = colors[winner] * shade[:, None]
    return image.reshape(size, size, 3)


def _draw_ego(ax) -> None:
    """The ego vehicle's outline (about 4.8 m x 1.9 m around base_link) in a bird's-eye-view axis."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((-0.95, -1.0), 1.9, 4.8, fill=False, edgecolor="black", linewidth=1.2))


def render_sample_figure(dataroot: Path, out_path: Path, *, sample_index: int = 0) -> Path:
    """Renders the six cameras, the lidar BEV coloured by class and the Occ3D ground truth of one sample.

    Args:
        dataroot: a dataroot written by `generate_dataset`.
        out_path: PNG to write.
        sample_index: which sample of the dataset (in table order).

    Returns:
        `out_path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from nuscenes.nuscenes import NuScenes
    from PIL import Image

    nusc = NuScenes(version="v1.0-mini", dataroot=str(dataroot), verbose=False)
    sample = nusc.sample[sample_index]
    scene = nusc.get("scene", sample["scene_token"])
    fig = plt.figure(figsize=(18, 14.2), dpi=100)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.955, bottom=0.045)
    grid = fig.add_gridspec(3, 6, height_ratios=[1, 1, 1.75], hspace=0.1, wspace=0.04)
    for i, channel in enumerate(_CAMERA_GRID):
        ax = fig.add_subplot(grid[i // 3, 2 * (i % 3) : 2 * (i % 3) + 2])
        sd = nusc.get("sample_data", sample["data"][channel])
        ax.imshow(Image.open(Path(dataroot) / sd["filename"]))
        ax.set_title(channel, fontsize=10, pad=2)
        ax.axis("off")
    # Lidar BEV in the ego frame, coloured by Occ3D class of the lidarseg labels.
    lidar = nusc.get("sample_data", sample["data"][LIDAR_NAME])
    points = np.fromfile(Path(dataroot) / lidar["filename"], dtype=np.float32).reshape(-1, 5)[:, :3]
    labels = np.fromfile(Path(dataroot) / nusc.get("lidarseg", lidar["token"])["filename"], dtype=np.uint8)
    calib = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
    from pyquaternion import Quaternion

    ego = points @ Quaternion(calib["rotation"]).rotation_matrix.T + np.array(calib["translation"])
    ax = fig.add_subplot(grid[2, 0:2])
    colors = CLASS_COLORS[CATEGORY_TO_OCC[labels]] / 255.0
    ax.scatter(-ego[:, 1], ego[:, 0], s=0.6, c=colors, linewidths=0)
    ax.set_xlim(-40, 40)
    ax.set_ylim(-40, 40)
    ax.set_aspect("equal")
    ax.set_facecolor("0.12")
    ax.set_title(f"LIDAR_TOP, {len(points)} points, lidarseg classes (ego frame, x up)", fontsize=10)
    _draw_ego(ax)
    ax.set_xticks([])
    ax.set_yticks([])
    gt = np.load(Path(dataroot) / "gts" / scene["name"] / sample["token"] / "labels.npz")
    semantics = gt["semantics"]
    ax = fig.add_subplot(grid[2, 2:4])
    ax.imshow(_bev_image(semantics), extent=(-40, 40, -40, 40))
    ax.set_title("Occ3D semantics, top view (200 x 200 x 16, 0.4 m)", fontsize=10)
    _draw_ego(ax)
    ax.set_xticks([])
    ax.set_yticks([])
    ax = fig.add_subplot(grid[2, 4:6])
    ax.imshow(_voxel_view(semantics, semantics != FREE_LABEL))
    ax.set_title("Occ3D semantics, 3D view from behind the ego", fontsize=10)
    ax.axis("off")
    present = [c for c in range(17) if np.any(semantics == c)]
    handles = [Patch(color=CLASS_COLORS[c] / 255.0, label=CLASS_NAMES[c]) for c in present]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    fig.suptitle(f"Synthetic nuScenes world: {scene['name']} - {scene['description']}", fontsize=12, y=0.995)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the synthetic-world preview figure.")
    parser.add_argument("--out", type=Path, default=Path("docs/images/synth_sample.png"), help="PNG to write")
    parser.add_argument("--cache", type=Path, default=Path(".cache/synth"), help="dataset cache folder")
    parser.add_argument("--seed", type=int, default=3, help="world seed (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=2, help="sample index (default: %(default)s)")
    args = parser.parse_args(argv)
    from fusionocc_core.synth.generate import ensure_dataset

    root = ensure_dataset(args.cache, num_scenes=1, keyframes_per_scene=4, seed=args.seed, with_sweeps=False)
    print(render_sample_figure(root, args.out, sample_index=args.sample))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
