"""Dataset side of FusionOcc: info index, imgseg targets, dataset checks, the training/evaluation dataset.

Modules import the nuScenes devkit only where tables are read (`infos`, `check`, `prepare`); the dataset
itself needs only the info index written by `fusionocc prepare`.
"""
