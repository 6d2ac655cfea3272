"""The table-top scene's MuJoCo model, built around a robot model (URDF + YAML).

:func:`build_scene` compiles the robot's URDF with the scene added: the arm's colours, gravity
compensation, collision bits and gains (the ``sim_arm`` section's ``joint_kp`` / ``joint_kv`` /
``joint_armature`` lists, else derived from the URDF efforts), the lights, the table and floor,
the graspable objects, the pads, the target marker, the obstacle wall, the fixed scene camera
and the position actuators. The scene is laid out in the robot's workspace (:mod:`.workspace`).
:class:`~.arm_sim.ArmSim` simulates it.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Tuple

os.environ.setdefault('MUJOCO_GL', 'egl')

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from ..domain.vocabulary import (  # noqa: E402
    CUBE_HALF,
    CYL_HALF,
    CYL_RADIUS,
    OBJECT_SHAPE,
    OBJECT_SLOTS,
    OBSTACLE_HALF,
    PAD_HALF,
    PAD_SLOTS,
)
from ..robot_config import ConfigError  # noqa: E402

CAMERA_NAME = 'scene_cam'           # the fixed scene camera of the model
PARK_Z = -2.0                       # mocap bodies not used by a task are parked below the table

# default arm gains from a joint's URDF effort limit (N m): kp = KP_PER_EFFORT * effort (N m/rad),
# kv = kp / KV_RATIO (N m s/rad), armature = effort / ARMATURE_PER_EFFORT (kg m^2)
KP_PER_EFFORT, KV_RATIO, ARMATURE_PER_EFFORT = 20.0, 25.0, 1000.0
GRIP_KP, GRIP_KV, GRIP_FORCE = 1500.0, 20.0, 25.0
DARK, GREY, LIGHT = (0.15, 0.15, 0.17, 1), (0.4, 0.4, 0.42, 1), (0.9, 0.9, 0.9, 1)

# collision groups: arm geoms do not collide with each other, everything else does.
WORLD_BITS = (1, 1)   # contype, conaffinity
ARM_BITS = (2, 1)


def _camera_quat(T_optical) -> np.ndarray:
    """MuJoCo camera quaternion (wxyz) of an optical frame (x right, y down, z forward): a
    MuJoCo camera looks along its -z with +y up."""
    R = np.asarray(T_optical, float)[:3, :3] @ np.diag([1.0, -1.0, -1.0])
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, R.reshape(9))
    return q


def _gains(robot):
    """(kp, kv, armature) per arm joint: the sim_arm section's lists or the effort defaults."""
    sec = robot.section('sim_arm')
    defaults = {'joint_kp': KP_PER_EFFORT * robot.effort,
                'joint_kv': KP_PER_EFFORT * robot.effort / KV_RATIO,
                'joint_armature': robot.effort / ARMATURE_PER_EFFORT}
    out = []
    for key, default in defaults.items():
        v = sec.get(key)
        if v is None:
            out.append(np.asarray(default, float))
            continue
        if not isinstance(v, list) or len(v) != robot.n_joints or not all(
                isinstance(x, (int, float)) and np.isfinite(x) and x >= 0 for x in v):
            raise ConfigError(f"{robot.config_file}: key 'sim_arm.{key}' = {v!r}: expected "
                              f'{robot.n_joints} numbers >= 0 (one per arm joint)')
        out.append(np.asarray(v, float))
    return out


def _body_colours(spec, r):
    """Body name -> rgba: the base and the links after the last arm joint dark, the
    gripper's moving links grey, the rest light."""
    last = spec.joint(r.joint_names[-1]).parent.name   # the body the last arm joint moves
    out = {}
    def walk(body, dark):
        dark = dark or body.name == last
        out[body.name] = GREY if body.name in r.gripper_links else DARK if dark else LIGHT
        for child in body.bodies:
            walk(child, dark)
    for body in spec.worldbody.bodies:
        walk(body, False)
    out[r.base_frame] = DARK
    return out


class Scene(NamedTuple):
    """A compiled scene: the model, the robot's body names and the y of the table
    edge where the objects a task does not use are parked."""
    model: mujoco.MjModel
    robot_bodies: Tuple[str, ...]
    park_y: float


