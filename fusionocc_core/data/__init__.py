"""Dataset side of FusionOcc: info index, imgseg targets, dataset checks, the training/evaluation dataset.

Modules import the nuScenes devkit only where a dataroot is read (`infos`, `imgseg`, `check`); the dataset
itself needs only the info index written by `fusionocc prepare`.
"""
