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


def executor_probe(name):
    """A probe in the chunk executor's place of the graph: it records every arm and gripper
    command (``.arm``, ``.grip``) and publishes ``action_chunk`` (``.chunks``) and
    ``/joint_states`` (``.js``), playing the motor policy and the plant."""
    import numpy as np
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from hybrid_vla_msgs.msg import ActionChunk
    from hybrid_vla_ros.nodes.qos import COMMAND, SENSOR
    p = RosProbe(name)
    p.arm, p.grip = [], []
    every = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)  # miss no command
    p.node.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                               lambda m: p.arm.append(np.array(m.data)), every)
    p.node.create_subscription(Float64MultiArray, '/gripper_controller/commands',
                               lambda m: p.grip.append(m.data[0]), every)
    p.chunks = p.node.create_publisher(ActionChunk, 'action_chunk', COMMAND)
    p.js = p.node.create_publisher(JointState, '/joint_states', SENSOR)
    return p


def publish_chunk(probe, joints, target, gripper, horizon=8):
    """One chunk from ``probe`` (an :func:`executor_probe`): ``target`` held for ``horizon``
    steps of 50 ms, the gripper at ``gripper``, stamped now."""
    import numpy as np

    from hybrid_vla_msgs.msg import ActionChunk
    msg = ActionChunk(expert='test', joint_names=list(joints), horizon=horizon)
    msg.header.stamp = probe.node.get_clock().now().to_msg()
    msg.step.nanosec = 50_000_000
    msg.positions = np.tile(target, (horizon, 1)).ravel().tolist()
    msg.gripper = [float(gripper)] * horizon
    probe.chunks.publish(msg)


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
