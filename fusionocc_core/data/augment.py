"""Image and BEV augmentations of FusionOcc (BEVDet's recipe), as matrices that travel with the sample.

Image augmentation (per sample, shared by the six cameras and both camera frames, as in BEVDet):
resize by input_width / source_width plus a random offset in `resize_lim`, crop to the input size (training:
a bottom crop with a random horizontal offset; test: bottom crop, centred horizontally), optional horizontal
flip, rotation about the crop centre. It is one 2D affine map source pixel -> input pixel,
`p' = post_rot @ p + post_tran`. The image is first resized by the augmentation's scale with antialiased
bicubic (`resize_antialiased`: the original's PIL `Image.resize`, and exactly what the streaming Predictor
does), then the rest of the map (crop, flip, rotation, at about unit scale) is one bicubic warp composed so
that the whole still equals the matrices. One warp for everything would sample a shrunk image without
prefiltering: at the tiny preset's 704 -> 256 that aliases (3 grey levels mean, up to 106, off PIL).
Pixel coordinates are continuous with pixel i covering [i, i + 1) (its centre at i + 0.5), the convention of
OpenCV/PIL resizing and of the synthetic cameras; a flip therefore maps x -> W - x.

BEV augmentation: flips of x and/or y (p = 0.5 each), a 3x3 `bda` matrix. Points and voxel labels/masks are
returned already flipped; the camera extrinsics stay un-flipped and the model composes `bda @ cam_to_key_ego`
inside the view transformation (BEVDet's convention). The grid is symmetric about the ego origin, so an x flip
of the (200, 200, 16) volume is exactly index i -> 199 - i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from fusionocc_core.image_resize import resize_antialiased, scaled_size

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)  # mmlab RGB mean
IMAGENET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


@dataclass(frozen=True)
class ImageAugConfig:
    """Image augmentation ranges (BEVDet / FusionOcc base config)."""

    input_size: tuple[int, int] = (512, 1408)  # network input (H, W) [px]
    resize_lim: tuple[float, float] = (-0.06, 0.11)  # added to the base scale W_in / W_src in training
    rot_lim: tuple[float, float] = (-5.4, 5.4)  # rotation range [deg] in training
    flip: bool = True  # random horizontal flip in training
    crop_h: tuple[float, float] = (0.0, 0.0)  # fraction of the resized height left below the crop
    test_resize: float = 0.0  # added to the base scale at test time (0.0 -> scale 0.88 for 1600 -> 1408)


@dataclass(frozen=True)
class BevAugConfig:
    """BEV flips (the spec's only BEV augmentation; BEVDet's BEV rotation/scale stay off)."""

    flip_x_prob: float = 0.5
    flip_y_prob: float = 0.5


@dataclass(frozen=True)
class ImageAug:
    """One sampled image augmentation."""

    resize: float
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in the resized image [px]
    flip: bool
    rotate_deg: float


def sample_image_aug(
    source_hw: tuple[int, int], config: ImageAugConfig, *, train: bool, rng: np.random.Generator
) -> ImageAug:
    """Draws an image augmentation (training) or returns the fixed test one (resize + bottom crop)."""
    src_h, src_w = source_hw
    in_h, in_w = config.input_size
    resize = in_w / src_w + (rng.uniform(*config.resize_lim) if train else config.test_resize)
    new_w, new_h = scaled_size(src_w, src_h, resize)
    crop_frac = rng.uniform(*config.crop_h) if train else float(np.mean(config.crop_h))
    crop_y = int((1 - crop_frac) * new_h) - in_h
    crop_x = int(rng.uniform(0, max(0, new_w - in_w))) if train else int(max(0, new_w - in_w) / 2)
    flip = bool(config.flip and train and rng.integers(0, 2))
    rotate = float(rng.uniform(*config.rot_lim)) if train else 0.0
    return ImageAug(
        resize=resize, crop=(crop_x, crop_y, crop_x + in_w, crop_y + in_h), flip=flip, rotate_deg=rotate
    )


def image_aug_matrices(aug: ImageAug) -> tuple[np.ndarray, np.ndarray]:
    """(post_rot (3, 3), post_tran (3,)) of an augmentation: input px = post_rot @ source px + post_tran.

    The 3x3/3 forms (z row identity, z translation 0) are what the model contract takes.
    """
    rot = np.eye(2) * aug.resize
    tran = -np.array(aug.crop[:2], dtype=np.float64)
    crop_w, crop_h = aug.crop[2] - aug.crop[0], aug.crop[3] - aug.crop[1]
    if aug.flip:
        flip = np.array([[-1.0, 0.0], [0.0, 1.0]])
        rot, tran = flip @ rot, flip @ tran + np.array([crop_w, 0.0])
    angle = math.radians(aug.rotate_deg)
    # Same sense as PIL's Image.rotate(angle) (counter-clockwise on screen), about the crop centre.
    spin = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    centre = np.array([crop_w, crop_h]) / 2.0
    rot, tran = spin @ rot, spin @ tran + centre - spin @ centre
    post_rot, post_tran = np.eye(3), np.zeros(3)
    post_rot[:2, :2], post_tran[:2] = rot, tran
    return post_rot, post_tran


def warp_image(
    image: np.ndarray,
    post_rot: np.ndarray,
    post_tran: np.ndarray,
    out_hw: tuple[int, int],
    *,
    resize: float | None = None,
    interpolation: int = cv2.INTER_CUBIC,
) -> np.ndarray:
    """Applies the affine map to an (H, W, C) image, black outside the source.

    Args:
        resize: the augmentation's scale (`ImageAug.resize`). Given, the image is first resized by it with
            `resize_antialiased` and only the rest of the map is warped (the whole still equals post_rot /
            post_tran); None warps everything at once (no prefilter: aliases when shrinking).
        interpolation: of the warp; bicubic by default. The geometry does not depend on it (tests check it
            with the exact-for-ramps bilinear one).
    """
    matrix = np.concatenate([post_rot[:2, :2], post_tran[:2, None]], axis=1)
    if resize is not None and resize != 1.0:
        height, width = image.shape[:2]
        new_w, new_h = scaled_size(width, height, resize)
        pixels = torch.from_numpy(np.require(image, requirements=("C", "W")))  # decoded images are read-only
        image = resize_antialiased(pixels.permute(2, 0, 1)[None], (new_w, new_h))[0].permute(1, 2, 0).numpy()
        # A resized pixel sits at source * (new / old) per axis, so the rest of the map is
        # M @ diag(old / new): composed with the resize it is exactly post_rot / post_tran again.
        matrix[:, 0] *= width / new_w
        matrix[:, 1] *= height / new_h
    # OpenCV indexes pixel centres at integers: shift the continuous-coordinate map by half a pixel.
    matrix[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(  # type: ignore[call-overload]  # opencv-python's stubs reject the int flags it takes
        image,
        matrix,
        (out_hw[1], out_hw[0]),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def warp_label_map(
    labels: np.ndarray,
    *,
    source_stride: int,
    post_rot: np.ndarray,
    post_tran: np.ndarray,
    out_hw: tuple[int, int],
    out_stride: int,
    fill: int,
) -> np.ndarray:
    """Nearest-neighbour warp of a downsampled label map (e.g. imgseg at x8) into the augmented image.

    Each output cell takes the source cell that contains the source pixel under its centre.

    Args:
        labels: (h, w) map covering the source image at `source_stride`.
        source_stride: pixels of the source image per map cell.
        post_rot, post_tran: the image augmentation (source pixel -> input pixel).
        out_hw: input image size (H, W) [px].
        out_stride: pixels of the input image per output cell.
        fill: label where the cell maps outside the source.

    Returns:
        (ceil(H / out_stride), ceil(W / out_stride)) array of labels' dtype.
    """
    out_h, out_w = -(-out_hw[0] // out_stride), -(-out_hw[1] // out_stride)
    xs = (np.arange(out_w) + 0.5) * out_stride
    ys = (np.arange(out_h) + 0.5) * out_stride
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)  # input pixel centres (x, y)
    inv = np.linalg.inv(post_rot[:2, :2])
    src = (grid - post_tran[:2]) @ inv.T
    col = np.floor(src[:, 0] / source_stride).astype(np.int64)
    row = np.floor(src[:, 1] / source_stride).astype(np.int64)
    inside = (col >= 0) & (col < labels.shape[1]) & (row >= 0) & (row < labels.shape[0])
    out = np.full(out_h * out_w, fill, dtype=labels.dtype)
    out[inside] = labels[row[inside], col[inside]]
    return out.reshape(out_h, out_w)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 with mmlab ImageNet mean/std."""
    return ((image.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def sample_bev_flips(config: BevAugConfig, *, train: bool, rng: np.random.Generator) -> tuple[bool, bool]:
    """(flip_x, flip_y); never flips at test time."""
    if not train:
        return False, False
    return bool(rng.random() < config.flip_x_prob), bool(rng.random() < config.flip_y_prob)


def bda_matrix(flip_x: bool, flip_y: bool) -> np.ndarray:
    """3x3 BEV augmentation matrix acting on ego-frame points."""
    return np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0])


def flip_volume(volume: np.ndarray, flip_x: bool, flip_y: bool) -> np.ndarray:
    """Flips a (X, Y, Z, ...) voxel volume to match `bda_matrix(flip_x, flip_y)` (contiguous copy)."""
    if flip_x:
        volume = volume[::-1]
    if flip_y:
        volume = volume[:, ::-1]
    return np.ascontiguousarray(volume)
