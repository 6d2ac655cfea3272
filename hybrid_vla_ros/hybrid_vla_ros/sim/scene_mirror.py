"""Scene mirror: the sim's scene and camera posed by measured joint states, never by physics.

The core of the ``scene_camera`` node (``nodes/scene_camera.py``, started by ``hardware:=mock``
next to ros2_control): the arm is owned by someone else (mock_components, a real driver),
so the mirror only *shows* it. Every accepted joint state (arm joints + finger joints) is written
into the MuJoCo model's ``qpos`` and :func:`mujoco.mj_forward` is called; nothing is stepped.

Design decision — the task scene is kinematic, not simulated: the objects (cubes, pads, target,
obstacle) stay at the reset poses of the task episode (``reset(task, seed)`` re-samples them,
like sim_arm's ``set_task``), and the episode's start pose of the arm is ignored (the arm is where
the hardware says it is). Simulating the objects passively would mean stepping contact dynamics
against an arm teleported at the joint-state rate (impulsive, rate-dependent forces), and
mock_components has no objects to agree with anyway: a cube "grasped" by the mock arm does not
follow it in the mirror. What the mirror guarantees: the image shows the arm exactly at the
joint state it is stamped with, in the task scene the planners are asked about.

Joint states are validated like everywhere else in the graph, plus what a renderer needs: names
and positions of equal length, no duplicate names, no joints the model does not have (unless
listed in ``extra_joints``), every required joint present (the configured arm joints and the
gripper joint), finite values, and positions within the URDF limits (plus ``limit_tolerance``).
A rejected state raises :class:`JointStateError` naming the problem and the last good state is
kept. Joints the message omits that the URDF declares as ``<mimic>`` of a given joint (the right
finger) follow it.

Nothing here imports rclpy.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence
import xml.etree.ElementTree as ET

import mujoco
import numpy as np

from .arm_sim import ArmSim


class JointStateError(ValueError):
    """A joint state the mirror refuses (the message says why)."""


def _mimics(urdf: str) -> dict:
    """{joint: (source joint, multiplier, offset)} from the URDF's ``<mimic>`` tags."""
    out = {}
    for j in ET.fromstring(urdf).findall('joint'):
        m = j.find('mimic')
        if m is not None:
            out[j.get('name')] = (m.get('joint'), float(m.get('multiplier', 1.0)),
                                  float(m.get('offset', 0.0)))
    return out


