"""Data: demonstration datasets and ROS 2 MCAP bags (without a rosbag2 install).

``mcap_recorder`` needs no node (only ``rclpy.serialization`` and the message packages);
``nodes/topic_recorder.py`` is the rclpy node that records live topics with it. The recorder
names below are imported lazily, so ``hybrid_vla_ros.data.<module>`` never pulls in mcap or ROS
by itself.
"""
import importlib

_RECORDER_NAMES = ('BagMessage', 'McapRecorder', 'get_message', 'message_definition',
                   'message_type_name', 'read_bag')

__all__ = list(_RECORDER_NAMES)


def __getattr__(name):
    if name in _RECORDER_NAMES:
        module = importlib.import_module('hybrid_vla_ros.data.mcap_recorder')
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
