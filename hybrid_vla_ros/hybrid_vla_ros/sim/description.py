"""Locate the ``hybrid_vla_description`` package and expand its xacro to a URDF string."""
from __future__ import annotations

from functools import lru_cache
import os

PACKAGE = 'hybrid_vla_description'
DEFAULT_XACRO = os.path.join('urdf', 'arm7.urdf.xacro')
ENV_VAR = 'HYBRID_VLA_DESCRIPTION_DIR'


def _ament_share(package: str):
    """Return share/<package> from AMENT_PREFIX_PATH (no ament_index_python needed)."""
    try:  # a real ROS install
        from ament_index_python.packages import get_package_share_directory
        return get_package_share_directory(package)
    except Exception:
        pass
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if not prefix:
            continue
        marker = os.path.join(prefix, 'share', 'ament_index', 'resource_index', 'packages',
                              package)
        share = os.path.join(prefix, 'share', package)
        if os.path.exists(marker) and os.path.isdir(share):
            return share
    return None


def description_dir() -> str:
    """Description package dir: $HYBRID_VLA_DESCRIPTION_DIR, ament index, or the source tree."""
    env = os.environ.get(ENV_VAR)
    if env and os.path.isdir(env):
        return env
    share = _ament_share(PACKAGE)
    if share and os.path.exists(os.path.join(share, DEFAULT_XACRO)):
        return share
    here = os.path.dirname(os.path.abspath(__file__))
    # hybrid_vla_ros/hybrid_vla_ros/sim -> repo root
    src = os.path.normpath(os.path.join(here, '..', '..', '..', PACKAGE))
    if os.path.isdir(src):
        return src
    raise FileNotFoundError(
        f'cannot find {PACKAGE}: set {ENV_VAR}, source a workspace that installs it, '
        'or run from the source tree')


def xacro_path(name: str = DEFAULT_XACRO) -> str:
    return os.path.join(description_dir(), name)


def controllers_yaml_path() -> str:
    return os.path.join(description_dir(), 'config', 'arm7_controllers.yaml')


@lru_cache(maxsize=8)
def _expand(path: str, mappings: tuple) -> str:
    import xacro  # pip package `xacro`
    doc = xacro.process_file(path, mappings=dict(mappings))
    return doc.toprettyxml(indent='  ')


def urdf_string(xacro_file: str | None = None, **mappings) -> str:
    """Expand the arm xacro (``mappings`` are xacro args, e.g. hardware_plugin=...) to URDF XML."""
    path = xacro_file or xacro_path()
    return _expand(os.path.abspath(path), tuple(sorted((k, str(v)) for k, v in mappings.items())))


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
