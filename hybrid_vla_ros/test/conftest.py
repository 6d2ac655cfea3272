"""Test-session isolation for ROS 2: set at import time, before any rclpy.init().

- ``ROS_DOMAIN_ID``: random in 1..100 per pytest session (so concurrent sessions and a running
  robot on the default domain 0 do not see each other). Pin it with
  ``HYBRID_VLA_TEST_DOMAIN_ID`` when debugging.
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: discovery stays on this machine (Jazzy, Kilted);
  static peers from the environment are dropped.

Subprocesses started by the tests inherit both through ``os.environ``.
"""
import os
import random

os.environ['ROS_DOMAIN_ID'] = os.environ.get(
    'HYBRID_VLA_TEST_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_STATIC_PEERS', None)


def pytest_report_header(config):
    return (f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}")
