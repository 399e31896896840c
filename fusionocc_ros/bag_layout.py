"""Topic names, message types, frames and QoS of the bags written by `fusionocc convert`.

Topic names follow Foxglove's nuscenes2mcap where one exists (images: image_transport's `<base>/compressed`),
so users find what they know; unlike that tool
the messages are standard ROS 2 types, so `ros2 bag play` replays them.

| Topic | Type | QoS offered | Stamp (header = log time) |
|---|---|---|---|
| `/<CAM>/image_rect_compressed` | sensor_msgs/CompressedImage | reliable, keep last 10 | camera sample_data |
| `/<CAM>/camera_info` | sensor_msgs/CameraInfo | reliable, keep last 10 | camera sample_data |
| `/LIDAR_TOP` | sensor_msgs/PointCloud2 | reliable, keep last 10 | lidar sample_data |
| `/tf` | tf2_msgs/TFMessage | reliable, keep last 100 | each written sample_data's ego_pose |
| `/tf_static` | tf2_msgs/TFMessage | reliable, transient local, keep last 1 | first stamp of the scene |
| `/odom` | nav_msgs/Odometry | reliable, keep last 100 | each written sample_data's ego_pose |
| `/occ_gt` (optional) | sensor_msgs/PointCloud2 | reliable, keep last 10 | keyframe lidar sample_data |

Durability is volatile except for /tf_static. `<CAM>` is each of `fusionocc_core.occ3d.CAMERA_NAMES`.
Sensor messages carry their sensor's name as `header.frame_id`; `/tf_static` holds `base_link -> <sensor>`
for the six cameras and LIDAR_TOP (calibrated_sensor), `/tf` and `/odom` hold `map -> base_link` (ego_pose).
The PointCloud2 layouts of /LIDAR_TOP and /occ_gt are `fusionocc_ros.cloud_layouts`.
"""

from __future__ import annotations

from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME

MAP_FRAME = "map"
EGO_FRAME = "base_link"

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
ODOM_TOPIC = "/odom"
LIDAR_TOPIC = f"/{LIDAR_NAME}"
OCC_GT_TOPIC = "/occ_gt"
CLOCK_TOPIC = "/clock"

COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2_TYPE = "sensor_msgs/msg/PointCloud2"
TF_TYPE = "tf2_msgs/msg/TFMessage"
ODOM_TYPE = "nav_msgs/msg/Odometry"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"

# Keep-last depths offered per topic (all reliable; /tf_static also transient local).
SENSOR_DEPTH = 10
POSE_DEPTH = 100
STATIC_DEPTH = 1


def image_topic(camera: str) -> str:
    """`/<camera>/image_rect/compressed`: image_transport's naming (base topic + `/compressed`), so RViz's Image
    display and image_transport subscribers find it; nuscenes2mcap's `image_rect_compressed` is not one."""
    return f"/{camera}/image_rect/compressed"


def camera_info_topic(camera: str) -> str:
    """`/<camera>/camera_info`."""
    return f"/{camera}/camera_info"


def sensor_topics(*, with_occ_gt: bool = False) -> dict[str, str]:
    """Every topic a converted bag holds -> its message type."""
    topics: dict[str, str] = {
        TF_STATIC_TOPIC: TF_TYPE,
        TF_TOPIC: TF_TYPE,
        ODOM_TOPIC: ODOM_TYPE,
    }
    for camera in CAMERA_NAMES:
        topics[image_topic(camera)] = COMPRESSED_IMAGE_TYPE
        topics[camera_info_topic(camera)] = CAMERA_INFO_TYPE
    topics[LIDAR_TOPIC] = POINTCLOUD2_TYPE
    if with_occ_gt:
        topics[OCC_GT_TOPIC] = POINTCLOUD2_TYPE
    return topics
