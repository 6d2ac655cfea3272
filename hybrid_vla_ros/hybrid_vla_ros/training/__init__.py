"""Training of the learned levels (pure PyTorch; no ROS)."""
