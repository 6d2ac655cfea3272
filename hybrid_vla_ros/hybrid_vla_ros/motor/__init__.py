"""The motor level's runtime (ROS-free): observation features, waypoint tracking, policy."""
