"""fusionocc_core: the FusionOcc model and everything around it in plain PyTorch. Imports no ROS."""

__version__ = "0.1.0"
