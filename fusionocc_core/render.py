"""Render an occupancy volume to PNG (BEV and 3D), optionally next to its ground truth and camera images.

Headless (numpy + Pillow, no display, no OpenGL). BEV: the top-most non-free class of each (x, y) column
in the Occ3D colours, darker when lower, forward (+x) up and left (+y) left, ego at the centre. 3D: an
orthographic view of the voxel cubes (free hidden) drawn with a depth buffer, three shaded faces per cube.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fusionocc_core.occ3d import CLASS_COLORS, CLASS_NAMES, FREE_LABEL, GRID_SHAPE

BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class ViewConfig:
    """Orthographic 3D view."""

    azimuth_deg: float = 200.0  # camera direction around +z from +x; 180 = behind the ego
    elevation_deg: float = 40.0  # above the ground plane
    pixels_per_voxel: float = 4.0  # screen size of one 0.4 m voxel edge


def _check_volume(semantics: np.ndarray) -> np.ndarray:
    semantics = np.asarray(semantics)
    if semantics.shape != GRID_SHAPE:
        raise ValueError(f"occupancy volume must have shape {GRID_SHAPE} (X, Y, Z), got {semantics.shape}")
    if semantics.size and int(semantics.max()) > FREE_LABEL:
        raise ValueError(f"occupancy labels must be 0..{FREE_LABEL}, got up to {int(semantics.max())}")
    return semantics.astype(np.uint8)


def bev_image(semantics: np.ndarray, *, shade_height: bool = True) -> np.ndarray:
    """(200, 200, 3) uint8 top view: row 0 = front (+x max), column 0 = left (+y max); free columns white."""
    semantics = _check_volume(semantics)
    occupied = semantics != FREE_LABEL
    nz = semantics.shape[2]
    top_z = nz - 1 - np.argmax(occupied[:, :, ::-1], axis=2)  # highest occupied z per column
    any_occ = occupied.any(axis=2)
    top = np.take_along_axis(semantics, top_z[..., None], axis=2)[..., 0]
    colors = CLASS_COLORS[top].astype(np.float32)
    if shade_height:
        colors *= (0.55 + 0.45 * top_z / (nz - 1))[..., None]
    colors[~any_occ] = BACKGROUND
    # Index [x, y] -> image [row, col] with +x up and +y left.
    return colors[::-1, ::-1].astype(np.uint8)


def _exposed(occupied: np.ndarray) -> np.ndarray:
    """Occupied voxels with at least one non-occupied 6-neighbour (the others can never be seen)."""
    padded = np.pad(occupied, 1, constant_values=False)
    inner = np.ones_like(occupied)
    for axis in range(3):
        for shift in (-1, 1):
            inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return occupied & ~inner


def _cube_sprite(right: np.ndarray, up: np.ndarray, view: np.ndarray, scale: float) -> np.ndarray:
    """Pixel offsets of one cube's visible faces: rows (dx, dy, face, depth), nearest face per pixel.

    Sampled by projecting a dense grid on each visible face; face 0/1/2 = the x/y/z-facing side.
    """
    t = (np.arange(24) + 0.5) / 24 - 0.5
    a, b = (g.ravel() for g in np.meshgrid(t, t))
    samples = []
    for axis in range(3):
        sign = -np.sign(view[axis]) if view[axis] != 0 else 1.0  # the face turned towards the camera
        pts = np.zeros((len(a), 3))
        pts[:, axis] = 0.5 * sign
        others = [i for i in range(3) if i != axis]
        pts[:, others[0]], pts[:, others[1]] = a, b
        if view[axis] != 0:
            samples.append(
                np.column_stack([pts @ right * scale, -(pts @ up) * scale, np.full(len(a), axis), pts @ view])
            )
    s = np.concatenate(samples)
    dx, dy = np.round(s[:, 0]).astype(int), np.round(s[:, 1]).astype(int)
    order = np.lexsort((s[:, 3], dy, dx))
    dx, dy, s = dx[order], dy[order], s[order]
    first = np.r_[True, (dx[1:] != dx[:-1]) | (dy[1:] != dy[:-1])]
    return np.column_stack([dx[first], dy[first], s[first, 2], s[first, 3]])


def voxel_view(semantics: np.ndarray, *, config: ViewConfig = ViewConfig()) -> np.ndarray:
    """(H, W, 3) uint8 orthographic 3D view of the non-free voxels (white background)."""
    semantics = _check_volume(semantics)
    az, el = np.radians(config.azimuth_deg), np.radians(config.elevation_deg)
    to_camera = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    view = -to_camera  # looking direction
    right = np.cross(view, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, view)
    scale = config.pixels_per_voxel
    # Screen bounds from the grid's corners, in voxel units.
    corners = np.array(
        [[x, y, z] for x in (0, GRID_SHAPE[0]) for y in (0, GRID_SHAPE[1]) for z in (0, GRID_SHAPE[2])]
    )
    sx, sy = corners @ right * scale, -(corners @ up) * scale
    margin = int(np.ceil(2 * scale))
    width, height = (
        int(np.ceil(sx.max() - sx.min())) + 2 * margin,
        int(np.ceil(sy.max() - sy.min())) + 2 * margin,
    )
    image = np.full((height * width, 3), BACKGROUND, dtype=np.uint8)
    idx = np.argwhere(_exposed(semantics != FREE_LABEL))
    if not len(idx):
        return image.reshape(height, width, 3)
    centres = idx + 0.5
    cx = np.round(centres @ right * scale - sx.min()).astype(int) + margin
    cy = np.round(-(centres @ up) * scale - sy.min()).astype(int) + margin
    depth = centres @ view
    sprite = _cube_sprite(right, up, view, scale)
    px = (cx[:, None] + sprite[None, :, 0].astype(int)).ravel()
    py = (cy[:, None] + sprite[None, :, 1].astype(int)).ravel()
    pd = (depth[:, None] + sprite[None, :, 3]).ravel()
    voxel = np.repeat(np.arange(len(idx)), len(sprite))
    face = np.tile(sprite[:, 2].astype(int), len(idx))
    inside = (px >= 0) & (px < width) & (py >= 0) & (py < height)
    lin, pd, voxel, face = (py * width + px)[inside], pd[inside], voxel[inside], face[inside]
    order = np.lexsort((pd, lin))  # nearest surface per pixel
    lin, voxel, face = lin[order], voxel[order], face[order]
    first = np.r_[True, lin[1:] != lin[:-1]]
    shade = np.array([0.78, 0.62, 1.0])[face[first]]  # x side, y side, top
    labels = semantics[tuple(idx[voxel[first]].T)]
    image[lin[first]] = (CLASS_COLORS[labels] * shade[:, None]).astype(np.uint8)
    return image.reshape(height, width, 3)


def _titled(image: np.ndarray, title: str, scale: int = 1) -> np.ndarray:
    if scale > 1:
        image = np.kron(image, np.ones((scale, scale, 1), dtype=np.uint8))
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + 18), BACKGROUND)
    canvas.paste(Image.fromarray(image), (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), title, fill=(0, 0, 0))
    return np.asarray(canvas)


def _hstack(images: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    height = max(i.shape[0] for i in images)
    parts = []
    for i, img in enumerate(images):
        pad = np.full((height, img.shape[1] + (gap if i else 0), 3), BACKGROUND, dtype=np.uint8)
        pad[: img.shape[0], (gap if i else 0) :] = img
        parts.append(pad)
    return np.concatenate(parts, axis=1)


def _vstack(images: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    width = max(i.shape[1] for i in images)
    parts = []
    for i, img in enumerate(images):
        pad = np.full((img.shape[0] + (gap if i else 0), width, 3), BACKGROUND, dtype=np.uint8)
        pad[(gap if i else 0) :, : img.shape[1]] = img
        parts.append(pad)
    return np.concatenate(parts, axis=0)


def _legend(classes: Sequence[int]) -> np.ndarray:
    canvas = Image.new("RGB", (150, 16 * max(1, len(classes)) + 4), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for row, cid in enumerate(classes):
        y = 4 + 16 * row
        draw.rectangle(
            (4, y, 16, y + 11), fill=tuple(int(c) for c in CLASS_COLORS[cid]), outline=(90, 90, 90)
        )
        draw.text((22, y), CLASS_NAMES[cid], fill=(0, 0, 0))
    return np.asarray(canvas)


def _camera_grid(images: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Six images (occ3d.CAMERA_NAMES order) as 2 rows of 3: front row, then back row, scaled to `width`."""
    tile_w = (width - 16) // 3
    tiles = []
    for img in images:
        pil = Image.fromarray(np.asarray(img, dtype=np.uint8))
        tiles.append(np.asarray(pil.resize((tile_w, max(1, round(pil.height * tile_w / pil.width))))))
    rows = [_hstack(tiles[i : i + 3]) for i in range(0, len(tiles), 3)]
    return _vstack(rows)


