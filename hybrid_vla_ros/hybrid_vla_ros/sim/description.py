"""The description package for the simulator's users: the default robot's URDF, limits and home
pose (the lookup and the xacro expansion live in :mod:`hybrid_vla_ros.robot.description`)."""
from __future__ import annotations

import os

from ..robot.description import (  # noqa: F401 (re-exported)
    ENV_VAR,
    PACKAGE,
    description_dir,
    expand_xacro,
    xacro_path,
)


def controllers_yaml_path(robot=None) -> str:
    """The ros2_control controllers YAML of ``robot`` (default: the default robot):
    ``config/<robot>_controllers.yaml`` of the description package."""
    from ..robot import load_robot
    name = load_robot(robot).name if robot is not None else load_robot().name
    return os.path.join(description_dir(), 'config', f'{name}_controllers.yaml')


def urdf_string(xacro_file: str | None = None, **mappings) -> str:
    """Expand a xacro (default: the default robot's; ``mappings`` are xacro args, e.g.
    hardware_plugin=...) to URDF XML."""
    if xacro_file is None:
        from ..robot import load_robot
        xacro_file = load_robot().urdf_file
    return expand_xacro(xacro_file, **mappings)


def joint_limits(urdf: str | None = None) -> dict:
    """{joint name: {type, lower, upper, velocity, effort}} for the URDF's non-fixed joints."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(urdf or urdf_string())
    out = {}
    for j in root.findall('joint'):
        if j.get('type') == 'fixed':
            continue
        lim = j.find('limit')
        d = {'type': j.get('type')}
        for key in ('lower', 'upper', 'velocity', 'effort'):
            d[key] = float(lim.get(key)) if lim is not None and lim.get(key) is not None else None
        out[j.get('name')] = d
    return out


def home_pose(urdf: str | None = None) -> dict:
    """Initial values of the ros2_control position state interfaces (the home pose)."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(urdf or urdf_string())
    out = {}
    for rc in root.findall('ros2_control'):
        for j in rc.findall('joint'):
            for si in j.findall('state_interface'):
                if si.get('name') == 'position':
                    p = si.find('param')
                    if p is not None and p.get('name') == 'initial_value':
                        out[j.get('name')] = float(p.text)
    return out
