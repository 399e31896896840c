"""fusionocc_core must stay ROS-free: importing every one of its modules loads no rclpy or ROS message package."""
import pathlib
import subprocess
import sys

CORE = pathlib.Path(__file__).resolve().parents[2] / "fusionocc_core"

CHECK = """
import importlib, pkgutil, sys
import fusionocc_core
for info in pkgutil.walk_packages(fusionocc_core.__path__, "fusionocc_core."):
    importlib.import_module(info.name)
ros = sorted(m for m in sys.modules if m.split(".")[0] in
             {"rclpy", "sensor_msgs", "std_msgs", "nav_msgs", "geometry_msgs", "visualization_msgs",
              "fusionocc_ros", "training"})
print(",".join(ros))
"""


def test_importing_all_of_fusionocc_core_loads_no_ros():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_no_source_file_of_fusionocc_core_imports_ros_or_upper_layers():
    offenders = [
        str(path) for path in CORE.rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import rclpy", "from rclpy", "from fusionocc_ros", "import fusionocc_ros",
                                    "from training", "import training"))
    ]
    assert offenders == []
