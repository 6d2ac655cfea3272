"""Ctrl-C stops every node cleanly: exit code 0, worker threads stopped, nothing left running.

A terminal's Ctrl-C sends SIGINT to the whole process group, and the launcher (``ros2 launch``
or ``hybrid-vla launch``) forwards one more to each child, so every node gets at least two; the
tests below send the group one, then keep signalling the process itself until it has exited.
"""
import os
import signal
import subprocess
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
import pytest
from ros_harness import RosProbe
from std_msgs.msg import String

from hybrid_vla_ros.bringup.graph import SCENE_CAMERA, STACK_NODES, arm_graph
from hybrid_vla_ros.bringup.process_launcher import node_command
from hybrid_vla_ros.nodes.qos import COMMAND

HERE = os.path.dirname(os.path.abspath(__file__))
# every node: its /diagnostics status (spinning), or for the router its `expert` publisher
SPINNING = {'sim_arm': 'sim_arm', 'strategic_planner': 'strategic_planner',
            'tactical_planner': 'tactical_planner', 'motor_policy': 'motor_policy',
            'chunk_executor': 'chunk_executor', SCENE_CAMERA: SCENE_CAMERA}


def ctrl_c(proc, timeout=60.0):
    """SIGINT to the process group, then SIGINT to the process every 50 ms until it exits (the
    later ones land during its shutdown). Returns the exit code (None: it did not exit)."""
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGINT)
    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        try:
            os.kill(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    try:
        return proc.wait(max(0.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None


def group_is_gone(pgid) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _group_members(pgid) -> set:
    """pids of the living processes in process group ``pgid``."""
    out = set()
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open(f'/proc/{d}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != 'Z':
                out.add(int(d))
    return out


def kill_group(proc):
    try:
        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def test_a_second_sigint_during_shutdown_does_not_abort_it():
    """The probe node signals itself once while spinning and twice inside destroy_node."""
    r = subprocess.Popen([sys.executable, 'shutdown_probe_node.py'], cwd=HERE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = r.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        r.kill()
        out, _ = r.communicate()
        pytest.fail(f'the node hung in its shutdown:\n{out}')
    assert r.returncode == 0, out
    assert 'worker stopped' in out and 'destroyed' in out, out
    assert 'Traceback' not in out, out


def test_sigterm_is_a_clean_stop_too():
    """What a launcher sends when SIGINT did not stop a node in time."""
    r = subprocess.Popen([sys.executable, 'shutdown_probe_node.py', 'quiet'], cwd=HERE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert r.stdout.readline().strip() == 'spinning'
        r.send_signal(signal.SIGTERM)
        out, _ = r.communicate(timeout=60)
    finally:
        if r.poll() is None:
            r.kill()
            r.wait()
    assert r.returncode == 0 and 'destroyed' in out and 'Traceback' not in out, out


def _statuses(probe):
    seen = set()
    probe.node.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda m: seen.update(s.name.split(':')[0] for s in m.status), 50)
    return seen


def test_every_node_executable_exits_0_on_a_double_ctrl_c(tmp_path):
    specs = [s for s in arm_graph(hardware='sim') if s.name in ('sim_arm', *STACK_NODES)]
    specs += [s for s in arm_graph(hardware='mock', namespace='mirror') if s.name == SCENE_CAMERA]
    procs, logs = {}, {}
    probe = RosProbe('shutdown_test_probe')
    seen = _statuses(probe)
    instruction = probe.node.create_publisher(String, 'instruction', COMMAND)
    try:
        for s in specs:
            logs[s.name] = tmp_path / f'{s.name}.log'
            procs[s.name] = subprocess.Popen(node_command(s), start_new_session=True,
                                             stdout=open(logs[s.name], 'w'),
                                             stderr=subprocess.STDOUT)
        probe.wait_for(lambda: set(SPINNING) <= seen and
                       probe.node.count_publishers('expert') > 0, 240,
                       'every node spinning')
        # the strategic planner has a plan to make (its worker thread is busy) when it stops
        instruction.publish(String(data='put the red cube on the blue pad'))
        probe.spin_for(0.2)
        pgids = {n: os.getpgid(p.pid) for n, p in procs.items()}
        codes = {n: ctrl_c(p) for n, p in procs.items()}
        out = {n: f.read_text() for n, f in logs.items()}
        assert codes == {n: 0 for n in procs}, {n: out[n][-2000:] for n in procs
                                                if codes[n] != 0}
        for n, text in out.items():
            assert 'Traceback' not in text, f'{n}:\n{text[-3000:]}'
        assert all(group_is_gone(g) for g in pgids.values())
    finally:
        for p in procs.values():
            if p.poll() is None:
                kill_group(p)
        probe.close()


def test_hybrid_vla_launch_arm_exits_0_on_a_double_ctrl_c(tmp_path):
    log = tmp_path / 'launch.log'
    proc = subprocess.Popen([sys.executable, '-m', 'hybrid_vla_ros.cli', 'launch', 'arm'],
                            start_new_session=True, stdout=open(log, 'w'),
                            stderr=subprocess.STDOUT)
    probe = RosProbe('launch_shutdown_probe')
    seen = _statuses(probe)
    try:
        # start-up by state: the launcher reports the ~/ready statuses of motor and executor
        probe.wait_for(lambda: '[launch] graph ready (motor_policy, chunk_executor)' in
                       log.read_text(), 240, 'the launcher saying the graph is ready')
        # ... and every node is spinning (a signal before a node has imported its modules
        # is Python's default KeyboardInterrupt, not the node's clean stop)
        probe.wait_for(lambda: set(SPINNING) - {SCENE_CAMERA} <= seen and
                       probe.node.count_publishers('expert') > 0, 120, 'every node spinning')
        pgid = os.getpgid(proc.pid)
        code = ctrl_c(proc)
        out = log.read_text()
        assert code == 0, out[-4000:]
        for name in ('sim_arm', *STACK_NODES):
            assert f'[launch] {name} exited with code 0' in out, out[-4000:]
        assert 'Traceback' not in out, out[-4000:]
        assert group_is_gone(pgid), 'a process of the launch is still running'
    finally:
        if proc.poll() is None:
            kill_group(proc)
        probe.close()


def test_sigterm_to_a_ros_evaluation_stops_its_graph(tmp_path):
    """`hybrid-vla eval --ros` killed with SIGTERM (kill, a CI timeout) mid-episode stops the
    graph it launched instead of leaving six nodes running."""
    log = tmp_path / 'eval.log'
    proc = subprocess.Popen([sys.executable, '-m', 'hybrid_vla_ros.cli', 'eval', '--ros',
                             '--task', 'reach', '--episodes', '20'],
                            start_new_session=True, stdout=open(log, 'w'),
                            stderr=subprocess.STDOUT)
    pgid = os.getpgid(proc.pid)
    try:
        end = time.monotonic() + 300
        while 'reach (seed' not in log.read_text():   # the graph is up: an episode runs
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < end, log.read_text()[-4000:]
            time.sleep(0.2)
        nodes = _group_members(pgid) - {proc.pid}   # the graph's processes (its group)
        assert len(nodes) >= 6, (nodes, log.read_text()[-4000:])
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
        assert code != 0   # interrupted: not a finished evaluation
        assert group_is_gone(pgid), f'still running: {_group_members(pgid)}'
    finally:
        if proc.poll() is None:
            kill_group(proc)
