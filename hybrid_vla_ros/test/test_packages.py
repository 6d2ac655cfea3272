"""The three packages are well-formed ROS 2 packages and install what they must."""
import os
import subprocess
import sys

from catkin_pkg.package import parse_package
import pytest

from hybrid_vla_ros.robot_config import ConfigError, load_parameters, load_robot_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
PACKAGES = {
    'hybrid_vla_msgs': 'ament_cmake',
    'hybrid_vla_description': 'ament_cmake',
    'hybrid_vla_ros': 'ament_python',
}


@pytest.mark.parametrize('name,build_type', sorted(PACKAGES.items()))
def test_package_xml_validates(name, build_type):
    pkg = parse_package(os.path.join(REPO, name, 'package.xml'))
    pkg.validate()  # raises InvalidPackage on any schema/semantic error
    assert pkg.name == name
    assert pkg.package_format == 3
    assert [e.content for e in pkg.exports if e.tagname == 'build_type'] == [build_type]


def test_msgs_package_generates_every_interface():
    pkg = parse_package(os.path.join(REPO, 'hybrid_vla_msgs', 'package.xml'))
    assert 'rosidl_interface_packages' in [g.name for g in pkg.member_of_groups]
    cmake = open(os.path.join(REPO, 'hybrid_vla_msgs', 'CMakeLists.txt')).read()
    msgs = sorted(os.listdir(os.path.join(REPO, 'hybrid_vla_msgs', 'msg')))
    assert '"srv/SetTask.srv"' in cmake
    assert msgs == ['ActionChunk.msg', 'ExpertSelection.msg', 'SubGoal.msg', 'SubGoalList.msg',
                    'Waypoint.msg', 'WaypointArray.msg']
    for m in msgs:
        assert f'"msg/{m}"' in cmake


def _share():
    from ament_index_python.packages import get_package_share_directory
    return get_package_share_directory('hybrid_vla_ros')


def test_setup_py_installs_launch_and_config_into_share():
    share = _share()
    for sub in ('launch', 'config'):
        src = sorted(f for f in os.listdir(os.path.join(REPO, 'hybrid_vla_ros', sub))
                     if f.endswith(('.py', '.yaml')))
        assert src, f'no files in {sub}/'
        installed = sorted(os.listdir(os.path.join(share, sub)))
        assert src == installed, f'{sub}/ not installed into {share}'
    assert os.path.isfile(os.path.join(share, 'package.xml'))


def test_setup_cfg_puts_executables_under_lib_package():
    prefix = os.path.dirname(os.path.dirname(_share()))
    assert os.path.isfile(os.path.join(prefix, 'lib', 'hybrid_vla_ros', 'hybrid-vla'))


def test_every_robot_config_loads():
    cfg_dir = os.path.join(REPO, 'hybrid_vla_ros', 'config')
    robots = [f[:-5] for f in os.listdir(cfg_dir) if f.endswith('.yaml')
              and '/**' in load_parameters(os.path.join(cfg_dir, f))]
    assert 'arm7' in robots
    for robot in robots:
        cfg = load_robot_config(os.path.join(cfg_dir, robot + '.yaml'))
        assert cfg.n_joints >= 6


def test_bad_robot_config_names_key_and_value(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text("/**:\n  ros__parameters:\n    robot: x\n    urdf: x.xacro\n"
                   "    joint_names: [a, a]\n    gripper_joint: g\n")
    with pytest.raises(ConfigError, match="joint_names.*duplicates"):
        load_robot_config(str(bad))
    bad.write_text("/**:\n  ros__parameters:\n    robot: x\n    joint_names: [a]\n")
    with pytest.raises(ConfigError, match="'/\\*\\*.urdf' is missing"):
        load_robot_config(str(bad))
    with pytest.raises(ConfigError, match='no file'):
        load_robot_config('no_such_robot')


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', '--help'],
                         capture_output=True, text=True, check=True).stdout
    assert 'demo' in out
