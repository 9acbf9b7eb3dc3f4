"""Launch matcha_node: keypoint correspondences and relative pose from a camera.

    ros2 launch matcha matcha.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
    ros2 launch matcha matcha.launch.py mode:=stereo_odometry image:=/left/image_rect camera_info:=/left/camera_info \
        right_image:=/right/image_rect right_camera_info:=/right/camera_info

Parameters come from config/matcha.yaml (argument `params_file`); the launch arguments below override the
most common ones. Standard launch / launch_ros only, so it works with Humble, Jazzy and Kilted.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("matcha"), "config", "matcha.yaml")
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameter file (engine, matcher, pose, node sections)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("mode", default_value="odometry",
                              description="odometry | stereo_odometry | stereo | relocalization"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic (left in stereo)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="CameraInfo of image"),
        DeclareLaunchArgument("right_image", default_value="right/image", description="right image (stereo)"),
        DeclareLaunchArgument("right_camera_info", default_value="right/camera_info",
                              description="CameraInfo of right_image (stereo; P gives the baseline)"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
    ]
    node = Node(
        package="matcha",
        executable="matcha_node",
        name="matcha_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("params_file"), {"node.mode": LaunchConfiguration("mode")}],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("right/image", LaunchConfiguration("right_image")),
            ("right/image/compressed", [LaunchConfiguration("right_image"), "/compressed"]),
            ("right/camera_info", LaunchConfiguration("right_camera_info")),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )
    return LaunchDescription(args + [node])