def render_comparison(
    pred: np.ndarray,
    gt: np.ndarray | None = None,
    *,
    images: Sequence[np.ndarray] | None = None,
    view: ViewConfig = ViewConfig(),
    titles: tuple[str, str] = ("prediction", "ground truth"),
) -> np.ndarray:
    """One picture: per volume a BEV and a 3D view side by side, prediction row above ground truth.

    Args:
        pred: (200, 200, 16) class ids.
        gt: optional ground truth of the same shape, drawn as a second row.
        images: optional camera images (CAM_FRONT_LEFT, CAM_FRONT, ... order) shown on top.
        view: the 3D view.
        titles: row titles.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    rows = []
    present: set[int] = set()
    for volume, title in zip((pred, gt), titles, strict=True):
        if volume is None:
            continue
        volume = _check_volume(volume)
        present.update(int(c) for c in np.unique(volume) if c != FREE_LABEL)
        rows.append(
            _hstack(
                [
                    _titled(bev_image(volume), f"{title}: BEV", scale=2),
                    _titled(voxel_view(volume, config=view), f"{title}: 3D"),
                ]
            )
        )
    body = _vstack(rows)
    body = _hstack([body, _legend(sorted(present))])
    if images:
        body = _vstack([_camera_grid(images, body.shape[1]), body])
    return body


def load_volume(path: str | Path, *, key: str = "semantics") -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and mask_camera when stored) from an Occ3D-style .npz or a plain .npy.

    Raises:
        FileNotFoundError, ValueError: missing file, no `key` array in the .npz, or a wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        if path.suffix == ".npy":
            volume, mask = np.load(path), None
        else:
            with np.load(path) as data:
                if key not in data:
                    raise ValueError(f"{path} has no '{key}' array (has {sorted(data.keys())}); pass --key")
                volume = data[key]
                mask = data.get("mask_camera")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, ValueError) and str(path) in str(error):
            raise
        # numpy and zipfile do not name the file they failed on.
        kind = "an .npz archive" if path.suffix == ".npz" else f"a {path.suffix} file"
        raise ValueError(f"{path}: unreadable as {kind} ({type(error).__name__}: {error})") from None
    try:
        return _check_volume(volume), mask
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", type=Path, help="volume to draw: .npz (array 'semantics') or .npy, (200, 200, 16)"
    )
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument(
        "--gt", type=Path, default=None, help="ground truth .npz/.npy drawn below for comparison"
    )
    parser.add_argument(
        "--images",
        type=Path,
        nargs=6,
        default=None,
        metavar="IMG",
        help="six camera images in CAM_FRONT_LEFT, CAM_FRONT, CAM_FRONT_RIGHT, CAM_BACK_LEFT, "
        "CAM_BACK, CAM_BACK_RIGHT order, shown on top",
    )
    parser.add_argument(
        "--camera-mask",
        action="store_true",
        help="hide voxels outside mask_camera of the ground truth (or of PATH without --gt)",
    )
    parser.add_argument(
        "--key", default="semantics", help="array name inside .npz files (default: semantics)"
    )
    parser.add_argument(
        "--infos",
        type=Path,
        default=None,
        help="info index: take the ground truth and camera images of the sample (unless --gt/--images)",
    )
    parser.add_argument(
        "--token", default=None, help="with --infos: the sample token (default: PATH's file name stem)"
    )
    parser.add_argument("--azimuth", type=float, default=ViewConfig.azimuth_deg, help="3D view azimuth [deg]")
    parser.add_argument(
        "--elevation", type=float, default=ViewConfig.elevation_deg, help="3D view elevation [deg]"
    )


def _sample_files(infos: Path, token: str) -> tuple[Path, list[Path]]:
    """Ground-truth file and the six camera images of one sample of an info index."""
    from fusionocc_core.data.infos import load_infos, samples_by_token
    from fusionocc_core.occ3d import CAMERA_NAMES

    index = load_infos(infos)
    info = samples_by_token(index).get(token)
    if info is None:
        raise ValueError(f"sample {token} is not in {infos}; pass --token")
    root = Path(index["dataroot"])
    return root / info["occ_path"], [root / info["cams"][name]["path"] for name in CAMERA_NAMES]


def run(args: argparse.Namespace) -> int:
    from fusionocc_core.data.files import read_image
    from fusionocc_core.data.infos import InfoIndexError

    try:
        if args.infos is not None:
            gt_path, image_paths = _sample_files(args.infos, args.token or args.path.stem)
            args.gt = args.gt or gt_path
            args.images = args.images or image_paths
        pred, pred_mask = load_volume(args.path, key=args.key)
        gt, gt_mask = load_volume(args.gt, key=args.key) if args.gt else (None, None)
        # read_image names the file in its error (PIL's "image file is truncated" does not).
        images = [read_image(p, jpeg=False) for p in args.images] if args.images else None
    except (OSError, ValueError, InfoIndexError) as error:
        print(f"fusionocc render: {error}", file=sys.stderr)
        return 2
    if args.camera_mask:
        mask = gt_mask if args.gt else pred_mask
        if mask is None:
            print(
                "fusionocc render: --camera-mask needs a mask_camera array in the ground-truth .npz",
                file=sys.stderr,
            )
            return 2
        pred = np.where(mask != 0, pred, FREE_LABEL).astype(np.uint8)
        gt = None if gt is None else np.where(mask != 0, gt, FREE_LABEL).astype(np.uint8)
    picture = render_comparison(
        pred, gt, images=images, view=ViewConfig(azimuth_deg=args.azimuth, elevation_deg=args.elevation)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(args.out)
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")
    return 0
