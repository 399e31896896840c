"""resize_antialiased against PIL's Image.resize(BICUBIC), the resize of the original FusionOcc pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fusionocc_core.image_resize import resize_antialiased, scaled_size


@pytest.mark.parametrize("size", [(256, 144), (300, 169), (1000, 563)])  # shrink 2.75x, 2.35x; enlarge 1.4x
def test_matches_pil_bicubic_resize(size):
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:396, 0:704]
    texture = 127 + 100 * np.sin(xs / 1.1) * np.cos(ys / 2.3)
    image = np.clip(texture[..., None] + rng.normal(0, 25, (396, 704, 3)), 0, 255).astype(np.uint8)
    pil = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)).astype(np.int16)
    ours = resize_antialiased(torch.from_numpy(image).permute(2, 0, 1)[None], size)
    assert ours.dtype == torch.uint8 and ours.shape == (1, 3, size[1], size[0])
    diff = np.abs(ours[0].permute(1, 2, 0).numpy().astype(np.int16) - pil)
    # PIL rounds to 8 bits between its horizontal and vertical passes: a grey level or two here and there.
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 3


def test_float_images_stay_float_and_sizes_truncate_like_pil_dims():
    image = torch.rand(2, 3, 90, 160, dtype=torch.float64)
    assert resize_antialiased(image, (80, 45)).dtype == torch.float64
    assert scaled_size(1600, 900, 0.44) == (704, 396)
    assert scaled_size(704, 396, 256 / 704) == (256, 144)
    assert scaled_size(160, 90, 0.7427) == (118, 66)
