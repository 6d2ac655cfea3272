"""Test-session isolation for ROS 2: set at import time, before any rclpy.init().

- ``ROS_DOMAIN_ID``: random in 1..100 per pytest session (so concurrent sessions and a running
  robot on the default domain 0 do not see each other). Pin it with
  ``HYBRID_VLA_TEST_DOMAIN_ID`` when debugging.
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: discovery stays on this machine (Jazzy, Kilted);
  static peers from the environment are dropped.

Subprocesses started by the tests inherit both through ``os.environ``.

A test run started in the background of a non-interactive shell (``cmd &``, nohup) inherits
SIGINT *ignored*, and Python then installs no Ctrl-C handler, in this process or in the nodes it
starts: the Ctrl-C tests would test nothing. SIGINT gets Python's default handler back here
(a handled signal is reset to the default on exec, so the nodes get theirs too).
"""
import os
import random
import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ['ROS_DOMAIN_ID'] = os.environ.get(
    'HYBRID_VLA_TEST_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_STATIC_PEERS', None)


def pytest_report_header(config):
    return (f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}")
