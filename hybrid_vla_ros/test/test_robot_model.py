"""The robot model: any arm from a URDF + one YAML, and a clear error for every kind of bad robot.

A 5-joint arm generated here (:mod:`generated_arm`: renamed joints, links, frames and gripper,
the minimal ``/**``-only YAML) goes through the simulator and the scripted expert with no code
change; the shipped arms (arm7, arm6) load and agree with their URDFs.
"""
import os
import re

from generated_arm import write_arm
import numpy as np
import pytest

from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
from hybrid_vla_ros.robot import load_robot
from hybrid_vla_ros.robot_config import ConfigError, config_dir
from hybrid_vla_ros.sim.kinematics import DOWN_QUAT_XYZW
from hybrid_vla_ros.sim.workspace import REFERENCE, workspace_of


def _down(quat):
    return min(np.linalg.norm(quat - DOWN_QUAT_XYZW), np.linalg.norm(quat + DOWN_QUAT_XYZW))


@pytest.mark.parametrize('name', ['arm7', 'arm6'])
def test_shipped_robots_load_and_point_down_at_home(name):
    r = load_robot(name)
    assert 5 <= r.n_joints <= 7 and r.state_dim == r.n_joints + 1
    assert np.all(r.lower < r.home_q) and np.all(r.home_q < r.upper)
    assert np.all(r.velocity > 0) and r.gripper_velocity > 0
    assert r.gripper_closure(r.gripper_open) == 0.0 and r.gripper_closure(r.gripper_closed) == 1.0
    pos, quat = r.kinematics().fk(r.home_q)
    assert _down(quat) < 1e-3, 'the tool points down at home'
    assert 0.2 < pos[0] < 0.7 and pos[2] > 0.1
    assert os.path.samefile(os.path.dirname(r.config_file), config_dir())


def test_the_default_robot_keeps_the_reference_workspace():
    assert workspace_of(load_robot('arm7')) == REFERENCE


def test_state_from_joint_state_reorders_and_checks():
    r = load_robot('arm6')
    names = list(reversed(r.joint_names)) + [r.gripper_joint, 'other_device_joint']
    pos = list(reversed(r.home_q.tolist())) + [r.gripper_open, 9.0]
    np.testing.assert_allclose(r.state_from_joint_state(names, pos),
                               np.r_[r.home_q, 0.0])
    with pytest.raises(ValueError, match=r.gripper_joint):
        r.state_from_joint_state(list(r.joint_names), r.home_q.tolist())
    with pytest.raises(ValueError, match='NaN'):
        r.state_from_joint_state(names, [float('nan')] * len(names))


@pytest.fixture(scope='module')
def five(tmp_path_factory):
    return write_arm(str(tmp_path_factory.mktemp('five')))


def test_a_generated_five_joint_arm_runs_the_scripted_expert(five):
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.rollout import rollout
    r = load_robot(five)
    assert r.joint_names == ('pan', 'lift', 'elbow', 'pitch', 'roll')
    assert r.gripper_mimic == ('grip_b',) and r.tool_frame == 'tip'
    ws = workspace_of(r)
    assert ws.scale > 0.5
    sim = ArmSim(r)
    assert sim.state().shape == (6,)
    assert sim.joint_names == ('pan', 'lift', 'elbow', 'pitch', 'roll', 'grip_a', 'grip_b')
    for task in ('reach', 'pick_place', 'detour'):
        res = rollout(sim, task, EVAL_SEED_START + 11)
        assert res['success'], (task, res['error_mm'])
    # the scene sits in the arm's workspace
    objs = sim.reset('pick_place', EVAL_SEED_START + 3).objects.values()
    for o in objs:
        if o['pos'][1] > -0.4:   # not parked at the table edge
            assert ws.x_range[0] - 1e-9 <= o['pos'][0] <= ws.x_range[1] + 1e-9


# every class of mistake: (what to change, the key the error names, words of the message)
def _mutations():
    return [
        ('base_frame: column\n    tool_frame: tip', 'base_frame: fore\n    tool_frame: upper',
         'tool_frame', 'no kinematic chain'),
        ('tool_frame: tip', 'tool_frame: nowhere', 'tool_frame', 'not a link'),
        ('[pan, lift, elbow, pitch, roll]', '[pan, lift, elbow, pitch, wrist_9]', 'joint_names',
         "'wrist_9' is not a joint"),
        ('[pan, lift, elbow, pitch, roll]', '[pan, lift, elbow, pitch]', 'joint_names',
         '4 arm joints'),
        ('[pan, lift, elbow, pitch, roll]', '[pan, lift, elbow, pitch, roll, a, b, c]',
         'joint_names', '8 arm joints'),
        ('[pan, lift, elbow, pitch, roll]', '[pan, lift, elbow, roll, pitch, grip_a]',
         'joint_names', "['grip_a'] are not on the chain"),
        ('gripper_joint: grip_a', 'gripper_joint: tip_joint', 'gripper_joint', 'needs <limit'),
        ('gripper_joint: grip_a', 'gripper_joint: clamp', 'gripper_joint', 'not a joint'),
        ('base_frame: column', 'base_frame: upper', 'base_frame', "root link"),
        ('urdf: five.urdf', 'urdf: missing.urdf', 'urdf', 'no file'),
        ('robot: five\n', 'robot: five\n    home: [0.0, 0.1]\n', 'home', 'expected 5'),
        ('robot: five\n', 'robot: five\n    gripper_open: 0.5\n', 'gripper_open', 'outside'),
        ('robot: five\n', 'robot: five\n    camera_extrinsics: [1.0, 0.0]\n',
         'camera_extrinsics', '16 numbers'),
        ('    joint_names: [pan, lift, elbow, pitch, roll]\n', '', 'joint_names', 'missing'),
    ]


@pytest.mark.parametrize('old,new,key,words', _mutations(),
                         ids=[m[3].split()[0] + '-' + m[2] for m in _mutations()])
def test_a_bad_robot_is_a_clear_error_naming_file_and_key(tmp_path, old, new, key, words):
    path = write_arm(str(tmp_path))
    text = open(path).read()
    assert old in text
    open(path, 'w').write(text.replace(old, new))
    with pytest.raises(ConfigError) as e:
        load_robot(path)
    msg = str(e.value)
    assert path in msg and key in msg and re.search(re.escape(words), msg), msg


def test_a_chain_joint_left_out_is_named(tmp_path):
    """The URDF's chain moves a joint the YAML does not list (the tool frame's fixed joint made
    revolute: a 6-joint chain under a 5-joint list)."""
    path = write_arm(str(tmp_path))
    urdf = open(path.replace('.yaml', '.urdf')).read().replace(
        '<joint name="tip_joint" type="fixed">', '<joint name="tip_joint" type="revolute">'
        '<axis xyz="0 0 1"/><limit lower="-1" upper="1" velocity="1" effort="1"/>')
    open(path.replace('.yaml', '.urdf'), 'w').write(urdf)
    with pytest.raises(ConfigError, match="the chain also moves \\['tip_joint'\\]"):
        load_robot(path)


def test_bad_simulator_gains_are_named(tmp_path):
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    path = write_arm(str(tmp_path), extra_yaml='sim_arm:\n  ros__parameters:\n'
                     '    joint_kp: [1.0, 2.0]\n')
    with pytest.raises(ConfigError, match="sim_arm.joint_kp.*expected 5 numbers"):
        ArmSim(path)
