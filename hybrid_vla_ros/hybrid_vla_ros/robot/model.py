"""One robot model: a URDF (or xacro) + the ``/**`` section of one robot YAML.

Everything robot-specific that the shared code needs is read here, once, and validated at
start-up with an error that names the file and key (:class:`ConfigError`)::

    robot = load_robot('arm7')                  # config/arm7.yaml
    robot = load_robot('/path/to/my_arm.yaml')  # a robot YAML anywhere
    robot.joint_names, robot.lower, robot.velocity, robot.home_q, robot.gripper_range
    kin = robot.kinematics()                    # FK / Jacobian / IK of base_frame -> tool_frame

The minimal YAML is the ``/**`` section with ``robot``, ``urdf`` (a file in
``hybrid_vla_description/urdf/``, or a path relative to the YAML, or absolute), ``joint_names``,
``gripper_joint``, ``base_frame`` and ``tool_frame``. Optional ``/**`` keys: ``home`` (arm joint
positions; default: the ``initial_value`` s of the URDF's ``<ros2_control>`` block, else the
middle of each range), ``gripper_open`` / ``gripper_closed`` (gripper joint positions; default:
the upper / lower URDF limit), ``camera_extrinsics`` (the scene camera's optical frame in the
base frame, row-major 4x4; default: a camera in front of the workspace looking at its centre),
the controller topics (:class:`~hybrid_vla_ros.robot_config.RobotConfig`).

Conventions the shared code relies on (those of ROS-Industrial's ``tool0``): the tool frame's
z axis points out of the gripper, the fingers open along its y axis, and the base frame is the
mounting plane (the table top, z = 0).

The state/action layout of every level is the arm joints in YAML order, then the gripper as a
closure fraction in [0, 1] (0 open, 1 closed): ``n_joints + 1`` values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
import math
import os
from typing import Dict, Optional, Sequence, Tuple
import xml.etree.ElementTree as ET

import numpy as np

from hybrid_vla_ros.robot_config import (
    ConfigError,
    RobotConfig,
    config_path,
    load_parameters,
    robot_config_from_parameters,
)

DEFAULT_ROBOT = 'arm7'
MIN_JOINTS, MAX_JOINTS = 5, 7


@dataclass(frozen=True, eq=False)
class RobotModel:
    """A validated robot: its config, URDF limits and frames (see the module docstring)."""

    config: RobotConfig
    config_file: str
    urdf_file: str
    urdf: str = field(repr=False)
    parameters: Dict[str, Dict] = field(repr=False)
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    home_q: np.ndarray
    gripper_open: float
    gripper_closed: float
    gripper_velocity: float
    gripper_mimic: Tuple[str, ...]
    chain_links: Tuple[str, ...]     # base_frame .. tool_frame
    gripper_links: Tuple[str, ...]   # links moved by the gripper joint and its mimics
    camera_extrinsics: Optional[np.ndarray]

    # ---------------------------------------------------------------- names
    @property
    def name(self) -> str:
        return self.config.robot

    @property
    def joint_names(self) -> Tuple[str, ...]:
        return self.config.joint_names

    @property
    def n_joints(self) -> int:
        return len(self.config.joint_names)

    @property
    def state_dim(self) -> int:
        """Arm joints + the gripper closure."""
        return self.n_joints + 1

    action_dim = state_dim

    @property
    def gripper_joint(self) -> str:
        return self.config.gripper_joint

    @property
    def base_frame(self) -> str:
        return self.config.base_frame

    @property
    def tool_frame(self) -> str:
        return self.config.tool_frame

    @property
    def gripper_joints(self) -> Tuple[str, ...]:
        """The gripper joint, then its mimic joints (the joints a sim moves)."""
        return (self.gripper_joint,) + self.gripper_mimic

    @property
    def gripper_range(self) -> Tuple[float, float]:
        """(lower, upper) of the gripper joint's commands."""
        return (min(self.gripper_open, self.gripper_closed),
                max(self.gripper_open, self.gripper_closed))

    def section(self, node: str) -> Dict:
        """The YAML's parameters for ``node`` (empty if it has no section)."""
        return dict(self.parameters.get(node, {}))

    # ---------------------------------------------------------------- gripper units
    def gripper_position(self, closure: float) -> float:
        """Gripper joint position for a closure fraction (0 open .. 1 closed)."""
        c = min(max(float(closure), 0.0), 1.0)
        return self.gripper_open + c * (self.gripper_closed - self.gripper_open)

    def gripper_closure(self, position: float) -> float:
        """Closure fraction in [0, 1] of a gripper joint position."""
        span = self.gripper_closed - self.gripper_open
        return min(max((float(position) - self.gripper_open) / span, 0.0), 1.0)

    # ---------------------------------------------------------------- adapters
    def state_from_joint_state(self, names: Sequence[str], positions: Sequence[float]):
        """The (n_joints + 1,) policy state from a JointState's names/positions.

        Raises ValueError naming what is wrong (a joint missing, sizes that differ, NaN/Inf).
        """
        names, positions = list(names), list(positions)
        if len(names) != len(positions):
            raise ValueError(f'{len(names)} names but {len(positions)} positions')
        index = {n: i for i, n in enumerate(names)}
        missing = [j for j in self.joint_names + (self.gripper_joint,) if j not in index]
        if missing:
            raise ValueError(f'joint state lacks {missing}')
        q = np.array([positions[index[j]] for j in self.joint_names], dtype=float)
        g = float(positions[index[self.gripper_joint]])
        if not (np.all(np.isfinite(q)) and math.isfinite(g)):
            raise ValueError('joint state has NaN/Inf positions')
        return np.concatenate([q, [self.gripper_closure(g)]])

    # ---------------------------------------------------------------- kinematics
    def kinematics(self):
        """A new :class:`~hybrid_vla_ros.sim.kinematics.Kinematics` of base -> tool frame."""
        from hybrid_vla_ros.robot.kinematics import Kinematics
        return Kinematics.from_robot(self)

    def camera_mounting(self, workspace_centre, workspace_half_width: float) -> np.ndarray:
        """The scene camera's optical frame in the base frame (4x4): the YAML's
        ``camera_extrinsics`` or, by default, a camera beyond the far edge of the workspace and
        above it, looking back at its centre on the table."""
        if self.camera_extrinsics is not None:
            return self.camera_extrinsics.copy()
        c = np.array([workspace_centre[0], workspace_centre[1], 0.0])
        w = max(float(workspace_half_width), 0.2)
        return look_at(c + np.array([w, 0.0, 1.6 * w]), c)


