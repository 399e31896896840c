"""The generator's ground truth of a written scene, for tests and debugging: boxes, poses, class renders.

A dataset written with some seed can be re-derived exactly: `SceneTruth(seed=..., scene_index=...,
keyframes_per_scene=...)` rebuilds the same world, and times are seconds since the scene's first sample.
"""

from __future__ import annotations

import numpy as np

from fusionocc_core.synth.camera import CameraRender, render_camera
from fusionocc_core.synth.frames import scene_world
from fusionocc_core.synth.raycast import BoxScene
from fusionocc_core.synth.sensors import CAMERAS, CameraSpec
from fusionocc_core.synth.transforms import rot_z
from fusionocc_core.synth.world import BoxSet, World


class SceneTruth:
    """Ground truth of one generated scene."""

    def __init__(self, *, seed: int, scene_index: int, keyframes_per_scene: int) -> None:
        self.world: World = scene_world(
            seed=seed, scene_index=scene_index, keyframes_per_scene=keyframes_per_scene
        )

    def ego_pose(self, time: float) -> np.ndarray:
        """4x4 ego -> global transform at `time` [s]."""
        position, yaw = self.world.ego_pose(time)
        pose = np.eye(4)
        pose[:3, :3] = rot_z(yaw)
        pose[:3, 3] = position
        return pose

    def boxes(self, time: float) -> BoxSet:
        """All boxes at `time` in the global frame."""
        return self.world.boxes_at(time)

    def render(self, camera_name: str, time: float, *, width: int, height: int) -> CameraRender:
        """Renders a camera at `time` (rgb, Occ3D class per pixel, depth) exactly as the generator does."""
        camera: CameraSpec = next(c for c in CAMERAS if c.name == camera_name)
        pose = self.ego_pose(time)
        scene = BoxScene(self.boxes(time), anchor=pose[:3, 3])
        return render_camera(
            scene,
            origin=pose[:3, :3] @ np.array(camera.translation) + pose[:3, 3],
            rotation=pose[:3, :3] @ camera.rotation,
            rays_cam=camera.pixel_rays(width, height),
            width=width,
            height=height,
            sun=self.world.sun,
            rng=np.random.default_rng(0),
        )
