"""Thin rclpy adapters: declare parameters, build pubs/subs/timers, delegate, publish."""
