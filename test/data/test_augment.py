"""Image and BEV augmentation: the warped image, post_rot/post_tran and label maps agree pixel for pixel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fusionocc_core.data.augment import (
    BevAugConfig,
    ImageAug,
    ImageAugConfig,
    bda_matrix,
    flip_volume,
    image_aug_matrices,
    sample_bev_flips,
    sample_image_aug,
    warp_image,
    warp_label_map,
)
from fusionocc_core.occ3d import GRID_SHAPE, POINT_CLOUD_RANGE, VOXEL_SIZE

SRC_HW = (90, 160)
CONFIG = ImageAugConfig(input_size=(48, 128))


def _ramp_image(h: int, w: int) -> np.ndarray:
    """float32 image whose channels hold the continuous (x, y) of each pixel centre."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    return np.stack([xs, ys, np.ones_like(xs)], axis=-1)


def _augs() -> list[ImageAug]:
    rng = np.random.default_rng(0)
    drawn = [sample_image_aug(SRC_HW, CONFIG, train=True, rng=rng) for _ in range(30)]
    assert any(a.flip for a in drawn) and any(not a.flip for a in drawn)
    return drawn + [sample_image_aug(SRC_HW, CONFIG, train=False, rng=rng)]


def test_test_transform_is_resize_and_bottom_crop() -> None:
    aug = sample_image_aug((900, 1600), ImageAugConfig(), train=False, rng=np.random.default_rng(0))
    assert aug.resize == pytest.approx(0.88)
    assert aug.crop == (0, 792 - 512, 1408, 792) and not aug.flip and aug.rotate_deg == 0.0
    post_rot, post_tran = image_aug_matrices(aug)
    np.testing.assert_allclose(post_rot, np.diag([0.88, 0.88, 1.0]))
    np.testing.assert_allclose(post_tran, [0.0, -280.0, 0.0])


@pytest.mark.parametrize("prefilter", [True, False], ids=["resize-then-warp", "one-warp"])
@pytest.mark.parametrize("case", range(31))
def test_warped_pixels_come_from_where_the_matrices_say(case: int, prefilter: bool) -> None:
    aug = _augs()[case]
    post_rot, post_tran = image_aug_matrices(aug)
    out = warp_image(
        _ramp_image(*SRC_HW), post_rot, post_tran, CONFIG.input_size, interpolation=cv2.INTER_LINEAR,
        resize=aug.resize if prefilter else None,
    )
    ys, xs = np.mgrid[0 : CONFIG.input_size[0], 0 : CONFIG.input_size[1]] + 0.5
    dst = np.stack([xs.ravel(), ys.ravel()], axis=1)
    src = (dst - post_tran[:2]) @ np.linalg.inv(post_rot[:2, :2]).T
    # Interior only: bilinear interpolation of a ramp is exact away from the black border, and so is the
    # antialiasing filter (symmetric, normalised) beyond its reach of 2 / scale source pixels from the edge.
    margin = 1.0 + (2.0 / aug.resize + 1.0 if prefilter else 0.0)
    interior = np.all((src > margin) & (src < np.array(SRC_HW[::-1]) - margin), axis=1)
    assert interior.mean() > 0.3
    got = out.reshape(-1, 3)[interior]
    # OpenCV interpolates at 1/32 px, so 0.025 px. Resize-then-warp adds PIL's / torch's antialiased resize, itself
    # within 0.025 source px of a ramp, and warps on the resized image, whose 1/32 px steps are 1 / (32 * scale)
    # source px. Slips would exceed these: a half-pixel convention slip is >= 0.06 px (one warp) or
    # 0.5 * (1 / scale - 1) >= 0.05 px on top of the resize's error, and composing with the augmentation's scale
    # instead of the truncated resized size is up to a pixel off at the far edge.
    tolerance = 0.025 + 1 / (32 * aug.resize) if prefilter else 0.025
    np.testing.assert_allclose(got[:, :2], src[interior], atol=tolerance)
    # A projected point lands on its pixel: forward map of a source point hits the pixel that shows it.
    point = np.array([70.3, 41.8])
    pix = post_rot[:2, :2] @ point + post_tran[:2]
    if np.all((pix >= 0) & (pix < np.array(CONFIG.input_size[::-1]))):
        col, row = np.floor(pix).astype(int)
        assert np.all(np.abs(out[row, col, :2] - point) < 1.0)


