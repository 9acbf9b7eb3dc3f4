"""The command line the ROS tests share: the node binary, its parameters file, the engines, the logs folder, and
for the odometry tests a rendered sequence. Each test adds its own options to the parser."""

import argparse
import os

CACHE = os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha"))
CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "config", "matcha.yaml")


def node_test_args(sequence=False):
    """The shared options (``--sequence`` too with ``sequence``: default the rendered ``vo_short``)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--params", default=CONFIG)
    ap.add_argument("--engines", default=os.path.join(CACHE, "engines"))
    ap.add_argument("--logs", default="/tmp/matcha-ros-test")
    if sequence:
        ap.add_argument("--sequence", default=os.path.join(CACHE, "vo", "vo_short"))
    return ap
