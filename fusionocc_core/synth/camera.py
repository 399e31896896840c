"""Camera rendering by ray casting: class-dependent materials, procedural texture, Lambert sun, sky and noise.

`render_camera` also returns the per-pixel Occ3D class (the debug class render, 17 = sky) and the depth, which
the tests use to check that lidar points project onto pixels of their own class.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fusionocc_core.occ3d import FREE_LABEL
from fusionocc_core.synth.materials import Material as M
from fusionocc_core.synth.noise import noise_texture, sample
from fusionocc_core.synth.raycast import BoxScene

HORIZON = np.array([0.80, 0.85, 0.90], dtype=np.float32)
ZENITH = np.array([0.32, 0.52, 0.82], dtype=np.float32)
GLASS = np.array([0.09, 0.11, 0.14], dtype=np.float32)
WHITE_PAINT = np.array([0.88, 0.88, 0.84], dtype=np.float32)


@dataclass(frozen=True)
class CameraRender:
    """One rendered image: rgb (H, W, 3) uint8, Occ3D class (H, W) uint8, depth along the ray (H, W) [m]."""

    rgb: np.ndarray
    occ_class: np.ndarray
    depth: np.ndarray


def render_camera(
    scene: BoxScene,
    *,
    origin: np.ndarray,
    rotation: np.ndarray,
    rays_cam: np.ndarray,
    width: int,
    height: int,
    sun: np.ndarray,
    rng: np.random.Generator,
) -> CameraRender:
    """Renders one camera image.

    Args:
        scene: the world's boxes at the exposure time.
        origin: camera centre in the scene frame (3,) [m].
        rotation: camera -> scene rotation (3, 3).
        rays_cam: unit pixel rays in the camera frame (H * W, 3), from `CameraSpec.pixel_rays`.
        width, height: image size [px].
        sun: unit vector towards the sun in the scene frame.
        rng: generator for the sensor noise.

    Returns:
        The image, its class render and its depth.
    """
    dirs = rays_cam @ rotation.T
    hits = scene.cast(origin, dirs)
    rgb = np.empty((len(dirs), 3), dtype=np.float32)
    elevation = np.clip(dirs[:, 2] * 2.5, 0.0, 1.0)[:, None].astype(np.float32)
    rgb[:] = HORIZON + (ZENITH - HORIZON) * elevation  # sky, overwritten where a ray hits
    occ = np.full(len(dirs), FREE_LABEL, dtype=np.uint8)
    idx = np.nonzero(hits.hit)[0]
    prim = hits.primitive[idx]
    dist = hits.distance[idx]
    points = origin + dirs[idx] * dist[:, None]
    albedo = _albedo(scene, prim, points, hits.normal[idx])
    lambert = np.clip(hits.normal[idx] @ sun, 0.0, None).astype(np.float32)
    sky_light = 0.5 + 0.5 * hits.normal[idx, 2].astype(np.float32)  # up-facing surfaces see more sky
    color = albedo * (0.25 + 0.25 * sky_light + 0.75 * lambert)[:, None]
    haze = (1.0 - np.exp(-dist / 400.0)).astype(np.float32)[:, None]
    rgb[idx] = color * (1 - haze) + HORIZON * haze
    occ[idx] = scene.boxes.occ_class[prim]
    rgb = rgb.reshape(height, width, 3)
    # Sensor: per-image exposure, vignetting, pixel noise.
    rgb *= (rng.uniform(0.92, 1.08) * _vignette(width, height))[..., None]
    rgb += 0.012 * rng.standard_normal(rgb.shape, dtype=np.float32)
    image = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    depth = np.where(hits.hit, hits.distance, np.inf).astype(np.float32).reshape(height, width)
    return CameraRender(image, occ.reshape(height, width), depth)


@lru_cache(maxsize=8)
def _vignette(width: int, height: int) -> np.ndarray:
    """Radial brightness fall-off of the lens, (H, W) float32."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    return 1.0 - 0.35 * ((u / width - 0.5) ** 2 + (v / height - 0.5) ** 2)


