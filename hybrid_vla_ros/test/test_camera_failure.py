"""A failing camera is never silent: it logs, recovers when it can, else reports ERROR on
``/diagnostics`` and the node exits non-zero (so its launcher reports it)."""
import logging
import os
import subprocess
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ros_harness import RosProbe

from hybrid_vla_ros.nodes.camera_publisher import CameraWorker
from hybrid_vla_ros.sim.arm_sim import ArmSim


class _Context:
    def ok(self):
        return True


class _Host:
    """What the worker needs of its node: the sim, the reset counter and lock, a logger, a
    context and ``publish_images`` (here one that fails ``fail`` times, then records the
    frames)."""

    context = _Context()

    def __init__(self, fail):
        self.sim = ArmSim(camera_width=32, camera_height=32)
        self.publish_depth = False
        self.resets = 0
        self.reset_lock = threading.Lock()
        self.fail = fail
        self.published = []
        self.log = logging.getLogger('camera_test')

    def get_logger(self):
        return self.log

    def publish_images(self, rgb, depth, stamp, frame_id, then=()):
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError('publisher gone')
        self.published.append(rgb.shape)


def _offer_until(worker, host, done, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done():
        worker.offer(host.sim.data, None, 'camera')
        time.sleep(0.02)
    return done()


def test_a_failing_frame_is_logged_and_the_camera_recovers(caplog):
    host = _Host(fail=2)
    w = CameraWorker(host, 32, 32, max_failures=3, retry_s=0.05)
    w.start()
    try:
        with caplog.at_level(logging.ERROR, logger='camera_test'):
            assert _offer_until(w, host, lambda: len(host.published) >= 3)
        assert not w.failed and w.total_failures == 2 and w.failures == 0
        assert sum('camera frame failed' in r.message for r in caplog.records) == 2
        assert host.published[0] == (32, 32, 3)
    finally:
        w.stop()
    assert not w.is_alive()


def test_a_camera_that_keeps_failing_gives_up_and_says_why():
    host = _Host(fail=10 ** 6)
    w = CameraWorker(host, 32, 32, max_failures=3, retry_s=0.05)
    w.start()
    assert _offer_until(w, host, lambda: w.failed)
    w.join(5)
    assert not w.is_alive() and 'publisher gone' in w.error and w.total_failures == 3
    assert not w.offer(host.sim.data, None, 'camera')  # no frame is taken any more


def test_sim_arm_without_a_gl_context_reports_error_and_exits_nonzero(tmp_path):
    # MUJOCO_GL=glfw without a display: mujoco imports, but no renderer can be created
    env = dict(os.environ, MUJOCO_GL='glfw')
    env.pop('DISPLAY', None)
    log = tmp_path / 'sim.log'
    probe = RosProbe('camera_probe')
    statuses = []
    probe.node.create_subscription(DiagnosticArray, '/diagnostics',
                                   lambda m: statuses.extend(m.status), 10)
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, '-m', 'hybrid_vla_ros.nodes.sim_arm'],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        probe.wait_for(lambda: proc.poll() is not None, 60, 'sim_arm to exit')
        probe.spin_for(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        probe.close()
    text = log.read_text()
    assert proc.returncode not in (0, None), text
    assert 'camera failed (1 in a row), giving up: NoRendererError' in text, text
    assert 'camera worker ended' in text, text
    errors = [s for s in statuses if s.name.endswith(': camera')
              and s.level == DiagnosticStatus.ERROR]
    assert errors and 'MUJOCO_GL' in errors[-1].message
