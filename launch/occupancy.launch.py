"""Launches the FusionOcc occupancy node (and optionally RViz and a bag replay).

    ros2 launch fusionocc occupancy.launch.py checkpoint:=/path/model.pt use_rviz:=true bag:=/path/scene-0001

Arguments: checkpoint, preset, device, precision, params_file, calibration, image_transport (raw|compressed),
use_rviz, bag (played with `ros2 bag play --loop` when given), namespace. The node's private input topics are
remapped to nuScenes-style names following the image_transport convention (/CAM_FRONT/image_rect and
/CAM_FRONT/image_rect/compressed, /CAM_FRONT/camera_info, /LIDAR_TOP, /odom), which RViz's Image display also
understands; edit `_remappings` here or remap on the command line for
other drivers.
`launch` and `launch_ros` are imported only inside this file: they come with a ROS 2 install, not as wheels.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")


def _remappings(image_transport: str) -> list[tuple[str, str]]:
    remaps = [("~/input/pointcloud", "/LIDAR_TOP"), ("~/input/odometry", "/odom")]
    for camera in CAMERAS:
        if image_transport == "compressed":
            remaps.append((f"~/input/{camera}/image/compressed", f"/{camera}/image_rect/compressed"))
        else:
            remaps.append((f"~/input/{camera}/image", f"/{camera}/image_rect"))
        remaps.append((f"~/input/{camera}/camera_info", f"/{camera}/camera_info"))
    return remaps


def _node(context, *args, **kwargs):
    config = {
        name: LaunchConfiguration(name).perform(context)
        for name in (
            "checkpoint",
            "preset",
            "device",
            "precision",
            "params_file",
            "calibration",
            "image_transport",
            "namespace",
        )
    }
    overrides = {
        "preset": config["preset"],
        "device": config["device"],
        "precision": config["precision"],
        "image_transport": config["image_transport"],
        "calibration_file": config["calibration"],
    }
    if config["checkpoint"]:
        overrides["checkpoint"] = config["checkpoint"]
    return [
        Node(
            package="fusionocc",
            executable="occupancy_node",
            name="occupancy_node",
            namespace=config["namespace"],
            output="screen",
            parameters=[config["params_file"], overrides],
            remappings=_remappings(config["image_transport"]),
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fusionocc")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="FusionOcc checkpoint (.pt); empty = preset with random weights",
            ),
            DeclareLaunchArgument("preset", default_value="official", description="official | fast | tiny"),
            DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
            DeclareLaunchArgument("precision", default_value="fp32", description="fp32 | fp16 | bf16"),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "fusionocc.param.yaml"]),
                description="node parameter YAML",
            ),
            DeclareLaunchArgument(
                "calibration",
                default_value=PathJoinSubstitution([share, "config", "calibration.example.yaml"]),
                description="sensor -> ego calibration YAML (fusionocc convert writes one per bag)",
            ),
            DeclareLaunchArgument(
                "image_transport", default_value="compressed", description="raw | compressed"
            ),
            DeclareLaunchArgument("namespace", default_value="fusionocc", description="node namespace"),
            DeclareLaunchArgument(
                "use_rviz", default_value="false", description="start RViz with fusionocc.rviz"
            ),
            DeclareLaunchArgument(
                "bag", default_value="", description="rosbag2 to play (looped); empty = none"
            ),
            OpaqueFunction(function=_node),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", PathJoinSubstitution([share, "config", "fusionocc.rviz"])],
                condition=IfCondition(LaunchConfiguration("use_rviz")),
            ),
            ExecuteProcess(
                cmd=["ros2", "bag", "play", "--loop", LaunchConfiguration("bag")],
                output="screen",
                condition=IfCondition(PythonExpression(["'", LaunchConfiguration("bag"), "' != ''"])),
            ),
        ]
    )
