"""The graph's bag recorder (``bag_recorder``) killed with SIGKILL mid-recording: everything up
to one flush period (1 s) before the kill reads back with the ``mcap`` library's own reader,
including messages of a topic that went quiet before the kill."""
import os
import signal
import subprocess
import sys
import time

from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader
from mcap_ros2.decoder import DecoderFactory
import pytest
from ros_harness import RosProbe
from std_msgs.msg import String

from hybrid_vla_ros.nodes.qos import COMMAND


def read_until_truncation(path):
    """Messages of a file without summary/footer (killed writer), in order, up to the first
    incomplete record, decoded by mcap_ros2."""
    out = []
    with open(path, 'rb') as f:
        reader = NonSeekingReader(f, decoder_factories=[DecoderFactory()])
        try:
            for _, channel, _, msg in reader.iter_decoded_messages(log_time_order=False):
                out.append((channel.topic, msg.data))
        except (McapError, EOFError, ValueError, AssertionError):
            pass  # the tail the kill cut off
    return out


@pytest.mark.parametrize('quiet_s', [0.0, 1.5], ids=['steady', 'quiet_before_kill'])
def test_sigkilled_recording_keeps_everything_but_the_last_second(tmp_path, quiet_s):
    path = str(tmp_path / 'run.mcap')
    log = open(tmp_path / 'recorder.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'hybrid_vla_ros.nodes.topic_recorder', path,
                             '/counter:std_msgs/msg/String', '--flush-period', '1.0'],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    probe = RosProbe('kill_probe')
    sent = []  # (monotonic time, text)
    try:
        pub = probe.node.create_publisher(String, '/counter', COMMAND)
        probe.wait_for(lambda: pub.get_subscription_count() > 0, 60, 'recorder subscribed')
        probe.spin_for(0.5)
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            text = str(len(sent))
            pub.publish(String(data=text))
            sent.append((time.monotonic(), text))
            probe.spin_for(0.01)
        probe.spin_for(quiet_s)  # a quiet topic: its last chunk must reach the disk anyway
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        probe.close()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    got = read_until_truncation(path)
    texts = [t for _, t in got]
    assert all(topic == '/counter' for topic, _ in got)
    assert texts == [t for _, t in sent[:len(texts)]], 'in order, none lost or invented'
    must = [t for at, t in sent if at < killed_at - 1.0]
    assert len(must) > 50 and len(texts) >= len(must), (
        f'{len(texts)} messages read back, but {len(must)} were published more than 1 s '
        'before the kill')
