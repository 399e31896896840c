"""training: offline training and evaluation of FusionOcc on nuScenes + Occ3D."""