def test_shrinking_matches_pil_resize_and_one_warp_would_alias() -> None:
    """The original resizes with PIL (antialiased bicubic); so does our pipeline, to within rounding. Sampling
    the source directly (one warp, no prefilter) misses the fine detail's average: it aliases."""
    from PIL import Image

    ys, xs = np.mgrid[0:396, 0:704]
    stripes = 127 + 120 * np.sin(xs / 0.9) * np.cos(ys / 1.7)  # detail finer than the output pixels
    img = np.stack([stripes, stripes[::-1], 255 - stripes], -1).astype(np.uint8)
    config = ImageAugConfig(input_size=(96, 256))
    aug = sample_image_aug((396, 704), config, train=False, rng=np.random.default_rng(0))
    post_rot, post_tran = image_aug_matrices(aug)
    x0, y0, x1, y1 = aug.crop
    pil = np.asarray(Image.fromarray(img).resize((256, 144), Image.BICUBIC))[y0:y1, x0:x1].astype(float)
    ours = warp_image(img, post_rot, post_tran, config.input_size, resize=aug.resize).astype(float)
    aliased = warp_image(img, post_rot, post_tran, config.input_size).astype(float)
    assert np.abs(ours - pil).mean() < 0.5
    assert np.abs(aliased - pil).mean() > 10.0


def test_flip_mirrors_and_rotation_sense_matches_pil() -> None:
    base = ImageAug(resize=1.0, crop=(0, 0, 160, 90), flip=False, rotate_deg=0.0)
    ys, xs = np.mgrid[0:90, 0:160]
    smooth = 127 + 120 * np.sin(xs / 7.0) * np.cos(ys / 11.0)  # asymmetric under any rotation sense
    img = np.stack([smooth, smooth[::-1], smooth[:, ::-1]], axis=-1).astype(np.uint8)
    flipped = warp_image(img, *image_aug_matrices(ImageAug(**{**base.__dict__, "flip": True})), (90, 160))
    np.testing.assert_array_equal(flipped, img[:, ::-1])
    from PIL import Image

    rot = ImageAug(**{**base.__dict__, "rotate_deg": 5.0})
    ours = warp_image(img, *image_aug_matrices(rot), (90, 160)).astype(int)
    pil = np.asarray(Image.fromarray(img).rotate(5.0, resample=Image.BICUBIC)).astype(int)
    wrong = warp_image(img, *image_aug_matrices(ImageAug(**{**base.__dict__, "rotate_deg": -5.0})), (90, 160))
    inner = (slice(10, -10), slice(10, -10))
    assert np.abs(ours[inner] - pil[inner]).mean() < 2.0
    assert np.abs(wrong.astype(int)[inner] - pil[inner]).mean() > 10.0  # the opposite sense is far off


def test_label_map_follows_image() -> None:
    labels = np.arange(12 * 20, dtype=np.int32).reshape(12, 20)  # x8 map of a 96 x 160 image
    for aug in _augs()[:8]:
        post_rot, post_tran = image_aug_matrices(aug)
        warped = warp_label_map(
            labels,
            source_stride=8,
            post_rot=post_rot,
            post_tran=post_tran,
            out_hw=CONFIG.input_size,
            out_stride=16,
            fill=-1,
        )
        assert warped.shape == (3, 8)
        row, col = 1, 5
        centre = np.array([(col + 0.5) * 16, (row + 0.5) * 16])
        src = np.linalg.solve(post_rot[:2, :2], centre - post_tran[:2])
        expected = (
            labels[int(src[1] // 8), int(src[0] // 8)]
            if np.all(src >= 0) and src[1] < 96 and src[0] < 160
            else -1
        )
        assert warped[row, col] == expected


def test_bev_flip_moves_points_and_labels_together() -> None:
    rng = np.random.default_rng(2)
    volume = rng.integers(0, 18, size=GRID_SHAPE, dtype=np.uint8)
    lo = np.array(POINT_CLOUD_RANGE[:3])
    points = rng.uniform(lo, np.array(POINT_CLOUD_RANGE[3:]), size=(500, 3))
    original = volume[tuple(np.floor((points - lo) / VOXEL_SIZE).astype(int).T)]
    for flip_x in (False, True):
        for flip_y in (False, True):
            moved = points @ bda_matrix(flip_x, flip_y).T
            idx = np.clip(np.floor((moved - lo) / VOXEL_SIZE).astype(int), 0, np.array(GRID_SHAPE) - 1)
            flipped = flip_volume(volume, flip_x, flip_y)
            np.testing.assert_array_equal(flipped[tuple(idx.T)], original)
    assert sample_bev_flips(BevAugConfig(), train=False, rng=rng) == (False, False)
    draws = [sample_bev_flips(BevAugConfig(), train=True, rng=rng) for _ in range(200)]
    assert 60 < sum(fx for fx, _ in draws) < 140 and 60 < sum(fy for _, fy in draws) < 140
