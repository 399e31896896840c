"""fusionocc_ros: the ROS 2 side (node, converter, replay, CLI). Imports fusionocc_core; rclpy only lazily."""
