"""Data: demonstration datasets and ROS 2 MCAP bags (without a rosbag2 install).

``mcap_recorder`` (writing), ``bag_reader`` (reading) and ``ros_interfaces`` (message classes and
schemas by type name) need no node (only ``rclpy.serialization`` and the message packages);
``nodes/topic_recorder.py`` is the rclpy node that records live topics with the recorder. The
bag names below are imported lazily, so ``hybrid_vla_ros.data.<module>`` never pulls in mcap or
ROS by itself.
"""
import importlib

_BAG_NAMES = {
    'BagMessage': 'bag_reader',
    'read_bag': 'bag_reader',
    'McapRecorder': 'mcap_recorder',
    'get_message': 'ros_interfaces',
    'message_definition': 'ros_interfaces',
    'message_type_name': 'ros_interfaces',
}

__all__ = list(_BAG_NAMES)


def __getattr__(name):
    if name in _BAG_NAMES:
        module = importlib.import_module(f'hybrid_vla_ros.data.{_BAG_NAMES[name]}')
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
