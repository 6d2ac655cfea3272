"""Closed-loop evaluation in the MuJoCo sim (ROS-free) and through the ROS graph."""
