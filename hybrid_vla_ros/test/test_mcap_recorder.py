"""ROS 2 MCAP recording without rosbag2 (hybrid_vla_ros.data.mcap_recorder)."""
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip('rclpy')

from mcap.reader import make_reader  # noqa: E402

from hybrid_vla_ros.data import bag_reader  # noqa: E402
from hybrid_vla_ros.data.bag_reader import read_bag  # noqa: E402
from hybrid_vla_ros.data.mcap_recorder import McapRecorder  # noqa: E402
from hybrid_vla_ros.data.ros_interfaces import (  # noqa: E402
    get_message,
    message_definition,
    message_type_name,
)

HERE = os.path.dirname(os.path.abspath(__file__))
PUBLISHER = os.path.join(HERE, 'dds_echo_publisher.py')


def _samples():
    spec = importlib.util.spec_from_file_location('dds_echo_publisher', PUBLISHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sample_messages()


SAMPLES = _samples()


def _write_samples(path, repeats=2, **kwargs):
    expected = []
    with McapRecorder(path, **kwargs) as bag:
        stamp = 1_000
        for _ in range(repeats):
            for topic, msg, _ in SAMPLES.values():
                bag.write(topic, msg, stamp_ns=stamp)
                expected.append((topic, msg, stamp))
                stamp += 1_000
    return expected


def test_round_trip_every_custom_message_and_image(tmp_path):
    path = str(tmp_path / 'bag.mcap')
    expected = _write_samples(path)
    got = list(read_bag(path))
    assert [(t, s) for t, _, s in got] == [(t, s) for t, _, s in expected]
    for (_, msg, _), item in zip(expected, got):
        assert type(item.msg) is type(msg)
        assert item.msg == msg
    only = list(read_bag(path, topics='subgoals'))
    assert len(only) == 2 and all(m.topic == 'subgoals' for m in only)


def test_file_layout_is_rosbag2_mcap(tmp_path):
    path = str(tmp_path / 'bag.mcap')
    _write_samples(path, repeats=1)
    with open(path, 'rb') as stream:
        reader = make_reader(stream)
        assert reader.get_header().profile == 'ros2'
        summary = reader.get_summary()
    schemas = {s.name: s for s in summary.schemas.values()}
    assert set(schemas) == {'hybrid_vla_msgs/msg/SubGoalList', 'hybrid_vla_msgs/msg/WaypointArray',
                            'hybrid_vla_msgs/msg/ActionChunk',
                            'hybrid_vla_msgs/msg/ExpertSelection', 'sensor_msgs/msg/Image'}
    assert all(s.encoding == 'ros2msg' for s in schemas.values())
    assert all(c.message_encoding == 'cdr' for c in summary.channels.values())
    assert summary.statistics.message_count == len(SAMPLES)


def test_schema_text_contains_all_dependencies(tmp_path):
    text = message_definition('hybrid_vla_msgs/msg/SubGoalList')
    assert text.startswith('# Ordered plan') or 'SubGoal[] subgoals' in text.split('====')[0]
    for dep in ('hybrid_vla_msgs/SubGoal', 'std_msgs/Header', 'builtin_interfaces/Time',
                'geometry_msgs/Pose', 'geometry_msgs/Point', 'geometry_msgs/Quaternion'):
        assert f'\nMSG: {dep}\n' in text, dep
        assert text.count(f'\nMSG: {dep}\n') == 1  # each dependency once
    separator = '=' * 80
    assert text.count(separator) == 6
    chunk = message_definition('hybrid_vla_msgs/msg/ActionChunk')
    assert '\nMSG: builtin_interfaces/Duration\n' in chunk
    assert 'float64[] positions' in chunk
    # `pkg/Type` and `pkg/msg/Type` spellings name the same definition
    assert message_definition('hybrid_vla_msgs/WaypointArray') == \
        message_definition('hybrid_vla_msgs/msg/WaypointArray')


def test_schema_decodes_with_an_independent_parser(tmp_path):
    """mcap_ros2 parses our schema text on its own: proves the definitions are complete."""
    decoder = pytest.importorskip('mcap_ros2.decoder')
    path = str(tmp_path / 'bag.mcap')
    _write_samples(path, repeats=1)
    with open(path, 'rb') as stream:
        decoded = {channel.topic: msg for _, channel, _, msg in make_reader(
            stream, decoder_factories=[decoder.DecoderFactory()]).iter_decoded_messages()}
    subgoals = decoded['subgoals']
    expected = SAMPLES['subgoals'][1]
    assert subgoals.instruction == expected.instruction
    assert subgoals.subgoals[2].target_pose.orientation.w == 0.5
    assert subgoals.header.frame_id == 'base_link'
    chunk = decoded['action_chunk']
    assert list(chunk.positions) == list(SAMPLES['action_chunk'][1].positions)
    assert chunk.step.nanosec == 50000000


def test_type_helpers():
    from hybrid_vla_msgs.msg import ActionChunk
    assert message_type_name(ActionChunk) == 'hybrid_vla_msgs/msg/ActionChunk'
    assert message_type_name(ActionChunk()) == 'hybrid_vla_msgs/msg/ActionChunk'
    assert get_message('hybrid_vla_msgs/msg/ActionChunk') is ActionChunk
    assert get_message('hybrid_vla_msgs/ActionChunk') is ActionChunk
    with pytest.raises(ValueError):
        get_message('hybrid_vla_msgs/msg/NoSuchType')
    with pytest.raises(TypeError):
        message_type_name(object())


def test_api_errors_and_idempotent_close(tmp_path):
    from std_msgs.msg import String
    bag = McapRecorder(str(tmp_path / 'sub' / 'dir' / 'x.mcap'), handle_signals=False)
    bag.write('/a', String(data='x'))
    with pytest.raises(ValueError, match='already recorded as std_msgs/msg/String'):
        bag.write('/a', get_message('std_msgs/msg/Header')())
    bag.close()
    bag.close()
    with pytest.raises(ValueError, match='closed'):
        bag.write('/a', String(data='y'))
    assert [m.msg.data for m in read_bag(bag.path)] == ['x']
    with pytest.raises(ValueError, match='compression'):
        McapRecorder(str(tmp_path / 'y.mcap'), compression='bz2')


def test_signal_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with McapRecorder(str(tmp_path / 'a.mcap')):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_in_process_sigint_finishes_file_and_raises_keyboard_interrupt(tmp_path):
    from std_msgs.msg import String
    path = str(tmp_path / 'int.mcap')
    bag = McapRecorder(path, flush_period_s=60)
    bag.write('/a', String(data='before'), stamp_ns=1)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        time.sleep(1)  # the handler runs at the next bytecode boundary
    assert bag.closed
    assert [m.msg.data for m in read_bag(path)] == ['before']
    with open(path, 'rb') as stream:  # a complete file: the standard seeking reader accepts it
        assert make_reader(stream).get_summary().statistics.message_count == 1


def test_serialized_write_and_flushed_count(tmp_path):
    from rclpy.serialization import serialize_message
    topic, msg, _ = SAMPLES['expert']
    path = str(tmp_path / 'raw.mcap')
    with McapRecorder(path, flush_period_s=0, handle_signals=False) as bag:
        bag.write_serialized(topic, serialize_message(msg), 'hybrid_vla_msgs/msg/ExpertSelection',
                             stamp_ns=5)
        assert bag.flushed_count == bag.message_count == 1
    assert list(read_bag(path)) == [(topic, msg, 5)]


RECORDER_SCRIPT = textwrap.dedent('''
    import importlib.util, sys
    from hybrid_vla_ros.data.mcap_recorder import McapRecorder
    spec = importlib.util.spec_from_file_location('pub', sys.argv[2])
    pub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pub)
    samples = list(pub.sample_messages().values())
    bag = McapRecorder(sys.argv[1], flush_period_s=0, chunk_size=4096)
    i = 0
    while True:
        topic, msg, _ = samples[i % len(samples)]
        bag.write(topic, msg, stamp_ns=i + 1)
        i += 1
        print(i, flush=True)  # i messages are flushed to the file
''')


@pytest.mark.parametrize('signum,complete', [(signal.SIGINT, True), (signal.SIGTERM, True),
                                             (signal.SIGKILL, False)])
def test_killed_recording_reads_back(tmp_path, signum, complete):
    """A recorder process signalled mid-run leaves everything it reported as written."""
    path = str(tmp_path / 'killed.mcap')
    with subprocess.Popen([sys.executable, '-c', RECORDER_SCRIPT, path, PUBLISHER],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        count = 0
        deadline = time.monotonic() + 30
        try:
            while count < 40 and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                count = int(line)
            assert count >= 40, f'recorder did not start: {proc.stderr.read()[-2000:]}'
            proc.send_signal(signum)
            # keep draining stdout: the last count printed before the signal was written
            for line in proc.stdout:
                count = int(line)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read()
    assert proc.returncode == -signum, stderr[-2000:]
    got = list(read_bag(path))
    assert count <= len(got) <= count + 1  # +1: written, signalled before printing
    samples = list(SAMPLES.values())
    for i, (topic, msg, stamp) in enumerate(got):
        assert stamp == i + 1
        assert (topic, msg) == samples[i % len(samples)][:2]
    with open(path, 'rb') as stream:
        assert bag_reader._is_complete(stream) is complete
    if complete:
        with open(path, 'rb') as stream:
            summary = make_reader(stream).get_summary()
        assert summary.statistics.message_count == len(got)
