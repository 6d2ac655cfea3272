"""rclpy node that records live topics into a ROS 2 MCAP bag (a tiny ``ros2 bag record``).

Subscriptions are raw (the CDR bytes go to the file untouched) and stamped with the node's
clock at reception (``use_sim_time`` is honoured). A topic given without a QoS adapts to its
publishers like rosbag2 does: reliable only if every publisher is reliable, transient local only
if every publisher is; its subscription is created once a publisher has been discovered.

    python -m hybrid_vla_ros.nodes.topic_recorder out.mcap \\
        subgoals:hybrid_vla_msgs/msg/SubGoalList /joint_states:sensor_msgs/msg/JointState
"""
import argparse
import functools

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from hybrid_vla_ros.data.mcap_recorder import McapRecorder
from hybrid_vla_ros.data.ros_interfaces import get_message, message_type_name

__all__ = ['BagRecorderNode', 'adapted_qos', 'main']


def adapted_qos(publisher_infos, depth=100):
    """rosbag2's QoS adaptation from ``get_publishers_info_by_topic``; None if no publisher."""
    if not publisher_infos:
        return None
    profiles = [info.qos_profile for info in publisher_infos]
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
    latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class BagRecorderNode(Node):
    """Records ``topics`` into an MCAP file.

    :param path: output ``.mcap`` path (ignored if ``recorder`` is given).
    :param topics: iterable of ``(topic, type)`` or ``(topic, type, qos)``; ``type`` is a message
        class or ``'pkg/msg/Type'``; ``qos`` a QoSProfile/depth, or None to adapt to publishers.
    :param qos: default QoS for entries without one (None = adapt).
    :param recorder: an existing :class:`McapRecorder` to write to (closed by :meth:`close`).
    :param flush_period_s: forwarded to the McapRecorder this node creates.
    Remaining keyword arguments go to ``rclpy.node.Node`` (``context``, ``namespace``, ...).
    """

    def __init__(self, path, topics, node_name='bag_recorder', *, qos=None, recorder=None,
                 flush_period_s=1.0, discovery_period_s=0.5, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self.recorder = recorder if recorder is not None else McapRecorder(
            path, flush_period_s=flush_period_s, handle_signals=False)
        self.counts = {}
        self._subscriptions_by_topic = {}
        self._waiting = {}
        for entry in topics:
            topic, msg_type = entry[0], entry[1]
            topic_qos = entry[2] if len(entry) > 2 else qos
            cls = get_message(msg_type) if isinstance(msg_type, str) else msg_type
            name = self._resolve(topic)
            self.recorder.add_topic(name, cls)
            self.counts[name] = 0
            self._waiting[name] = (cls, topic_qos)
        self._discovery_timer = None
        if flush_period_s > 0:  # a topic that goes quiet is on disk within the period too
            self.create_timer(flush_period_s / 2, self._flush_pending)
        self._subscribe_ready()
        if self._waiting:
            self._discovery_timer = self.create_timer(discovery_period_s, self._subscribe_ready)

    def _resolve(self, topic):
        resolve = getattr(self, 'resolve_topic_name', None)
        if resolve is not None:
            return resolve(topic)
        if topic.startswith('/'):
            return topic
        namespace = self.get_namespace().rstrip('/')
        return f'{namespace}/{topic}'

    def _subscribe_ready(self):
        for topic, (cls, topic_qos) in list(self._waiting.items()):
            if topic_qos is None:
                topic_qos = adapted_qos(self.get_publishers_info_by_topic(topic))
                if topic_qos is None:
                    continue  # no publisher yet: try again on the next timer tick
            callback = functools.partial(self._on_message, topic, message_type_name(cls))
            self._subscriptions_by_topic[topic] = self.create_subscription(
                cls, topic, callback, topic_qos, raw=True)
            del self._waiting[topic]
            self.get_logger().debug(f'recording {topic}')
        if not self._waiting and self._discovery_timer is not None:
            self._discovery_timer.cancel()
            self.destroy_timer(self._discovery_timer)
            self._discovery_timer = None

    def _on_message(self, topic, type_name, data):
        if self.recorder.closed:
            return
        stamp_ns = self.get_clock().now().nanoseconds
        self.recorder.write_serialized(topic, data, type_name, stamp_ns=stamp_ns)
        self.counts[topic] += 1

    def _flush_pending(self):
        rec = self.recorder
        if not rec.closed and rec.flushed_count < rec.message_count:
            rec.flush()

    @property
    def waiting_topics(self):
        """Topics whose subscription waits for a publisher (QoS adaptation)."""
        return sorted(self._waiting)

    def close(self):
        """Finish the bag file (idempotent)."""
        self.recorder.close()

    def destroy_node(self):
        self.close()
        return super().destroy_node()


def _parse_topic(spec):
    topic, sep, type_name = spec.rpartition(':')
    if not sep or not topic:
        raise argparse.ArgumentTypeError(f'expected TOPIC:pkg/msg/Type, got {spec!r}')
    return topic, type_name


def main(argv=None):
    parser = argparse.ArgumentParser(description='Record ROS 2 topics into an MCAP bag.')
    parser.add_argument('output', help='output .mcap file')
    parser.add_argument('topics', nargs='+', type=_parse_topic, help='TOPIC:pkg/msg/Type')
    parser.add_argument('--flush-period', type=float, default=1.0,
                        help='seconds between chunk flushes (0 = every message)')
    args, ros_args = parser.parse_known_args(argv)
    from hybrid_vla_ros.nodes.node_main import run_node  # the nodes' clean Ctrl-C / SIGTERM
    run_node(lambda: BagRecorderNode(args.output, args.topics,
                                     flush_period_s=args.flush_period), ros_args)


if __name__ == '__main__':
    main()
