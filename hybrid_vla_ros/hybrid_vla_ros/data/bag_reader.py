"""Reading ROS 2 MCAP bags without rosbag2: those of :mod:`hybrid_vla_ros.data.mcap_recorder`,
or any bag with ``cdr`` channels and ``ros2msg`` schemas.

A finished file is read through its index; a file without footer (the writer was killed, or is
still writing) is scanned linearly up to its last complete record.
"""
import os
import struct
from typing import NamedTuple

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader

from hybrid_vla_ros.data.ros_interfaces import get_message

__all__ = ['BagMessage', 'read_bag']

MCAP_MAGIC = b'\x89MCAP0\r\n'


class BagMessage(NamedTuple):
    topic: str
    msg: object
    stamp_ns: int


def _is_complete(stream):
    stream.seek(0, os.SEEK_END)
    if stream.tell() < 2 * len(MCAP_MAGIC):
        return False
    stream.seek(-len(MCAP_MAGIC), os.SEEK_END)
    complete = stream.read(len(MCAP_MAGIC)) == MCAP_MAGIC
    stream.seek(0)
    return complete


def _scan_truncated(stream):
    """Linear scan of a file with no footer (killed writer): stops at the first bad record."""
    schemas, channels = {}, {}
    records = StreamReader(stream).records
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except (McapError, struct.error, EOFError, ValueError):
            return  # truncated tail: everything before it has been yielded
        if isinstance(record, Schema):
            schemas[record.id] = record
        elif isinstance(record, Channel):
            channels[record.id] = record
        elif isinstance(record, Message) and record.channel_id in channels:
            channel = channels[record.channel_id]
            yield schemas.get(channel.schema_id), channel, record


def read_bag(path, topics=None):
    """Yield :class:`BagMessage` ``(topic, msg, stamp_ns)`` from a ROS 2 MCAP file.

    A finished file is read through its index in log-time order; a file without footer (the
    writer was killed, or is still writing) is scanned linearly up to its last complete record.
    ``topics`` (a str or an iterable) restricts the topics. Messages are deserialized with
    ``rclpy.serialization.deserialize_message`` into the classes named by the schemas.
    """
    from rclpy.serialization import deserialize_message

    if isinstance(topics, str):
        topics = [topics]
    wanted = None if topics is None else set(topics)
    classes = {}
    with open(os.fspath(path), 'rb') as stream:
        if _is_complete(stream):
            items = make_reader(stream).iter_messages(topics=topics, log_time_order=True)
        else:
            items = _scan_truncated(stream)
        for schema, channel, message in items:
            if wanted is not None and channel.topic not in wanted:
                continue
            if channel.message_encoding != 'cdr' or schema is None:
                raise ValueError(f'topic {channel.topic!r}: not a ROS 2 CDR channel '
                                 f'(encoding {channel.message_encoding!r})')
            cls = classes.get(schema.name)
            if cls is None:
                cls = classes[schema.name] = get_message(schema.name)
            yield BagMessage(channel.topic, deserialize_message(message.data, cls),
                             message.log_time)
