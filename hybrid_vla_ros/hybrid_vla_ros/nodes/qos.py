"""The graph's QoS profiles, in one place (docs/architecture.md lists which topic uses which)."""
from rclpy.qos import (
                       DurabilityPolicy,
                       HistoryPolicy,
                       QoSProfile,
                       ReliabilityPolicy,
                       qos_profile_sensor_data,
)

# Sensors (joint states, camera): best effort, keep last 5 (rclpy's sensor-data profile).
SENSOR = qos_profile_sensor_data
# Commands to ros2_control and between our levels: reliable, as the controllers expect.
COMMAND = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     history=HistoryPolicy.KEEP_LAST)
# Latched state (the current plan): a late joiner gets the last message.
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     history=HistoryPolicy.KEEP_LAST)
