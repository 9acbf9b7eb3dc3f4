"""Evaluates launch/matcha.launch.py with small stand-in `launch`, `launch_ros` and `ament_index_python`
modules (the real ones are not on PyPI) and checks what it declares: every LaunchConfiguration it uses is
declared, the Node names package `matcha` / executable `matcha_node` (as installed by CMakeLists.txt),
remappings are pairs of names, and the default parameter file is config/matcha.yaml of the package.

Run: python3 tests/ros/launch_test.py   (no ROS needed; exits non-zero on failure)
"""

import os
import sys
import types

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LaunchConfiguration:
    used = []

    def __init__(self, name, default=None):
        self.name = name
        LaunchConfiguration.used.append(name)


class DeclareLaunchArgument:
    def __init__(self, name, default_value=None, description=None, **kw):
        assert isinstance(name, str) and name, name
        assert description, f"launch argument {name} has no description"
        self.name, self.default_value, self.description = name, default_value, description


class LaunchDescription:
    def __init__(self, entities):
        self.entities = list(entities)


class Node:
    def __init__(self, **kw):
        self.kw = kw


def install_stand_ins():
    launch = types.ModuleType("launch")
    launch.LaunchDescription = LaunchDescription
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = DeclareLaunchArgument
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = LaunchConfiguration
    launch.actions, launch.substitutions = actions, subs
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = Node
    launch_ros.actions = ros_actions
    aip = types.ModuleType("ament_index_python")
    pk = types.ModuleType("ament_index_python.packages")

    def get_package_share_directory(name):
        assert name == "matcha", name
        return REPO  # the installed share dir mirrors the repo layout (launch/, config/)

    pk.get_package_share_directory = get_package_share_directory
    aip.packages = pk
    for name, mod in {
        "launch": launch, "launch.actions": actions, "launch.substitutions": subs,
        "launch_ros": launch_ros, "launch_ros.actions": ros_actions,
        "ament_index_python": aip, "ament_index_python.packages": pk,
    }.items():
        sys.modules[name] = mod


def is_name(x):
    if isinstance(x, str):
        return bool(x)
    if isinstance(x, LaunchConfiguration):
        return True
    if isinstance(x, list):
        return all(isinstance(p, (str, LaunchConfiguration)) for p in x) and len(x) > 0
    return False


def main():
    install_stand_ins()
    path = os.path.join(REPO, "launch", "matcha.launch.py")
    src = open(path).read()
    compile(src, path, "exec")
    ns = {"__file__": path, "__name__": "matcha_launch"}
    exec(compile(src, path, "exec"), ns)
    ld = ns["generate_launch_description"]()
    assert isinstance(ld, LaunchDescription)
    declared = {e.name: e for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    nodes = [e for e in ld.entities if isinstance(e, Node)]
    assert len(nodes) == 1, nodes
    node = nodes[0].kw
    for need in ["params_file", "namespace", "mode", "image", "camera_info", "right_image", "right_camera_info"]:
        assert need in declared, f"launch argument {need} not declared"
    undeclared = set(LaunchConfiguration.used) - set(declared)
    assert not undeclared, f"LaunchConfiguration used but not declared: {undeclared}"
    assert node["package"] == "matcha" and node["executable"] == "matcha_node", node
    assert isinstance(node["namespace"], LaunchConfiguration) and node["namespace"].name == "namespace"
    for pair in node["remappings"]:
        assert isinstance(pair, tuple) and len(pair) == 2 and all(map(is_name, pair)), pair
    remapped = {p[0] for p in node["remappings"]}
    assert {"image", "camera_info", "right/image", "right/camera_info"} <= remapped, remapped
    params = node["parameters"]
    assert isinstance(params[0], LaunchConfiguration) and params[0].name == "params_file"
    default = declared["params_file"].default_value
    assert os.path.isfile(default), f"default parameter file {default} does not exist"
    assert default.endswith(os.path.join("config", "matcha.yaml")), default
    # the parameter file is in ROS 2 format and has the node section
    import yaml
    doc = yaml.safe_load(open(default))
    (key, body), = doc.items()
    assert "ros__parameters" in body, doc.keys()
    # CMakeLists installs what the launch file refers to
    cm = open(os.path.join(REPO, "CMakeLists.txt")).read()
    assert "DESTINATION lib/${PROJECT_NAME}" in cm and "launch config DESTINATION share" in cm
    assert "install(DIRECTORY assets DESTINATION share" in cm, "the map's vocabulary is not installed"
    print(f"launch file OK: {len(declared)} arguments, node matcha/matcha_node, "
          f"{len(node['remappings'])} remappings, params {os.path.relpath(default, REPO)}")


if __name__ == "__main__":
    main()
