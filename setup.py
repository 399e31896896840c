"""fusionocc: FusionOcc camera + lidar 3D semantic occupancy, as a ROS 2 package and a Python library.

Works for `colcon build` (ament_python: installs launch/ and config/ under share/fusionocc and registers the
node executables for `ros2 run fusionocc ...`) and for `pip install -e .[ros,train,dev]`.
"""
from glob import glob

from setuptools import find_packages, setup

package_name = "fusionocc"

setup(
    name=package_name,
    version="0.1.0",
    description="FusionOcc camera + lidar semantic occupancy: PyTorch core, ROS 2 node, training",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["fusionocc_core*", "fusionocc_ros*", "training*"]),
    package_data={"fusionocc_core": ["assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    # torch is deliberately not pinned here: scripts/setup_env.sh installs the CPU or CUDA build first.
    install_requires=[
        "torch>=2.1",
        "numpy",
        "spconv-cu118",
        "nuscenes-devkit",
        "rosbags>=0.11",
        "urdfdom-py>=1.2",  # urdf_parser_py, ROS 2's URDF parser (fusionocc rig --urdf)
        "pillow",
        "opencv-python-headless",  # the data pipeline's image warps (nuscenes-devkit requires the same)
        "pyyaml",
        "tqdm",
        "matplotlib",
        "trimesh",
        "embreex",
    ],
    extras_require={
        # ROS 2 Kilted wheels from PyPI, for machines without a ROS install (a colcon build uses the system's).
        "ros": [
            "ros-rclpy",
            "ros-std-msgs",
            "ros-sensor-msgs",
            "ros-geometry-msgs",
            "ros-nav-msgs",
            "ros-visualization-msgs",
            "ros-diagnostic-msgs",
            "ros-rmw-fastrtps-cpp",
        ],
        "train": ["tensorboard"],
        "dev": ["pytest", "pytest-timeout", "hypothesis", "ruff"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "fusionocc = fusionocc_ros.cli:main",
            "occupancy_node = fusionocc_ros.occupancy_node:main",
            "replay = fusionocc_ros.replay:main",
        ],
    },
)
