"""arm7 description: xacro expansion, joints/limits, ros2_control block, controllers, MuJoCo."""
import os
import sys
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from hybrid_vla_ros.sim.description import (  # noqa: E402
    controllers_yaml_path,
    description_dir,
    home_pose,
    joint_limits,
    urdf_string,
)

ARM = [f'joint_{i}' for i in range(1, 8)]


@pytest.fixture(scope='module')
def urdf():
    return urdf_string()


@pytest.fixture(scope='module')
def root(urdf):
    return ET.fromstring(urdf)


def test_xacro_expands(urdf, root):
    assert root.tag == 'robot' and root.get('name') == 'arm7'
    assert 'xacro:' not in urdf


def test_exactly_seven_revolute_arm_joints_with_limits(root):
    joints = {j.get('name'): j for j in root.findall('joint')}
    revolute = [n for n, j in joints.items() if j.get('type') == 'revolute']
    assert revolute == ARM
    for n in ARM:
        lim = joints[n].find('limit')
        lo, hi = float(lim.get('lower')), float(lim.get('upper'))
        assert lo < 0 < hi
        assert float(lim.get('velocity')) > 0 and float(lim.get('effort')) > 0


def test_gripper_and_frames(root):
    joints = {j.get('name'): j for j in root.findall('joint')}
    for f in ('finger_left_joint', 'finger_right_joint'):
        assert joints[f].get('type') == 'prismatic'
        assert float(joints[f].find('limit').get('upper')) > 0
    assert joints['finger_right_joint'].find('mimic').get('joint') == 'finger_left_joint'
    assert joints['finger_left_joint'].find('mimic') is None
    links = {link.get('name') for link in root.findall('link')}
    assert {'base_link', 'tool0', 'hand', 'finger_left', 'finger_right'} <= links
    children = {j.find('child').get('link') for j in root.findall('joint')}
    assert [n for n in links if n not in children] == ['base_link']  # single root
    movable = [n for n, j in joints.items() if j.get('type') != 'fixed']
    assert movable == ARM + ['finger_left_joint', 'finger_right_joint']


def test_links_have_mass_and_collision_primitives(root):
    for link in root.findall('link'):
        if link.get('name') == 'tool0':
            continue
        inertial = link.find('inertial')
        assert float(inertial.find('mass').get('value')) > 0
        i = inertial.find('inertia')
        assert all(float(i.get(k)) > 0 for k in ('ixx', 'iyy', 'izz'))
        cols = link.findall('collision')
        assert cols, link.get('name')
        for c in cols:
            assert c.find('geometry')[0].tag in ('box', 'cylinder', 'sphere')
        assert link.findall('visual')


def test_ros2_control_block(root):
    rc = root.find('ros2_control')
    assert rc.find('hardware/plugin').text == 'mock_components/GenericSystem'
    joints = {j.get('name'): j for j in rc.findall('joint')}
    home = home_pose()
    for n in ARM + ['finger_left_joint']:
        assert [c.get('name') for c in joints[n].findall('command_interface')] == ['position']
        assert [s.get('name') for s in joints[n].findall('state_interface')] == \
            ['position', 'velocity']
        assert n in home
    lim = joint_limits()
    assert all(lim[n]['lower'] <= home[n] <= lim[n]['upper'] for n in ARM)


def test_mimic_finger_is_state_only_and_follows_the_urdf_mimic(root):
    """ros2_control (Jazzy+) reads mimic joints from the URDF's <mimic>; mock_components then
    sets the mimicking joint's state from the mimicked one. It has no command interface (the
    gripper controller commands finger_left_joint only)."""
    rc = root.find('ros2_control')
    assert rc.find("hardware/param[@name='calculate_dynamics']").text == 'false'
    right = next(j for j in rc.findall('joint') if j.get('name') == 'finger_right_joint')
    assert right.get('mimic') == 'true' and not right.findall('command_interface')
    assert [s.get('name') for s in right.findall('state_interface')] == ['position', 'velocity']
    mimic = next(j for j in root.findall('joint')
                 if j.get('name') == 'finger_right_joint').find('mimic')
    assert mimic.get('joint') == 'finger_left_joint' and float(mimic.get('multiplier')) == 1.0


def test_hardware_plugin_is_a_xacro_arg():
    root = ET.fromstring(urdf_string(hardware_plugin='my_robot_driver/MyArmSystem'))
    assert root.find('ros2_control/hardware/plugin').text == 'my_robot_driver/MyArmSystem'


def test_controllers_yaml_names_exactly_the_arm_joints():
    import yaml
    cfg = yaml.safe_load(open(controllers_yaml_path()))
    cm = cfg['controller_manager']['ros__parameters']
    assert cm['update_rate'] == 100
    assert cm['joint_state_broadcaster']['type'] == 'joint_state_broadcaster/JointStateBroadcaster'
    assert cm['joint_trajectory_controller']['type'] == \
        'joint_trajectory_controller/JointTrajectoryController'
    assert cm['forward_position_controller']['type'] == \
        'forward_command_controller/ForwardCommandController'
    assert cfg['joint_trajectory_controller']['ros__parameters']['joints'] == ARM
    fwd = cfg['forward_position_controller']['ros__parameters']
    assert fwd['joints'] == ARM and fwd['interface_name'] == 'position'
    assert cfg['gripper_controller']['ros__parameters']['joints'] == ['finger_left_joint']


def test_rviz_config():
    import yaml
    cfg = yaml.safe_load(open(os.path.join(description_dir(), 'rviz', 'arm7.rviz')))
    vm = cfg['Visualization Manager']
    assert vm['Global Options']['Fixed Frame'] == 'base_link'
    by_class = {d['Class']: d for d in vm['Displays']}
    assert by_class['rviz_default_plugins/RobotModel']['Description Topic']['Value'] == \
        'robot_description'
    assert by_class['rviz_default_plugins/MarkerArray']['Topic']['Value'] == 'markers'
    assert by_class['rviz_default_plugins/Image']['Topic']['Value'] == 'camera/image_raw'
    assert by_class['rviz_default_plugins/Path']['Topic']['Value'] == 'predicted_path'


def test_package_files():
    d = description_dir()
    for f in ('package.xml', 'CMakeLists.txt'):
        assert os.path.exists(os.path.join(d, f)) or 'share' in d
    if os.path.exists(os.path.join(d, 'CMakeLists.txt')):
        cm = open(os.path.join(d, 'CMakeLists.txt')).read()
        assert 'urdf' in cm and 'config' in cm and 'rviz' in cm


def test_mujoco_compiles_the_urdf(urdf):
    mujoco = pytest.importorskip('mujoco')
    spec = mujoco.MjSpec.from_string(urdf)
    spec.compiler.fusestatic = False
    m = spec.compile()
    names = [m.joint(i).name for i in range(m.njnt)]
    assert names == ARM + ['finger_left_joint', 'finger_right_joint']
    assert m.neq == 1  # the mimic joint became an equality constraint
    assert m.ngeom >= 16  # every collision primitive kept
    assert m.body('tool0').id > 0
