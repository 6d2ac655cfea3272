"""Hierarchical hybrid Vision-Language-Action control for robot arms.

The core (``models``, ``training``, ``sim``, ``data``, ``planning``) is pure Python/PyTorch and
imports no rclpy; ``nodes`` are thin rclpy adapters on top.
"""

__version__ = '0.1.0'
