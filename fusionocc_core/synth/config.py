"""Options of one synthetic dataset; every option takes part in the cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from fusionocc_core.synth.errors import SynthError

# Bump whenever the generator's output changes, so cached datasets are regenerated.
GENERATOR_VERSION = "synth-2026.11.25-4"
VERSION = "v1.0-mini"  # the nuScenes version (tables folder) written


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    Attributes:
        num_scenes: number of scenes (one street and one ego drive each).
        keyframes_per_scene: annotated samples per scene (2 Hz).
        seed: master seed; the same options give the same bytes.
        image_width, image_height: camera image size [px]; intrinsics scale from the 1600x900 calibration.
        with_sweeps: also write the non-keyframe lidar sweeps (20 Hz) and camera frames (12 Hz).
        sweep_image_scale: camera sweeps are rendered at this fraction of the resolution and upsampled to the
            full size (keyframe images always at full resolution); 1.0 renders them fully.
        jpeg_quality: JPEG quality of the camera images.
        annotation_radius: objects within this distance of the ego get a sample_annotation [m].
    """

    num_scenes: int = 1
    keyframes_per_scene: int = 20
    seed: int = 0
    image_width: int = 1600
    image_height: int = 900
    with_sweeps: bool = True
    sweep_image_scale: float = 0.5
    jpeg_quality: int = 90
    annotation_radius: float = 60.0

    def __post_init__(self) -> None:
        if self.num_scenes < 1:
            raise SynthError(f"num_scenes must be >= 1, got {self.num_scenes}.")
        if not 1 <= self.keyframes_per_scene <= 400:
            raise SynthError(f"keyframes_per_scene must be in [1, 400], got {self.keyframes_per_scene}.")
        if self.image_width < 32 or self.image_height < 32:
            raise SynthError(f"image size {self.image_width}x{self.image_height} is too small (>= 32x32).")
        if not 0.1 <= self.sweep_image_scale <= 1.0:
            raise SynthError(f"sweep_image_scale must be in [0.1, 1], got {self.sweep_image_scale}.")
        if not 1 <= self.jpeg_quality <= 100:
            raise SynthError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}.")

    def cache_key(self) -> str:
        """Hash of all options and the generator version (names the cached dataset folder)."""
        text = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]
