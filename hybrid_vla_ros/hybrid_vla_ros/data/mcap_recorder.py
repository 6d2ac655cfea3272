"""ROS 2 MCAP bags written without rosbag2 or a running node.

The files follow rosbag2's MCAP storage conventions, so ``ros2 bag info/play``, Foxglove and
``mcap_ros2`` read them: profile ``ros2``, one schema per message type named ``pkg/msg/Type``
with encoding ``ros2msg`` whose text is the ``.msg`` file followed by every dependency's
definition (``====`` separator line, ``MSG: pkg/Type``, recursively), channels with
``cdr`` payloads serialized by ``rclpy.serialization.serialize_message`` (the schema text is
:func:`~hybrid_vla_ros.data.ros_interfaces.message_definition`). The bags are read back by
:mod:`hybrid_vla_ros.data.bag_reader`.

Robustness:

- Chunks are flushed to the OS at least every ``flush_period_s`` seconds (``0`` = after every
  message), so a killed process leaves a file whose complete chunks
  :func:`~hybrid_vla_ros.data.bag_reader.read_bag` still reads (it falls back to a linear scan
  that stops at the first truncated record).
- With ``handle_signals=True`` (default, main thread only) SIGINT and SIGTERM finish every open
  recorder (summary + footer, a valid file for any MCAP reader) and the signal is then delivered
  again to the handler that was installed before (``KeyboardInterrupt`` for SIGINT, termination
  for SIGTERM by default). A signal that lands inside ``write()`` is handled when that write is
  done. Inside an rclpy process prefer ``handle_signals=False`` and close in ``finally`` (rclpy
  installs its own C-level handlers, which a Python handler would replace).
- Open recorders are also finished at interpreter exit (atexit).

Example::

    with McapRecorder('/tmp/run.mcap') as bag:
        bag.write('/subgoals', subgoal_list)              # stamp = time.time_ns()
    for topic, msg, stamp_ns in read_bag('/tmp/run.mcap'):  # data/bag_reader.py
        ...
"""
import atexit
import os
import signal
import threading
import time
import weakref

from mcap.writer import CompressionType, Writer

from hybrid_vla_ros.data.ros_interfaces import (
    message_definition,
    message_type_name,
    split_type_name,
)

__all__ = ['McapRecorder']


# --------------------------------------------------------------------------------- signals

_OPEN = weakref.WeakSet()            # every open recorder (closed at exit)
_SIGNAL_OPEN = weakref.WeakSet()     # the ones that asked for signal handling
_PREVIOUS = {}                       # signum -> handler installed before ours
_HANDLED = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def _install_handlers():
    if not _in_main_thread():
        return False
    for signum in _HANDLED:
        if signal.getsignal(signum) is not _on_signal:
            _PREVIOUS[signum] = signal.getsignal(signum)
            signal.signal(signum, _on_signal)
    return True


def _restore_handlers():
    if not _in_main_thread():
        return
    for signum, previous in list(_PREVIOUS.items()):
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        del _PREVIOUS[signum]


def _on_signal(signum, frame):
    deferred = False
    for recorder in list(_SIGNAL_OPEN):
        deferred |= not recorder._close_for_signal(signum)
    if deferred:
        return  # the interrupted write() finishes, closes and raises the signal again
    _restore_handlers()
    signal.raise_signal(signum)  # now handled by the previous handler (or the default action)


@atexit.register
def _close_all_at_exit():
    for recorder in list(_OPEN):
        try:
            recorder.close()
        except Exception:  # best effort at exit
            pass


# -------------------------------------------------------------------------------- recorder

_COMPRESSION = {'none': CompressionType.NONE, '': CompressionType.NONE,
                'zstd': CompressionType.ZSTD, 'lz4': CompressionType.LZ4}


