"""Execution: streaming action chunks into a position-controlled arm, safely (ROS-free)."""