def build_scene(r, workspace, timestep: float, T_cam, *, fovy: float, width: int, height: int,
                shadows: bool) -> Scene:
    """The scene model of robot ``r`` (a RobotModel) in ``workspace``, its camera at the
    optical frame ``T_cam`` (4x4, base frame) with vertical field of view ``fovy`` (deg);
    ``width`` x ``height``: the largest image it renders (sizes the offscreen buffer)."""
    spec = mujoco.MjSpec.from_string(r.urdf)
    spec.compiler.fusestatic = False
    spec.compiler.discardvisual = False  # keep the visual-only markers (pads, target)
    spec.modelname = f'{r.name}_scene'
    opt = spec.option
    opt.timestep = timestep
    opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    opt.impratio = 10.0
    spec.visual.global_.offwidth = max(640, width)
    spec.visual.global_.offheight = max(480, height)
    spec.visual.quality.shadowsize = 1024 if shadows else 0

    colours = _body_colours(spec, r)
    robot_bodies = tuple(colours)
    for body in spec.bodies:
        if body.name not in colours:
            continue
        if body.name != r.base_frame:
            body.gravcomp = 1.0  # gravity-compensated arm (as a real torque-controlled arm)
        for g in body.geoms:
            g.contype, g.conaffinity = ARM_BITS
            g.rgba = colours[body.name]
            if body.name in r.gripper_links:
                g.friction = (1.5, 0.01, 0.001)
                g.condim = 4
                g.solref = (0.005, 1.0)
    kp, kv, armature = _gains(r)
    for j, arm in zip(r.joint_names, armature):
        spec.joint(j).armature = arm
    for j in r.gripper_joints:
        spec.joint(j).armature = 0.01
    ws = workspace

    wb = spec.worldbody
    # lights
    wb.add_light(pos=(0.5, -0.6, 1.6), dir=(-0.1, 0.4, -1.0), diffuse=(0.7, 0.7, 0.7),
                 specular=(0.2, 0.2, 0.2), castshadow=shadows)
    wb.add_light(pos=(1.5, 0.5, 1.2), dir=(-1.0, -0.3, -0.8), diffuse=(0.35, 0.35, 0.35),
                 specular=(0.0, 0.0, 0.0), castshadow=False)
    spec.visual.headlight.ambient = (0.3, 0.3, 0.3)
    # table (top surface at z = 0, the arm's mounting plane) and a floor
    # from behind the base to beyond the workspace's far edge
    x0, x1 = -0.2, max(0.9, ws.x_range[1] + 0.28)
    half_y = max(0.6, max(abs(v) for v in ws.y_range) + 0.34)
    park_y = -(max(abs(v) for v in ws.y_range) + 0.24)   # unused objects, table edge
    wb.add_geom(name='table', type=mujoco.mjtGeom.mjGEOM_BOX,
                size=(0.5 * (x1 - x0), half_y, 0.02),
                pos=(0.5 * (x0 + x1), ws.centre[1], -0.02), rgba=(0.55, 0.42, 0.30, 1.0),
                friction=(0.8, 0.005, 0.0001), contype=WORLD_BITS[0],
                conaffinity=WORLD_BITS[1])
    wb.add_geom(name='floor', type=mujoco.mjtGeom.mjGEOM_PLANE, size=(3, 3, 0.1),
                pos=(0, 0, -0.75), rgba=(0.3, 0.3, 0.32, 1.0))
    # graspable objects (free bodies)
    for slot in OBJECT_SLOTS:
        b = wb.add_body(name=slot, pos=(0.0, 0.0, 1.0))
        b.add_freejoint(name=slot + '_free')
        if OBJECT_SHAPE[slot] == 'cube':
            g = b.add_geom(name=slot + '_geom', type=mujoco.mjtGeom.mjGEOM_BOX,
                           size=(CUBE_HALF,) * 3)
        else:
            g = b.add_geom(name=slot + '_geom', type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                           size=(CYL_RADIUS, CYL_HALF, 0))
        g.mass = 0.05
        g.friction = (1.0, 0.005, 0.0001)
        g.condim = 4
        g.contype, g.conaffinity = WORLD_BITS
        g.rgba = (0.8, 0.8, 0.8, 1.0)
    # pads (visual markers lying on the table; objects rest on the table through them)
    for slot in PAD_SLOTS:
        b = wb.add_body(name=slot, mocap=True, pos=(0.0, 0.0, PARK_Z))
        b.add_geom(name=slot + '_geom', type=mujoco.mjtGeom.mjGEOM_BOX, size=PAD_HALF,
                   contype=0, conaffinity=0, rgba=(0.5, 0.5, 0.5, 1.0))
    # reach / detour target marker (visual only)
    b = wb.add_body(name='target', mocap=True, pos=(0.0, 0.0, PARK_Z))
    b.add_geom(name='target_geom', type=mujoco.mjtGeom.mjGEOM_SPHERE, size=(0.012, 0, 0),
               contype=0, conaffinity=0, rgba=(0.1, 0.9, 0.2, 0.8))
    # obstacle wall for the detour task (collides with the arm)
    b = wb.add_body(name='obstacle', mocap=True, pos=(0.0, 0.0, PARK_Z))
    b.add_geom(name='obstacle_geom', type=mujoco.mjtGeom.mjGEOM_BOX, size=OBSTACLE_HALF,
               contype=WORLD_BITS[0], conaffinity=WORLD_BITS[1], rgba=(0.5, 0.5, 0.55, 1.0))
    # fixed scene camera
    wb.add_camera(name=CAMERA_NAME, pos=np.asarray(T_cam, float)[:3, 3],
                  quat=_camera_quat(T_cam), fovy=fovy)
    # actuators
    for i, j in enumerate(r.joint_names):
        a = spec.add_actuator(name=f'act_{j}', target=j, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.set_to_position(kp=float(kp[i]), kv=float(kv[i]))
        a.forcelimited = True
        a.forcerange = (-float(r.effort[i]), float(r.effort[i]))
        a.ctrllimited = True
        a.ctrlrange = (float(r.lower[i]), float(r.upper[i]))
    a = spec.add_actuator(name='act_gripper', target=r.gripper_joint,
                          trntype=mujoco.mjtTrn.mjTRN_JOINT)
    a.set_to_position(kp=GRIP_KP, kv=GRIP_KV)
    a.forcelimited = True
    a.forcerange = (-GRIP_FORCE, GRIP_FORCE)
    a.ctrllimited = True
    a.ctrlrange = r.gripper_range
    return Scene(spec.compile(), robot_bodies, park_y)
