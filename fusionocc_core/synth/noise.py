"""Tileable value-noise textures, made once from a fixed seed so every render is reproducible."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

TEXTURE_SIZE = 256


@lru_cache(maxsize=4)
def noise_texture(seed: int, smoothness: float) -> np.ndarray:
    """A (256, 256) float32 texture in [0, 1], low-pass filtered in Fourier space so it tiles seamlessly.

    Args:
        seed: texture seed.
        smoothness: Gaussian filter width in texels (larger = blotchier).
    """
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((TEXTURE_SIZE, TEXTURE_SIZE))
    f = np.fft.fftfreq(TEXTURE_SIZE)
    kernel = np.exp(-0.5 * (2 * np.pi * smoothness) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    smooth = np.real(np.fft.ifft2(np.fft.fft2(white) * kernel))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return smooth.astype(np.float32)


def sample(texture: np.ndarray, a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Nearest-texel lookup at surface coordinates (a, b) [m] with `scale` texels per metre (wraps around)."""
    ia = np.floor(a * scale).astype(np.int64) & (TEXTURE_SIZE - 1)
    ib = np.floor(b * scale).astype(np.int64) & (TEXTURE_SIZE - 1)
    return texture[ia, ib]
