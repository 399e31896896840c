"""Launches the FusionOcc occupancy node (and optionally RViz and a bag replay).

    ros2 launch fusionocc occupancy.launch.py checkpoint:=/path/model.pt use_rviz:=true bag:=/path/scene-0001

Arguments: params_file, checkpoint, preset, device, precision, calibration, image_transport,
camera_image_topic, namespace, use_rviz, bag. Every parameter argument is empty by default and overrides the
params file only when given, so what your params file sets is what runs. With `bag:=DIR` the node uses
`DIR/calibration.yaml` unless a calibration is given (argument or params file), and the bag is played with
`ros2 bag play --loop` using fusionocc's transport profile. Input topics come from the node's `topics.*`
parameters (defaults: the names of `fusionocc convert`'s bags), not from remappings.
The decisions live in `fusionocc_ros.launch_params` (tested without `launch`); `launch` and `launch_ros` are
imported only here: they come with a ROS 2 install, not as wheels.
"""

import os

from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from fusionocc_ros.launch_params import ARGUMENT_PARAMETERS, bag_player_env, node_parameters
from launch import LaunchDescription


def _actions(context, *args, **kwargs):
    arguments = {
        name: LaunchConfiguration(name).perform(context) for name in (*ARGUMENT_PARAMETERS, "bag")
    }
    params_file = LaunchConfiguration("params_file").perform(context)
    actions = [
        Node(
            package="fusionocc",
            executable="occupancy_node",
            name="occupancy_node",
            namespace=LaunchConfiguration("namespace").perform(context),
            output="screen",
            parameters=node_parameters(arguments, params_file),
        )
    ]
    if arguments["bag"]:
        actions.append(
            ExecuteProcess(
                cmd=["ros2", "bag", "play", "--loop", arguments["bag"]],
                additional_env=bag_player_env(os.environ),
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fusionocc")
    given = " (default: the params file's value)"
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "fusionocc.param.yaml"]),
                description="node parameter YAML",
            ),
            DeclareLaunchArgument(
                "checkpoint", default_value="",
                description="FusionOcc checkpoint (project .pt or original .pth)" + given,
            ),
            DeclareLaunchArgument("preset", default_value="", description="official | fast | tiny" + given),
            DeclareLaunchArgument("device", default_value="", description="auto | cpu | cuda | cuda:N" + given),
            DeclareLaunchArgument("precision", default_value="", description="fp32 | fp16 | bf16" + given),
            DeclareLaunchArgument(
                "calibration",
                default_value="",
                description="sensor calibration YAML (sensor -> ego extrinsics); sets the node parameter "
                "calibration_file, like `fusionocc node --calibration`"
                + given
                + "; with bag:= the bag's own",
            ),
            DeclareLaunchArgument("image_transport", default_value="", description="raw | compressed" + given),
            DeclareLaunchArgument(
                "camera_image_topic", default_value="", description="camera image topic pattern with {camera}" + given
            ),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace (default: none)"),
            DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz with fusionocc.rviz"),
            DeclareLaunchArgument("bag", default_value="", description="rosbag2 to play (looped); empty = none"),
            OpaqueFunction(function=_actions),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", PathJoinSubstitution([share, "config", "fusionocc.rviz"])],
                condition=IfCondition(LaunchConfiguration("use_rviz")),
            ),
        ]
    )