class McapRecorder:
    """Writes ROS 2 messages to an MCAP file (rosbag2 layout). Thread-safe.

    :param path: output file (created/truncated; parent directories are created).
    :param chunk_size: bytes of messages per chunk before it is written out.
    :param compression: ``'none'`` (default), ``'zstd'`` or ``'lz4'`` (needs that module).
    :param flush_period_s: the current chunk is written and the file flushed when this long has
        passed since the last flush (checked on each write); ``0`` flushes after every message.
    :param handle_signals: finish the file on SIGINT/SIGTERM, then re-deliver the signal.
    :param fsync: also ``os.fsync`` on each flush (survives a power cut, slower).
    """

    def __init__(self, path, *, chunk_size=1 << 20, compression='none', flush_period_s=1.0,
                 handle_signals=True, fsync=False):
        if compression not in _COMPRESSION:
            raise ValueError(f'compression must be one of {sorted(_COMPRESSION)}, '
                             f'got {compression!r}')
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.RLock()
        self._main_busy = False
        self._pending_signal = None
        self._closed = False
        self._flush_period_ns = int(flush_period_s * 1e9)
        self._fsync = fsync
        self._stream = open(self.path, 'wb')  # closed in close()
        try:
            self._writer = Writer(self._stream, chunk_size=chunk_size,
                                  compression=_COMPRESSION[compression])
            self._writer.start(profile='ros2', library='hybrid_vla_ros.data.mcap_recorder')
            self._stream.flush()
        except Exception:
            self._stream.close()
            raise
        self._schemas = {}    # type name -> schema id
        self._channels = {}   # topic -> (channel id, type name)
        self.message_count = 0
        self.flushed_count = 0
        self._last_flush_ns = time.monotonic_ns()
        _OPEN.add(self)
        self.handles_signals = bool(handle_signals) and _install_handlers()
        if self.handles_signals:
            _SIGNAL_OPEN.add(self)

    # --------------------------------------------------------------- critical sections
    def _enter(self):
        # The flag is raised before the lock is taken and lowered after it is released, so a
        # signal handler running in the main thread never closes the file under a write.
        if _in_main_thread():
            self._main_busy = True
        self._lock.acquire()

    def _leave(self):
        self._lock.release()
        if _in_main_thread():
            self._main_busy = False
            pending, self._pending_signal = self._pending_signal, None
            if pending is not None:
                self.close()
                signal.raise_signal(pending)  # back through _on_signal to the previous handler

    def _close_for_signal(self, signum):
        """Called by the signal handler (main thread). False if the main thread is writing."""
        if self._main_busy:
            self._pending_signal = signum
            return False
        self.close()
        return True

    # ------------------------------------------------------------------------- API
    @property
    def closed(self):
        return self._closed

    def add_topic(self, topic, msg_type, qos_profiles=''):
        """Register ``topic`` with a message class or ``'pkg/msg/Type'``; returns the channel id.

        ``qos_profiles`` is rosbag2's ``offered_qos_profiles`` YAML (optional).
        """
        type_name = msg_type if isinstance(msg_type, str) else message_type_name(msg_type)
        pkg, kind, name = split_type_name(type_name)
        type_name = f'{pkg}/{kind}/{name}'
        self._enter()
        try:
            self._check_open()
            if topic in self._channels:
                channel_id, known = self._channels[topic]
                if known != type_name:
                    raise ValueError(f'topic {topic!r} already recorded as {known}, '
                                     f'not {type_name}')
                return channel_id
            if type_name not in self._schemas:
                self._schemas[type_name] = self._writer.register_schema(
                    name=type_name, encoding='ros2msg',
                    data=message_definition(type_name).encode('utf-8'))
            metadata = {'offered_qos_profiles': qos_profiles} if qos_profiles else {}
            channel_id = self._writer.register_channel(
                topic=topic, message_encoding='cdr', schema_id=self._schemas[type_name],
                metadata=metadata)
            self._channels[topic] = (channel_id, type_name)
            return channel_id
        finally:
            self._leave()

    def write(self, topic, msg, stamp_ns=None):
        """Serialize and append ``msg`` on ``topic`` at ``stamp_ns`` (default: now, wall clock)."""
        from rclpy.serialization import serialize_message

        channel_id = self.add_topic(topic, type(msg))
        self._write_data(channel_id, serialize_message(msg), stamp_ns)

    def write_serialized(self, topic, data, msg_type, stamp_ns=None):
        """Append an already CDR-serialized message (e.g. from a raw subscription)."""
        channel_id = self.add_topic(topic, msg_type)
        self._write_data(channel_id, bytes(data), stamp_ns)

    def _write_data(self, channel_id, data, stamp_ns):
        stamp_ns = time.time_ns() if stamp_ns is None else int(stamp_ns)
        self._enter()
        try:
            self._check_open()
            self._writer.add_message(channel_id=channel_id, log_time=stamp_ns, data=data,
                                     publish_time=stamp_ns, sequence=self.message_count)
            self.message_count += 1
            if (self._flush_period_ns <= 0
                    or time.monotonic_ns() - self._last_flush_ns >= self._flush_period_ns):
                self._flush_locked()
        finally:
            self._leave()

    def flush(self):
        """Write the current chunk and flush the file (readable up to here after a kill)."""
        self._enter()
        try:
            if not self._closed:
                self._flush_locked()
        finally:
            self._leave()

    def _flush_locked(self):
        self._writer.flush()
        if self._fsync:
            os.fsync(self._stream.fileno())
        self.flushed_count = self.message_count
        self._last_flush_ns = time.monotonic_ns()

    def close(self):
        """Finish the file (summary, footer). Idempotent."""
        self._enter()
        try:
            if self._closed:
                return
            self._closed = True
            try:
                self._writer.finish()
                self._stream.flush()
                if self._fsync:
                    os.fsync(self._stream.fileno())
                self.flushed_count = self.message_count
            finally:
                self._stream.close()
                _OPEN.discard(self)
                _SIGNAL_OPEN.discard(self)
                if self.handles_signals and not _SIGNAL_OPEN:
                    _restore_handlers()
        finally:
            self._leave()

    def _check_open(self):
        if self._closed:
            raise ValueError(f'McapRecorder({self.path!r}) is closed')

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        if not getattr(self, '_closed', True):  # dropped without close(): still finish the file
            try:
                self.close()
            except Exception:  # never raise from a finalizer
                pass

    def __repr__(self):
        state = 'closed' if self._closed else 'open'
        return f'McapRecorder({self.path!r}, {state}, {self.message_count} messages)'
