"""Test harness for real-DDS tests: a node in the test process plus nodes in child processes."""
import os
import subprocess
import sys
import time

import rclpy


def graph_domain(offset: int) -> int:
    """A DDS domain of its own for one test module's graph: ``offset`` (1..99) away from the
    test session's ``ROS_DOMAIN_ID`` (1..100, set by conftest). A stopped graph's endpoints
    outlive it until their lease ends, and a node of the previous module's graph still going
    down must not be taken for this graph's node of the same name."""
    if not 0 < offset < 100:
        raise ValueError(f'offset must be in 1..99, got {offset}')
    return (int(os.environ['ROS_DOMAIN_ID']) - 1 + offset) % 100 + 1


class RosProbe:
    """An rclpy node in the test process with helpers to wait on topics."""

    def __init__(self, name='test_probe'):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.latest = {}
        self.counts = {}

    def subscribe(self, msg_type, topic, qos, key=None):
        key = key or topic

        def cb(msg):
            self.latest[key] = msg
            self.counts[key] = self.counts.get(key, 0) + 1
        return self.node.create_subscription(msg_type, topic, cb, qos)

    def spin_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def wait_for(self, predicate, timeout, what, every=None):
        """Spin until ``predicate()`` is true; ``every()`` is called each loop (e.g. publish)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if every is not None:
                every()
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return
        raise AssertionError(f'timed out after {timeout} s waiting for {what}')

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def start_node(module, *ros_args, log_path=None):
    """Start ``python -m module --ros-args ...`` as a child process (stdout/err to a file)."""
    out = open(log_path, 'w') if log_path else subprocess.DEVNULL
    cmd = [sys.executable, '-m', module]
    if ros_args:
        cmd += ['--ros-args', *ros_args]
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())


def stop_node(proc, timeout=10):
    import signal
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
