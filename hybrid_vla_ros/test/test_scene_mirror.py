"""SceneMirror (no ROS): the mirrored arm is exactly the joint state given; garbage is refused."""
import os

import numpy as np
import pytest

os.environ.setdefault('MUJOCO_GL', 'egl')
pytest.importorskip('mujoco')

from hybrid_vla_ros.robot import load_robot  # noqa: E402
from hybrid_vla_ros.sim.arm_sim import ArmSim  # noqa: E402
from hybrid_vla_ros.sim.scene_mirror import JointStateError, SceneMirror  # noqa: E402

ROBOT = load_robot()
ARM_JOINTS = ROBOT.joint_names
FINGER_OPEN = ROBOT.gripper_open
NAMES = list(ARM_JOINTS) + list(ROBOT.gripper_joints)


@pytest.fixture(scope='module')
def sim():
    s = ArmSim(camera_width=64, camera_height=48)
    yield s
    s.close()


@pytest.fixture
def mirror(sim):
    m = SceneMirror(sim)
    m.reset('pick_place', 3)
    return m


@pytest.fixture(scope='module')
def kin():
    """The planners' kinematics (nodes.conversions.robot_kinematics builds the same)."""
    return ROBOT.kinematics()


def random_q(rng, sim):
    return rng.uniform(sim.lower * 0.9, sim.upper * 0.9)


def test_tool_pose_of_the_mirror_is_the_fk_of_the_joint_state(sim, mirror, kin):
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = random_q(rng, sim)
        finger = rng.uniform(0.0, FINGER_OPEN)
        order = rng.permutation(len(NAMES))  # any name order, like any JointState
        values = np.concatenate([q, [finger, finger]])
        mirror.update([NAMES[i] for i in order], values[order], stamp=('t', _))
        assert mirror.apply()
        pos, quat = sim.tool_pose()
        pos_fk, quat_fk = kin.fk(q)
        assert np.allclose(pos, pos_fk, atol=1e-9)
        assert min(np.abs(quat - quat_fk).max(), np.abs(quat + quat_fk).max()) < 1e-9
        assert np.allclose(sim.joint_positions(), q)
        assert np.allclose(sim.finger_positions(), [finger, finger])
        assert mirror.stamp == ('t', _)


def test_mimic_finger_follows_when_omitted(sim, mirror):
    names = list(ARM_JOINTS) + [ROBOT.gripper_joint]
    mirror.update(names, list(sim.home_q) + [0.013])
    mirror.apply()
    assert np.allclose(sim.finger_positions(), [0.013, 0.013])
    assert abs(sim.gripper_state() - (1 - 0.013 / FINGER_OPEN)) < 1e-9


def test_objects_stay_at_their_reset_poses(sim, mirror):
    before = {k: v['pos'].copy() for k, v in sim.object_poses().items()}
    rng = np.random.default_rng(1)
    for _ in range(10):  # sweeping the arm through the scene never moves an object
        mirror.update(NAMES, np.concatenate([random_q(rng, sim), [0.0, 0.0]]))
        mirror.apply()
    after = sim.object_poses()
    for k, p in before.items():
        assert np.allclose(after[k]['pos'], p), k
    assert sim.time == 0.0, 'the mirror never steps physics'


def test_reset_changes_the_scene_and_keeps_the_arm(sim, mirror):
    q = np.array([0.3, -0.2, 0.1, -1.9, 0.05, 1.8, 0.4])
    mirror.update(NAMES, np.concatenate([q, [0.02, 0.02]]))
    mirror.apply()
    objects = {k: v['pos'].copy() for k, v in sim.object_poses().items()}
    ep = mirror.reset('pick_place', 4)
    assert ep.seed == 4
    assert np.allclose(sim.joint_positions(), q), 'not the episode start pose'
    moved = [k for k, v in sim.object_poses().items() if k in objects and
             not np.allclose(v['pos'], objects[k])]
    assert moved, 'another seed places the objects elsewhere'


def test_camera_renders_the_mirrored_arm(sim, mirror):
    mirror.update(NAMES, np.concatenate([sim.home_q, [0.04, 0.04]]))
    mirror.apply()
    a = sim.render()
    q = sim.home_q.copy()
    q[0] += 0.8  # swing the arm sideways
    mirror.update(NAMES, np.concatenate([q, [0.04, 0.04]]))
    mirror.apply()
    b = sim.render()
    assert a.shape == (48, 64, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() > 50


@pytest.mark.parametrize('names, positions, why', [
    (NAMES, [0.0] * 8, '9 names but 8 positions'),
    (NAMES, [float('nan')] + [0.0] * 8, 'NaN/Inf'),
    (NAMES, [0.0] * 8 + [float('inf')], 'NaN/Inf'),
    (NAMES + ['wrist_camera_joint'], [0.0] * 10, "unknown joints ['wrist_camera_joint']"),
    (NAMES[1:], [0.0] * 8, "missing joints ['joint_1']"),
    (list(ARM_JOINTS), [0.0] * len(ARM_JOINTS), f"missing joints ['{ROBOT.gripper_joint}']"),
    (NAMES + ['joint_1'], [0.0] * 10, "duplicate joint names ['joint_1']"),
    ([], [], 'missing joints'),
    (NAMES, [0.0, 50.0] + [0.0] * 7, 'joint_2=50'),
    (NAMES, [0.0] * 7 + [3.0, 0.0], 'finger_left_joint=3'),
])
def test_invalid_joint_states_are_refused_and_the_last_good_one_kept(sim, mirror, names,
                                                                     positions, why):
    good = np.concatenate([sim.home_q + 0.1, [0.01, 0.01]])
    mirror.update(NAMES, good, stamp='good')
    seq, rejected = mirror.seq, mirror.rejected
    with pytest.raises(JointStateError) as e:
        mirror.update(names, positions, stamp='bad')
    assert why in str(e.value)
    assert mirror.seq == seq and mirror.rejected == rejected + 1
    assert mirror.last_error == str(e.value)
    assert mirror.stamp == 'good'
    mirror.apply()
    assert np.allclose(sim.joint_positions(), good[:7])


def test_extra_joints_are_ignored_when_listed_and_limits_can_be_off(sim):
    m = SceneMirror(sim, extra_joints=['turntable_joint'], limit_tolerance=-1)
    q = m.update(NAMES + ['turntable_joint'], [0.0] * 7 + [0.01, 0.01, float('nan')])
    assert q.shape == (9,)
    m.update(NAMES, [0.0, 50.0] + [0.0] * 7)  # no limit check


def test_no_state_no_pose_and_bad_configuration(sim):
    m = SceneMirror(sim)
    assert not m.has_state and not m.apply() and m.arm_positions() is None
    with pytest.raises(ValueError, match='not in the mirrored model'):
        SceneMirror(sim, joint_names=['shoulder_pan_joint'])
    with pytest.raises(JointStateError, match='not numbers'):
        m.update(NAMES, ['a'] * 9)