class SceneMirror:
    """Poses ``sim``'s arm from joint states; objects stay where the last reset put them.

    :param sim: the scene (an :class:`ArmSim`; the mirror never steps it).
    :param joint_names: the robot's arm joints (default: the sim robot's ``joint_names``);
        required in every joint state.
    :param gripper_joint: the gripper joint (default: the sim robot's); required.
    :param extra_joints: joint names that may appear in joint states and are ignored (other
        devices on the same controller manager); any other unknown name rejects the message.
    :param limit_tolerance: a position beyond its URDF limit by more than this (rad or m) is
        rejected as garbage; negative = no limit check.
    """

    def __init__(self, sim: ArmSim, joint_names: Optional[Sequence[str]] = None,
                 gripper_joint: Optional[str] = None, extra_joints: Iterable[str] = (),
                 limit_tolerance: float = 0.1):
        self.sim = sim
        m = sim.model
        joint_names = sim.robot.joint_names if joint_names is None else joint_names
        gripper_joint = sim.robot.gripper_joint if gripper_joint is None else gripper_joint
        # every joint the mirror can pose: the arm and its gripper (not the objects' free joints)
        self.joints = tuple(sim.joint_names)
        self.required = tuple(joint_names) + (gripper_joint,)
        missing = [j for j in self.required if j not in self.joints]
        if missing:
            raise ValueError(f'joints {missing} are not in the mirrored model (it has '
                             f'{list(self.joints)})')
        if len(set(self.required)) != len(self.required):
            raise ValueError(f'duplicate joint names in {list(self.required)}')
        self.extra = frozenset(extra_joints) - set(self.joints)
        self.index = {j: i for i, j in enumerate(self.joints)}
        self.qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.joints])
        self.dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in self.joints])
        tol = float(limit_tolerance)
        self.lower = np.full(len(self.joints), -np.inf)
        self.upper = np.full(len(self.joints), np.inf)
        if tol >= 0:
            for j, i in self.index.items():
                lim = sim.limits.get(j, {})
                if lim.get('lower') is not None and lim.get('upper') is not None:
                    self.lower[i], self.upper[i] = lim['lower'] - tol, lim['upper'] + tol
        self.mimic = {j: (src, mul, off) for j, (src, mul, off) in _mimics(sim.urdf).items()
                      if j in self.index and src in self.index}
        optional = set(self.joints) - set(self.required) - set(self.mimic)
        if optional:  # a joint nobody provides would keep a stale value: make it required
            self.required += tuple(sorted(optional))
        self.q: Optional[np.ndarray] = None   # last good positions, in ``self.joints`` order
        self.stamp = None                     # its stamp (whatever the caller passed)
        self.seq = 0                          # number of accepted states
        self.rejected = 0
        self.last_error = ''

    # ------------------------------------------------------------------ joint states
    def validate(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Positions of ``self.joints`` from a joint state, or :class:`JointStateError`."""
        names = list(names)
        try:
            pos = np.asarray(positions, dtype=float).reshape(-1)
        except (TypeError, ValueError) as e:
            raise JointStateError(f'positions are not numbers ({e})') from None
        if len(names) != pos.shape[0]:
            raise JointStateError(f'{len(names)} names but {pos.shape[0]} positions')
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise JointStateError(f'duplicate joint names {dup}')
        unknown = [n for n in names if n not in self.index and n not in self.extra]
        if unknown:
            raise JointStateError(f'unknown joints {unknown} (the model has '
                                  f'{list(self.joints)}; list others in extra_joints)')
        missing = [j for j in self.required if j not in names]
        if missing:
            raise JointStateError(f'missing joints {missing}')
        q = np.full(len(self.joints), np.nan)
        given = np.zeros(len(self.joints), dtype=bool)
        for n, v in zip(names, pos):
            i = self.index.get(n)
            if i is not None:
                q[i], given[i] = v, True
        bad = [self.joints[i] for i in np.flatnonzero(given & ~np.isfinite(q))]
        if bad:
            raise JointStateError(f'NaN/Inf positions for {bad}')
        for j, (src, mul, off) in self.mimic.items():
            i = self.index[j]
            if not given[i]:
                q[i] = mul * q[self.index[src]] + off
        out = [f'{self.joints[i]}={q[i]:.4g}' for i in
               np.flatnonzero((q < self.lower) | (q > self.upper))]
        if out:
            raise JointStateError(f'positions far outside the URDF limits: {", ".join(out)}')
        return q

    def update(self, names: Sequence[str], positions: Sequence[float], stamp=None) -> np.ndarray:
        """Validate and keep a joint state as the latest good one (returns its positions).

        On :class:`JointStateError` the previous good state stays (counted in ``rejected``).
        """
        try:
            q = self.validate(names, positions)
        except JointStateError as e:
            self.rejected += 1
            self.last_error = str(e)
            raise
        self.q, self.stamp = q, stamp
        self.seq += 1
        return q

    @property
    def has_state(self) -> bool:
        return self.q is not None

    # ------------------------------------------------------------------ scene
    def apply(self) -> bool:
        """Write the latest good state into the model (qpos, zero velocity) and run
        ``mj_forward``; False (scene untouched) before the first good state."""
        if self.q is None:
            return False
        d = self.sim.data
        d.qpos[self.qadr] = self.q
        d.qvel[self.dadr] = 0.0
        mujoco.mj_forward(self.sim.model, d)
        return True

    def reset(self, task=None, seed: int = 0):
        """New task scene (objects at the episode's poses), arm kept at the latest good joint
        state (the episode's start pose only until the first one). Returns the episode."""
        ep = self.sim.reset(task, seed)
        self.apply()
        return ep

    def arm_positions(self) -> Optional[np.ndarray]:
        """The latest good arm joint positions in the robot's order (None before)."""
        return None if self.q is None else self.q[:self.sim.robot.n_joints].copy()