def look_at(pos, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 optical frame (x right, y down, z forward) at ``pos`` looking at ``target``."""
    pos, target, up = (np.asarray(v, float) for v in (pos, target, up))
    z = target - pos
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = pos
    return T


# -------------------------------------------------------------------- loading
def resolve_urdf(urdf: str, yaml_file: str) -> str:
    """The URDF/xacro file a robot YAML names: absolute, relative to the YAML, or a file of
    ``hybrid_vla_description/urdf/``."""
    if os.path.isabs(urdf):
        return urdf
    beside = os.path.join(os.path.dirname(os.path.abspath(yaml_file)), urdf) if yaml_file \
        else ''
    if beside and os.path.isfile(beside):
        return beside
    from hybrid_vla_ros.robot.description import xacro_path
    return xacro_path(os.path.join('urdf', urdf))


def _err(path, key, msg):
    return ConfigError(f"{path}: key '/**.{key}': {msg}")


def _chain(root, base: str, tool: str, path: str):
    """(links base..tool, joints on the way) of the URDF tree, or ConfigError."""
    links = {e.get('name') for e in root.findall('link')}
    for key, frame in (('base_frame', base), ('tool_frame', tool)):
        if frame not in links:
            raise _err(path, key, f"'{frame}' is not a link of the URDF")
    parent_of = {}
    for j in root.findall('joint'):
        child = j.find('child').get('link')
        parent_of[child] = (j.find('parent').get('link'), j)
    chain_links, chain_joints, link = [tool], [], tool
    while link != base:
        if link not in parent_of:
            raise _err(path, 'tool_frame', f"no kinematic chain from '{base}' to '{tool}'")
        link, joint = parent_of[link]
        chain_links.append(link)
        chain_joints.append(joint)
    return tuple(reversed(chain_links)), list(reversed(chain_joints))


def _check_base_is_root(root, base: str, path: str):
    """Poses are in the URDF root's frame: the base frame must be the root or fixed to it at
    the identity (e.g. ``world`` -> ``base_link`` with a zero origin)."""
    parent_of = {j.find('child').get('link'): j for j in root.findall('joint')}
    link = base
    while link in parent_of:
        j = parent_of[link]
        o = j.find('origin')
        vals = [] if o is None else [float(v) for k in ('xyz', 'rpy')
                                     for v in (o.get(k) or '0 0 0').split()]
        if j.get('type') != 'fixed' or any(abs(v) > 1e-9 for v in vals):
            raise _err(path, 'base_frame', f"'{base}' must be the URDF's root link or fixed to "
                       f"it at the identity (joint '{j.get('name')}' is not)")
        link = j.find('parent').get('link')


def _limit(joint, key):
    lim = joint.find('limit')
    v = None if lim is None else lim.get(key)
    return None if v is None else float(v)


def _home_from_ros2_control(root) -> Dict[str, float]:
    out = {}
    for rc in root.findall('ros2_control'):
        for j in rc.findall('joint'):
            for si in j.findall('state_interface'):
                if si.get('name') == 'position':
                    for p in si.findall('param'):
                        if p.get('name') == 'initial_value':
                            out[j.get('name')] = float(p.text)
    return out


def _float(path, key, v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise _err(path, key, f'{v!r} is not a number') from None
    if not math.isfinite(f):
        raise _err(path, key, f'{v!r} is not finite')
    return f


def build_robot(config_file: str, urdf_xml: Optional[str] = None) -> RobotModel:
    """Read and validate a robot YAML and its URDF (see the module docstring)."""
    path = config_path(config_file)
    return robot_from_parameters(load_parameters(path), path, urdf_xml)


def robot_from_parameters(params: Dict[str, Dict], path: str,
                          urdf_xml: Optional[str] = None) -> RobotModel:
    """The robot of the parameter sections ``params`` ({node: parameters}; the robot is the
    ``'/**'`` one). ``path`` is the YAML they came from: errors name it and a relative ``urdf``
    is looked up beside it first."""
    shared = params.get('/**', {})
    cfg = robot_config_from_parameters(shared, path)
    urdf_file = resolve_urdf(cfg.urdf, path)
    if urdf_xml is None:
        if not os.path.isfile(urdf_file):
            raise _err(path, 'urdf', f"no file {urdf_file}")
        from hybrid_vla_ros.robot.description import expand_xacro
        try:
            urdf_xml = expand_xacro(urdf_file)
        except Exception as e:  # xacro / XML errors
            raise _err(path, 'urdf', f'{urdf_file} does not expand: {e}') from e
    try:
        root = ET.fromstring(urdf_xml)
    except ET.ParseError as e:
        raise _err(path, 'urdf', f'{urdf_file} is not valid XML: {e}') from e
    joints = {j.get('name'): j for j in root.findall('joint')}
    n = len(cfg.joint_names)
    if not MIN_JOINTS <= n <= MAX_JOINTS:
        raise _err(path, 'joint_names', f'{n} arm joints; {MIN_JOINTS} to {MAX_JOINTS} are '
                   'supported')
    for j in cfg.joint_names:
        if j not in joints:
            raise _err(path, 'joint_names', f"'{j}' is not a joint of {urdf_file}")
    chain_links, chain_joints = _chain(root, cfg.base_frame, cfg.tool_frame, path)
    _check_base_is_root(root, cfg.base_frame, path)
    moving = [j.get('name') for j in chain_joints if j.get('type') != 'fixed']
    off_chain = [j for j in cfg.joint_names if j not in moving]
    if off_chain:
        raise _err(path, 'joint_names', f'{off_chain} are not on the chain '
                   f"'{cfg.base_frame}' -> '{cfg.tool_frame}' (its joints: {moving})")
    unlisted = [j for j in moving if j not in cfg.joint_names]
    if unlisted:
        raise _err(path, 'joint_names', f'the chain also moves {unlisted}: list every joint '
                   f"from '{cfg.base_frame}' to '{cfg.tool_frame}'")
    arrays = {k: [] for k in ('lower', 'upper', 'velocity', 'effort')}
    for name in cfg.joint_names:
        j = joints[name]
        if j.get('type') not in ('revolute', 'continuous'):
            raise _err(path, 'joint_names', f"'{name}' is {j.get('type')}; arm joints are "
                       'revolute')
        lo, hi, vel = _limit(j, 'lower'), _limit(j, 'upper'), _limit(j, 'velocity')
        if j.get('type') == 'continuous' and lo is None:
            lo, hi = -math.pi, math.pi
        if lo is None or hi is None or not lo < hi:
            raise _err(path, 'joint_names', f"'{name}' needs <limit lower< upper> in "
                       f'{urdf_file}')
        if vel is None or not vel > 0:
            raise _err(path, 'joint_names', f"'{name}' needs a <limit velocity> > 0 in "
                       f'{urdf_file}')
        eff = _limit(j, 'effort')
        for k, v in (('lower', lo), ('upper', hi), ('velocity', vel),
                     ('effort', eff if eff and eff > 0 else 100.0)):
            arrays[k].append(v)
    lower, upper = np.array(arrays['lower']), np.array(arrays['upper'])
    # gripper
    gname = cfg.gripper_joint
    if gname not in joints:
        raise _err(path, 'gripper_joint', f"'{gname}' is not a joint of {urdf_file}")
    gj = joints[gname]
    glo, ghi, gvel = _limit(gj, 'lower'), _limit(gj, 'upper'), _limit(gj, 'velocity')
    if glo is None or ghi is None or not glo < ghi or gvel is None or not gvel > 0:
        raise _err(path, 'gripper_joint', f"'{gname}' needs <limit lower upper velocity> with "
                   f'lower < upper and velocity > 0 in {urdf_file}')
    g_open = _float(path, 'gripper_open', shared['gripper_open']) if 'gripper_open' in shared \
        else ghi
    g_closed = _float(path, 'gripper_closed', shared['gripper_closed']) \
        if 'gripper_closed' in shared else glo
    for key, v in (('gripper_open', g_open), ('gripper_closed', g_closed)):
        if not glo - 1e-9 <= v <= ghi + 1e-9:
            raise _err(path, key, f'{v} is outside the URDF limits [{glo}, {ghi}] of {gname}')
    if g_open == g_closed:
        raise _err(path, 'gripper_open', 'equals gripper_closed')
    mimic = tuple(name for name, j in joints.items() if j.find('mimic') is not None
                  and j.find('mimic').get('joint') == gname)
    gripper_links = tuple(joints[j].find('child').get('link') for j in (gname,) + mimic)
    # home
    if 'home' in shared:
        home = shared['home']
        if not isinstance(home, list) or len(home) != n:
            raise _err(path, 'home', f'{home!r}: expected {n} joint positions')
        home_q = np.array([_float(path, 'home', v) for v in home])
    else:
        init = _home_from_ros2_control(root)
        home_q = np.array([init.get(j, 0.5 * (lo + hi)) for j, lo, hi in
                           zip(cfg.joint_names, lower, upper)])
    if np.any(home_q < lower) or np.any(home_q > upper):
        raise _err(path, 'home', f'{home_q.tolist()} is outside the joint limits')
    # camera
    cam = None
    if 'camera_extrinsics' in shared:
        v = shared['camera_extrinsics']
        if not isinstance(v, list) or len(v) != 16:
            raise _err(path, 'camera_extrinsics', 'expected 16 numbers (row-major 4x4)')
        cam = np.array([_float(path, 'camera_extrinsics', x) for x in v]).reshape(4, 4)
        R = cam[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            raise _err(path, 'camera_extrinsics', 'the rotation is not orthonormal')
    return RobotModel(
        config=cfg, config_file=path, urdf_file=urdf_file, urdf=urdf_xml, parameters=params,
        lower=lower, upper=upper, velocity=np.array(arrays['velocity']),
        effort=np.array(arrays['effort']), home_q=home_q, gripper_open=g_open,
        gripper_closed=g_closed, gripper_velocity=gvel, gripper_mimic=mimic,
        chain_links=chain_links, gripper_links=gripper_links, camera_extrinsics=cam)


@lru_cache(maxsize=16)
def _load(path: str, mtime: float) -> RobotModel:
    return build_robot(path)


def load_robot(robot=DEFAULT_ROBOT) -> RobotModel:
    """The robot model of ``robot``: a name in the package's ``config/`` or a YAML path (cached
    per file; a :class:`RobotModel` is passed through)."""
    if isinstance(robot, RobotModel):
        return robot
    path = os.path.abspath(config_path(str(robot)))
    return _load(path, os.path.getmtime(path))
