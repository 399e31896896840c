"""A synthetic driving world written as a real nuScenes v1.0-mini + lidarseg + Occ3D dataset.

Procedural streets of oriented boxes (road, sidewalks, terrain, buildings, trees, parked and moving vehicles,
pedestrians, cones, barriers), ray cast into six cameras and a 32-beam lidar with nuScenes timing, plus Occ3D
ground truth per keyframe. A test world for the whole pipeline, not a substitute for nuScenes numbers.
"""

from fusionocc_core.synth.config import GENERATOR_VERSION, VERSION, SynthConfig
from fusionocc_core.synth.errors import SynthError
from fusionocc_core.synth.generate import COMPLETE_MARKER, ensure_dataset, generate_dataset
from fusionocc_core.synth.truth import SceneTruth

__all__ = [
    "COMPLETE_MARKER",
    "GENERATOR_VERSION",
    "VERSION",
    "SceneTruth",
    "SynthConfig",
    "SynthError",
    "ensure_dataset",
    "generate_dataset",
]
