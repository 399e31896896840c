"""fusionocc: FusionOcc camera + lidar 3D semantic occupancy, as a ROS 2 package and a Python library.

Works for `colcon build` (ament_python: installs launch/ and config/ under share/fusionocc and registers the
node executables for `ros2 run fusionocc ...`) and for `pip install -e .[ros,train,dev]`.
"""
import sys
from glob import glob

from setuptools import find_packages, setup

package_name = "fusionocc"

# Executables on the user's PATH carry the project's name. colcon (ament_python runs `setup.py develop` or
# `setup.py install`, scripts into lib/fusionocc, see setup.cfg) also gets the ROS-style names that
# `ros2 run fusionocc occupancy_node` and the launch file use; a pip install (a wheel build) does not put such
# generic names (`replay`, `occupancy_node`) into bin/.
CONSOLE_SCRIPTS = [
    "fusionocc = fusionocc_ros.cli:main",
    "fusionocc-node = fusionocc_ros.occupancy_node:main",
    "fusionocc-replay = fusionocc_ros.replay:main",
]
if {"develop", "install"} & set(sys.argv[1:]):
    CONSOLE_SCRIPTS += [
        "occupancy_node = fusionocc_ros.occupancy_node:main",
        "replay = fusionocc_ros.replay:main",
    ]

setup(
    name=package_name,
    version="0.1.0",
    description="FusionOcc camera + lidar semantic occupancy: PyTorch core, ROS 2 node, training",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["fusionocc_core*", "fusionocc_ros*", "training*"]),
    package_data={"fusionocc_core": ["assets/*"], "fusionocc_ros": ["dds/*.xml"]},
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
        "matplotlib",  # synth/preview.py
        "pyquaternion",  # synth/preview.py (nuscenes-devkit also needs it)
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
            "ros-rcl-interfaces",  # parameter descriptors of the node
            "ros-rosgraph-msgs",  # fusionocc replay --clock
        ],
        "train": ["tensorboard"],
        "dev": ["pytest", "pytest-timeout", "hypothesis", "ruff", "mypy"],
    },
    zip_safe=True,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
