"""`hybrid-vla view`: bags and datasets into rerun recordings, and the web viewer serving them.

(The browser check, headless Chromium on the served viewer, is bench/bench_viewer_web.py: it
waits ~30 s for the WebAssembly viewer to draw.)
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, JointState
from std_msgs.msg import String

from hybrid_vla_msgs.msg import ActionChunk, SubGoal, SubGoalList, Waypoint, WaypointArray
from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
from hybrid_vla_ros.data.dataset_writer import DatasetWriter
from hybrid_vla_ros.data.mcap_recorder import McapRecorder
from hybrid_vla_ros.image_bridge import cv2_to_imgmsg
from hybrid_vla_ros.viewer.view_command import rerun_binary

JOINTS = [f'joint_{i}' for i in range(1, 8)]


def _cli(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', *args],
                          capture_output=True, text=True, **kw)


def _stamp(msg, ns):
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(ns), 10**9)
    return msg


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('view') / 'run.mcap'
    t0 = 1_700_000_000 * 10**9
    with McapRecorder(str(path), handle_signals=False) as rec:
        rec.write('/instruction', String(data='put the red cube on the blue pad'), t0)
        plan = SubGoalList(instruction='put the red cube on the blue pad', active_index=0)
        plan.subgoals = [SubGoal(id=f'g{i}', skill=s, object='red cube', description=s)
                         for i, s in enumerate(('move_to', 'grasp'))]
        plan.subgoals[0].target_pose.position.x = 0.5
        rec.write('/subgoals', _stamp(plan, t0), t0)
        wps = WaypointArray(subgoal_id='g0', waypoints=[Waypoint() for _ in range(3)])
        for k, w in enumerate(wps.waypoints):
            w.pose.position.x, w.pose.position.z = 0.4 + 0.03 * k, 0.3
        rec.write('/waypoints', _stamp(wps, t0), t0)
        info = CameraInfo(width=64, height=48, k=[50.0, 0, 32, 0, 50.0, 24, 0, 0, 1])
        for k in range(20):
            t = t0 + k * 50_000_000
            js = JointState(name=JOINTS + ['finger_left_joint'],
                            position=[0.1 * k / 20] * 7 + [0.04])
            rec.write('/joint_states', _stamp(js, t), t)
            img = np.zeros((48, 64, 3), np.uint8)
            img[:, k:k + 8] = 255
            rec.write('/camera/image_raw', _stamp(cv2_to_imgmsg(img, 'rgb8'), t), t)
            rec.write('/camera/camera_info', _stamp(info, t), t)
            chunk = ActionChunk(expert='coarse_to_fine', joint_names=JOINTS, horizon=4,
                                step=Duration(nanosec=50_000_000), inference_ms=0.3)
            chunk.positions = [0.1] * 28
            chunk.gripper = [0.0] * 4
            chunk.coarse = [0.11] * 28
            rec.write('/action_chunk', _stamp(chunk, t), t)
            diag = DiagnosticArray(status=[DiagnosticStatus(name='motor_policy', values=[
                KeyValue(key='rate_hz', value='20.0'),
                KeyValue(key='inference_ms_p50', value='0.3')])])
            rec.write('/diagnostics', _stamp(diag, t), t)
    return path


def entity_paths(rrd):
    """Entity paths with data in a .rrd file (rerun's own ``rrd stats``)."""
    r = subprocess.run([rerun_binary(), 'rrd', 'stats', str(rrd)], capture_output=True,
                       text=True, env=dict(os.environ, XDG_CONFIG_HOME=str(rrd.parent)))
    assert r.returncode == 0, r.stderr
    return {line.split(':')[0].strip() for line in r.stdout.splitlines()
            if line.strip().startswith('/')}


def test_a_bag_becomes_a_recording_with_every_level(bag, tmp_path):
    rrd = tmp_path / 'run.rrd'
    r = _cli('view', str(bag), '--save', str(rrd))
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'messages from' in r.stdout and rrd.stat().st_size > 10_000
    paths = entity_paths(rrd)
    for p in ('/world/robot/links', '/world/robot/cylinders', '/world/robot/tcp',
              '/world/camera/image', '/world/plan/subgoals', '/world/plan/waypoints',
              '/world/motor/refined', '/world/motor/coarse', '/text/instruction', '/text/plan',
              '/plots/motor_policy/rate_hz', '/plots/motor_policy/chunk_inference_ms'):
        assert p in paths, (p, sorted(paths))


def test_a_dataset_becomes_a_recording_frame_by_frame(tmp_path):
    spec = load_dataset_spec('arm7')
    from hybrid_vla_ros.data.lerobot_format import vector_feature, video_feature
    feats = {'observation.state': vector_feature(spec.state_names),
             'action': vector_feature(spec.state_names),
             'observation.images.camera': video_feature(32, 32)}
    w = DatasetWriter(str(tmp_path / 'ds'), fps=20, robot_type='arm7', features=feats)
    q = np.zeros((10, 8), np.float32)
    q[:, 0] = np.linspace(0, 0.5, 10)
    w.add_episode({'observation.state': q, 'action': q,
                   'observation.images.camera': np.full((10, 32, 32, 3), 90, np.uint8)},
                  'reach the green target')
    rrd = tmp_path / 'ds.rrd'
    r = _cli('view', str(tmp_path / 'ds'), '--save', str(rrd))
    assert r.returncode == 0, r.stderr[-2000:]
    assert '10 dataset frames' in r.stdout
    paths = entity_paths(rrd)
    for p in ('/world/robot/links', '/world/camera/image', '/world/episode/tcp_path',
              '/plots/action/joint_1', '/plots/observation.state/gripper',
              '/text/instruction'):
        assert p in paths, (p, sorted(paths))
    r = _cli('view', str(tmp_path / 'ds'), '--save', str(rrd), '--episodes', '3')
    assert r.returncode == 2 and 'episodes 0..0' in r.stderr


def test_bad_sources_and_no_display_are_clear_errors(bag, tmp_path):
    r = _cli('view', str(tmp_path / 'nope.mcap'), '--save', str(tmp_path / 'x.rrd'))
    assert r.returncode == 2 and 'no such bag or dataset' in r.stderr
    (tmp_path / 'empty').mkdir()
    r = _cli('view', str(tmp_path / 'empty'), '--save', str(tmp_path / 'x.rrd'))
    assert r.returncode == 2 and 'not a dataset' in r.stderr
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY')}
    r = _cli('view', str(bag), env=env)
    assert r.returncode == 2 and 'no display' in r.stderr and '--web' in r.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_web_serves_the_viewer_on_localhost_until_ctrl_c(bag):
    web, grpc = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, '-m', 'hybrid_vla_ros.cli', 'view', str(bag),
                             '--web', '--web-port', str(web), '--grpc-port', str(grpc)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and page is None and proc.poll() is None:
            try:
                page = urllib.request.urlopen(f'http://127.0.0.1:{web}', timeout=2).read()
            except OSError:
                time.sleep(0.5)
        assert page is not None, proc.stderr.read() if proc.poll() is not None else 'timeout'
        assert b'Rerun' in page or b'rerun' in page
        # the recording is served to the viewer over gRPC on localhost
        with socket.create_connection(('127.0.0.1', grpc), timeout=5):
            pass
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert f'http://127.0.0.1:{web}' in out


def test_launch_view_streams_the_live_graph_into_a_recording(tmp_path):
    """`launch arm --view FILE.rrd`'s node, beside the sim: the arm and camera are recorded."""
    from hybrid_vla_ros.bringup.graph import arm_graph
    from hybrid_vla_ros.bringup.launch_command import viewer_spec
    from hybrid_vla_ros.bringup.process_launcher import GraphProcesses

    rrd = tmp_path / 'live.rrd'
    spec = viewer_spec(str(rrd), robot='arm7')
    assert spec.module == 'hybrid_vla_ros.viewer.live_viewer'
    assert viewer_spec('web', robot='arm7').arguments[-1] == '--web'
    with pytest.raises(SystemExit, match='--view'):
        viewer_spec('somewhere', robot='arm7')
    sim = [s for s in arm_graph(hardware='sim') if s.name == 'sim_arm']
    procs = GraphProcesses(sim + [spec], log=lambda m: None,
                           stdout=open(tmp_path / 'graph.log', 'w'),
                           stderr=subprocess.STDOUT).start()
    from ros_harness import RosProbe
    from sensor_msgs.msg import Image

    from hybrid_vla_ros.nodes.qos import SENSOR
    probe = RosProbe('view_probe')
    try:
        probe.subscribe(Image, 'camera/image_raw', SENSOR, key='image')
        probe.subscribe(JointState, '/joint_states', SENSOR, key='js')
        # the viewer is subscribed (it and this probe), then a few more frames reach it
        probe.wait_for(lambda: probe.node.count_subscribers('camera/image_raw') >= 2 and
                       probe.node.count_subscribers('/joint_states') >= 2, 60,
                       'the rerun_viewer node subscribing')
        seen = probe.counts.get('image', 0)
        probe.wait_for(lambda: probe.counts.get('image', 0) >= seen + 5, 30, 'camera frames')
    finally:
        probe.close()
        procs.stop()
    assert rrd.exists(), (tmp_path / 'graph.log').read_text()[-3000:]
    paths = entity_paths(rrd)
    for p in ('/world/robot/links', '/world/camera/image', '/world/objects'):
        assert p in paths, (p, sorted(paths), (tmp_path / 'graph.log').read_text()[-2000:])
