"""FusionOcc network: camera branch (image backbone, neck, cross-modal fusion, depth net, lift-splat),
lidar branch, 3D encoder and head. Import the submodules directly; this package imports nothing heavy."""
