"""rclpy node streaming the live graph into rerun (``hybrid-vla launch arm --view``).

It subscribes to the graph's topics the way the bag recorder does (QoS adapted to the
publishers, subscribed once a publisher exists) and hands every message to
:class:`~hybrid_vla_ros.viewer.run_logger.RunLogger` instead of a file:

    python -m hybrid_vla_ros.viewer.live_viewer [--robot arm7] [--save run.rrd | --web]

Without ``--save``/``--web`` it opens rerun's native viewer when there is a display, else it
serves the web viewer on http://127.0.0.1:9090.
"""
import argparse
import os


class RerunSink:
    """The recorder interface of :class:`~hybrid_vla_ros.nodes.topic_recorder.BagRecorderNode`,
    logging into rerun."""

    def __init__(self, logger):
        self.logger = logger
        self.classes = {}
        self.closed = False
        self.message_count = self.flushed_count = 0

    def add_topic(self, name, cls, qos_profiles=''):
        self.classes[name] = cls

    def write_serialized(self, topic, data, msg_type, stamp_ns=None):
        from rclpy.serialization import deserialize_message
        self.logger.message(topic, deserialize_message(data, self.classes[topic]), stamp_ns)
        self.message_count += 1

    def flush(self):
        self.logger.rec.flush()
        self.flushed_count = self.message_count

    def close(self):
        if not self.closed:
            self.closed = True
            self.logger.rec.flush()


def open_sink(rec, *, save=None, web=False, web_port=9090, grpc_port=9876, log=print) -> str:
    """Point the recording at a file, the web viewer, or a native viewer; returns where."""
    import rerun as rr

    from hybrid_vla_ros.viewer.view_command import viewer_env
    os.environ.update(viewer_env())  # rerun's analytics off (our config folder)
    if save:
        rec.save(save)
        return f'file {save}'
    if not web and (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        rec.spawn()
        return 'native viewer'
    url = rec.serve_grpc(grpc_port=grpc_port)
    rr.serve_web_viewer(web_port=web_port, open_browser=False, connect_to=url)
    where = f'web viewer http://127.0.0.1:{web_port}'
    log(f'[rerun_viewer] {where}')
    return where


def main(argv=None):
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from hybrid_vla_ros.bringup.graph import GRAPH_TOPICS
    from hybrid_vla_ros.nodes.topic_recorder import BagRecorderNode
    from hybrid_vla_ros.viewer.run_logger import RunLogger

    parser = argparse.ArgumentParser(description='Stream the graph into rerun.')
    from hybrid_vla_ros.cli import add_robot_argument
    add_robot_argument(parser)
    parser.add_argument('--save', default=None, metavar='FILE.rrd')
    parser.add_argument('--web', action='store_true')
    parser.add_argument('--web-port', type=int, default=9090)
    parser.add_argument('--grpc-port', type=int, default=9876)
    args, ros_args = parser.parse_known_args(argv)
    logger = RunLogger(args.robot, recording_id='live')
    open_sink(logger.rec, save=args.save, web=args.web, web_port=args.web_port,
              grpc_port=args.grpc_port)
    topics = GRAPH_TOPICS + (('ground_truth/task_status', 'std_msgs/msg/String'),)
    rclpy.init(args=ros_args)
    node = None
    sink = RerunSink(logger)
    try:
        node = BagRecorderNode(None, topics, node_name='rerun_viewer', recorder=sink)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        sink.close()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        logger.rec.flush()
        logger.rec.disconnect()


if __name__ == '__main__':
    main()
