"""Every custom message crosses a real DDS link between two OS processes intact.

``dds_echo_publisher.py`` runs as a subprocess (same random ROS_DOMAIN_ID, localhost discovery:
see conftest.py) and publishes fully populated messages with the design's QoS; this process
subscribes with matching QoS and compares field by field. ``subgoals`` is published once, before
this process subscribes: receiving it proves the transient-local (latched) durability.
"""
import importlib.util
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy')

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy  # noqa: E402

from hybrid_vla_ros.data.bag_reader import read_bag  # noqa: E402
from hybrid_vla_ros.nodes.topic_recorder import BagRecorderNode  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PUBLISHER = os.path.join(HERE, 'dds_echo_publisher.py')
DISCOVERY_TIMEOUT_S = 20.0


def _load_publisher_module():
    spec = importlib.util.spec_from_file_location('dds_echo_publisher', PUBLISHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pub_module = _load_publisher_module()
SAMPLES = pub_module.sample_messages()


def _init_rclpy(context):
    try:
        from rclpy.signals import SignalHandlerOptions
        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    except (ImportError, TypeError):
        rclpy.init(context=context)


def _read_lines(stream, lines):
    try:
        for line in stream:
            lines.put(line.strip())
    except (ValueError, OSError):  # closed by the fixture's teardown
        pass


@pytest.fixture(scope='module')
def exchange(tmp_path_factory):
    """Start the publisher process, receive one of each message (and record them), stop it."""
    proc = subprocess.Popen([sys.executable, PUBLISHER, '--timeout', '60'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    lines = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    context = Context()
    _init_rclpy(context)
    node = executor = recorder = None
    received, qos_seen = {}, {}
    bag_path = str(tmp_path_factory.mktemp('bag') / 'dds.mcap')
    try:
        try:
            ready = lines.get(timeout=DISCOVERY_TIMEOUT_S)
        except queue.Empty:
            ready = None
        if ready != 'READY':
            proc.kill()
            pytest.fail(f'publisher not ready ({ready!r}): {proc.communicate()[1][-2000:]}')

        node = Node('dds_messages_test', context=context)
        subscriptions = []
        for name, (topic, msg, kind) in SAMPLES.items():
            def callback(message, name=name):
                received.setdefault(name, message)
            subscriptions.append(node.create_subscription(
                type(msg), topic, callback, pub_module.qos_profile(kind)))
        # the recorder adapts its QoS to the discovered publishers (latched subgoals too)
        recorder = BagRecorderNode(bag_path, [(topic, type(msg)) for topic, msg, _ in
                                              SAMPLES.values()],
                                   context=context, discovery_period_s=0.1)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(recorder)
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        while time.monotonic() < deadline and (
                len(received) < len(SAMPLES) or not all(recorder.counts.values())):
            executor.spin_once(timeout_sec=0.1)
        recorder.close()
        for name, (topic, _, _) in SAMPLES.items():
            infos = node.get_publishers_info_by_topic('/' + topic)
            qos_seen[name] = [info.qos_profile for info in infos]
        yield received, qos_seen, bag_path
    finally:
        if proc.poll() is None:
            try:
                proc.stdin.write('stop\n')
                proc.stdin.flush()
                proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        if executor is not None:
            executor.shutdown()
        for each in (node, recorder):
            if each is not None:
                each.destroy_node()
        context.try_shutdown()


@pytest.mark.parametrize('name', sorted(SAMPLES))
def test_message_received_intact(exchange, name):
    received = exchange[0]
    assert name in received, f'{name} not received within {DISCOVERY_TIMEOUT_S} s ' \
                             f'(got {sorted(received)})'
    expected = SAMPLES[name][1]
    got = received[name]
    assert type(got) is type(expected)
    assert got == expected


def test_nested_arrays_survive(exchange):
    received = exchange[0]
    chunk = received['action_chunk']
    assert list(chunk.joint_names) == [f'joint{j}' for j in range(1, 8)]
    assert len(chunk.positions) == chunk.horizon * len(chunk.joint_names)
    assert [sg.skill for sg in received['subgoals'].subgoals] == ['move_above', 'grasp', 'place']
    assert received['waypoints'].waypoints[2].time_from_start.nanosec == 500000000
    assert list(received['expert'].probabilities) == [0.125, 0.25, 0.5, 0.125]


def test_publisher_qos_matches_design(exchange):
    qos_seen = exchange[1]
    latched = qos_seen['subgoals']
    assert latched, 'no subgoals publisher discovered'
    assert all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in latched)
    assert all(q.reliability == ReliabilityPolicy.RELIABLE for q in latched)
    # (history depth is local to each endpoint: DDS discovery does not carry it)
    for name in ('waypoints', 'action_chunk', 'expert'):
        assert qos_seen[name], f'no {name} publisher discovered'
        assert all(q.reliability == ReliabilityPolicy.RELIABLE for q in qos_seen[name])


def test_bag_recorder_node_records_every_topic(exchange):
    bag_path = exchange[2]
    first = {}
    for topic, msg, _ in read_bag(bag_path):
        first.setdefault(topic, msg)
    for name, (topic, msg, _) in SAMPLES.items():
        assert first.get('/' + topic) == msg, f'{name} missing or different in the bag'
