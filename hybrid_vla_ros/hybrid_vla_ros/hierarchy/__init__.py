"""Glue between the levels that is neither a model nor a node (ROS-free)."""
