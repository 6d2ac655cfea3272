"""The whole graph (real processes, real DDS, MuJoCo) on arms other than the default one.

- arm6, the second shipped arm, with its own shipped motor suite: a pick-and-place from an
  instruction, with the same assertions as the arm7 end-to-end test.
- a 5-joint arm generated here (:mod:`generated_arm`) that no code or config of the package
  names, with a motor expert trained in the test (a few steps: the graph must run, not
  succeed): every node starts for it, the plan is made, chunks flow for its joints and every
  command the executor sends is inside its limits.
"""
from generated_arm import write_arm
import numpy as np
import pytest
from ros_harness import graph_domain
from std_msgs.msg import Float64MultiArray
from test_graph_e2e import assert_feedback_in_order

from hybrid_vla_msgs.msg import ActionChunk
from hybrid_vla_ros.bringup.session import GraphSession
from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
from hybrid_vla_ros.nodes.qos import COMMAND
from hybrid_vla_ros.robot import load_robot


def _session(robot, out, overrides, domain):
    s = GraphSession(robot=robot, overrides=overrides, log_dir=str(out), on_event=lambda m: None,
                     domain_id=graph_domain(domain))
    s.start(timeout=240)
    s.commands = []
    s.node.create_subscription(Float64MultiArray, load_robot(robot).config.forward_command_topic,
                               lambda m: s.commands.append(np.array(m.data)), COMMAND)
    s.chunks = []
    s.node.create_subscription(ActionChunk, 'action_chunk', s.chunks.append, COMMAND)
    return s


def _assert_commands_safe(s, robot):
    cmds = np.array(s.commands)
    assert len(cmds) and cmds.shape[1] == robot.n_joints and np.all(np.isfinite(cmds))
    assert np.all(cmds >= robot.lower - 1e-9) and np.all(cmds <= robot.upper + 1e-9)


def test_arm6_pick_and_place_from_an_instruction(tmp_path):
    seed = EVAL_SEED_START + 29
    s = _session('arm6', tmp_path, {'sim_arm': {'task': 'pick_place', 'seed': seed}}, 30)
    try:
        instruction = s.reset('pick_place', seed)   # the scene's own sentence
        r = s.run_episode('pick_place', seed, instruction, timeout=90)
        executing = [f for f in s.feedback if f.state == 'executing']
        assert executing, r
        first = executing[0].plan
        assert len(first.subgoals) >= 5, r
        assert_feedback_in_order(s.feedback, r['outcome'])
        reached = max(f.active_index for f in executing
                      if f.plan.header.stamp == first.header.stamp)
        assert reached >= 3, (r, [(f.state, f.active_index) for f in s.feedback])
        _assert_commands_safe(s, load_robot('arm6'))
        js = s.latest['js']
        assert list(js.name)[:6] == list(load_robot('arm6').joint_names)
    finally:
        s.stop()


@pytest.fixture(scope='module')
def five(tmp_path_factory):
    """The generated arm and a flow expert trained on a few of its demonstrations."""
    from hybrid_vla_ros.cli import main
    d = tmp_path_factory.mktemp('five')
    yaml_path = write_arm(str(d))
    data, ckpt = d / 'data', d / 'motor'
    assert main(['collect', '--robot', yaml_path, '--task', 'pick_place', '--episodes', '2',
                 '--no-images', '--out', str(data)]) == 0
    assert main(['train', 'motor', '--robot', yaml_path, '--expert', 'flow', '--data',
                 str(data), '--out', str(ckpt / 'flow'), '--steps', '20', '--batch-size', '32',
                 '--d-model', '32', '--val-every', '20']) == 0
    return yaml_path, str(ckpt)


def test_a_generated_arm_runs_through_the_graph(five, tmp_path):
    yaml_path, ckpt = five
    robot = load_robot(yaml_path)
    seed = EVAL_SEED_START + 3
    s = _session(yaml_path, tmp_path, {
        'sim_arm': {'task': 'pick_place', 'seed': seed},
        'motor_policy': {'checkpoint_dir': ckpt, 'experts': ['flow'], 'default_expert': 'flow'},
        'expert_router': {'fixed_expert': 'flow'}}, 35)
    try:
        instruction = s.reset('pick_place', seed)
        assert s.execute(instruction), s.rejection
        s.wait(lambda: s.plan is not None and len(s.plan.subgoals) >= 5, 60, 'a plan')
        n0 = len(s.commands)
        s.wait(lambda: s.chunks, 30, 'an action chunk')
        chunk = s.chunks[-1]
        assert list(chunk.joint_names) == list(robot.joint_names)
        assert len(chunk.positions) == chunk.horizon * robot.n_joints
        s.spin(3.0)
        assert len(s.commands) - n0 > 100, 'the executor streams commands at its rate'
        _assert_commands_safe(s, robot)
        assert s.procs.failed() is None and not s.unresponsive()
    finally:
        s.stop()