def _albedo(scene: BoxScene, prim: np.ndarray, points: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Surface colour (M, 3) of hit points from each box's material, colour and local surface coordinates."""
    boxes = scene.boxes
    local = boxes.to_local(points, prim)
    size = boxes.sizes[prim]
    c, s = np.cos(boxes.yaws[prim]), np.sin(boxes.yaws[prim])
    n_local = np.stack(
        [c * normal[:, 0] + s * normal[:, 1], -s * normal[:, 0] + c * normal[:, 1], normal[:, 2]], -1
    )
    axis = np.argmax(np.abs(n_local), axis=1)
    side = axis < 2
    up = local[:, 2] + size[:, 2] / 2  # height above the box bottom [m]
    # Surface coordinates (a, b): along the face; b is the height on side faces.
    a = np.where(axis == 0, local[:, 1], local[:, 0])
    b = np.where(side, up, local[:, 1])
    fine = sample(noise_texture(1, 1.0), a, b, 10.0)[:, None]
    coarse = sample(noise_texture(2, 6.0), a, b, 2.0)[:, None]
    material = boxes.material[prim]
    base = boxes.color[prim].astype(np.float32)
    out = base * (0.9 + 0.2 * fine)

    def where(m: M) -> np.ndarray:
        return material == m

    sel = where(M.ASPHALT)
    if sel.any():
        col = base[sel] * (0.75 + 0.45 * fine[sel]) * (0.85 + 0.3 * coarse[sel])
        lateral, lane = local[sel, 1], boxes.tex[prim[sel], 1]
        arc = boxes.tex[prim[sel], 0] + local[sel, 0]
        centre = (np.abs(lateral) < 0.08) & (np.mod(arc, 6.0) < 3.0)
        edge = np.abs(np.abs(lateral) - lane) < 0.06
        col[(centre | edge) & ~side[sel]] = WHITE_PAINT * 0.95
        out[sel] = col
    sel = where(M.PAVEMENT)
    if sel.any():
        joint = (np.mod(a[sel], 1.2) < 0.05) | (np.mod(b[sel], 1.2) < 0.05)
        col = base[sel] * (0.85 + 0.25 * fine[sel]) * np.where(joint, 0.75, 1.0)[:, None]
        out[sel] = np.where(side[sel, None], base[sel] * 1.2, col)
    sel = where(M.GRASS)
    if sel.any():
        dry = np.array([0.45, 0.4, 0.22], dtype=np.float32)
        out[sel] = (base[sel] * (1 - 0.6 * coarse[sel]) + dry * 0.6 * coarse[sel]) * (0.55 + 0.9 * fine[sel])
    sel = where(M.GRAVEL)
    if sel.any():
        speck = sample(noise_texture(3, 0.5), a[sel], b[sel], 25.0)[:, None]
        out[sel] = base[sel] * (0.7 + 0.6 * speck) * (0.9 + 0.2 * coarse[sel])
    sel = where(M.FACADE)
    if sel.any():
        fa, fb = np.mod(a[sel] + 0.4, 3.0), np.mod(b[sel], 3.2)
        window = side[sel] & (fa > 0.7) & (fa < 2.3) & (fb > 1.0) & (fb < 2.6) & (b[sel] > 0.9)
        col = base[sel] * (0.9 + 0.15 * fine[sel])
        col[window] = GLASS + 0.3 * coarse[sel][window]
        col[~side[sel]] = np.array([0.32, 0.31, 0.33], dtype=np.float32) * (0.8 + 0.4 * fine[sel][~side[sel]])
        out[sel] = col
    sel = where(M.FOLIAGE)
    if sel.any():
        leaf = sample(noise_texture(4, 0.7), a[sel], b[sel], 14.0)[:, None]
        out[sel] = base[sel] * (0.35 + 1.3 * leaf) * (0.8 + 0.4 * coarse[sel])
    sel = where(M.BARK)
    if sel.any():
        out[sel] = base[sel] * (0.6 + 0.7 * fine[sel])
    sel = where(M.PAINT)
    if sel.any():
        col = base[sel] * (0.95 + 0.1 * fine[sel])
        tyre = side[sel] & (b[sel] < 0.32)
        col[tyre] = 0.06
        out[sel] = col
    sel = where(M.CABIN)
    if sel.any():
        glass = side[sel] & (b[sel] < size[sel, 2] - 0.12) & (b[sel] > 0.08)
        col = base[sel].copy()
        col[glass] = GLASS + 0.35 * coarse[sel][glass]
        out[sel] = col
    sel = where(M.BUS)
    if sel.any():
        rel = b[sel] / size[sel, 2]
        glass = side[sel] & (rel > 0.45) & (rel < 0.85)
        col = base[sel].copy()
        col[glass] = GLASS + 0.3 * coarse[sel][glass]
        col[side[sel] & (rel < 0.12)] = 0.08
        out[sel] = col
    sel = where(M.STRIPES)
    if sel.any():
        band = np.mod(np.floor(up[sel] / 0.2), 2) == 1
        out[sel] = np.where(band[:, None], WHITE_PAINT, base[sel])
    sel = where(M.CONCRETE)
    if sel.any():
        joint = np.mod(a[sel], 2.5) < 0.04
        out[sel] = base[sel] * (0.8 + 0.35 * fine[sel]) * np.where(joint, 0.7, 1.0)[:, None]
    return out.astype(np.float32)
