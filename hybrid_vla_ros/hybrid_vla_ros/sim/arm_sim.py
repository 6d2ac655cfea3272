"""MuJoCo simulation of any robot model (URDF + YAML) in a table-top scene with a fixed camera.

Conventions (shared with the ROS nodes and the learned experts):
- base frame = MuJoCo world frame; metres, radians, seconds; quaternions (x, y, z, w).
- joint order: the robot's ``joint_names``; the gripper command/state is a closure scalar in
  [0, 1], 0 = fully open, 1 = fully closed, mapped onto the gripper joint's range by the robot
  model (``gripper_position`` / ``gripper_closure``); its mimic joints follow it.
- physics at ``timestep`` (default 0.002 s = 500 Hz); position actuators on every arm joint
  and the gripper joint. Gains: the ``sim_arm`` section's ``joint_kp`` / ``joint_kv`` /
  ``joint_armature`` lists (one per arm joint), else derived from the URDF efforts.
- the scene (table, objects, pads, markers, wall) is laid out in the robot's workspace
  (:mod:`.workspace`) and built by :mod:`.scene_builder`; the camera is mounted by
  :func:`.workspace.scene_camera` and rendered by :mod:`.scene_camera`.
"""
from __future__ import annotations

import os

os.environ.setdefault('MUJOCO_GL', 'egl')

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from ..domain.vocabulary import (  # noqa: E402
    COLOR_RGBA,
    OBJECT_HALF_HEIGHT,
    OBJECT_SHAPE,
    OBJECT_SLOTS,
    OBSTACLE_HALF,
    PAD_HALF,
    PAD_SLOTS,
)
from ..robot import DEFAULT_ROBOT, load_robot  # noqa: E402
from .description import joint_limits  # noqa: E402
from .kinematics import Kinematics, mat_to_quat, quat_wxyz_to_xyzw  # noqa: E402
from .scene_builder import PARK_Z, build_scene  # noqa: E402
from .scene_camera import SceneCamera  # noqa: E402


class ArmSim:
    """Table-top scene around a robot model (name, YAML path or
    :class:`~hybrid_vla_ros.robot.RobotModel`). Deterministic given (task, seed)."""

    def __init__(self, robot=DEFAULT_ROBOT, camera_width: int = 128, camera_height: int = 128,
                 camera_extrinsics=None, camera_fovy: float = 45.0, timestep: float = 0.002,
                 shadows: bool = False):
        from .workspace import scene_camera, workspace_of
        self.robot = load_robot(robot)
        r = self.robot
        self.urdf = r.urdf
        self.limits = joint_limits(self.urdf)   # every URDF joint: {type, lower, upper, ...}
        self.workspace = workspace_of(r)
        self.home_q = r.home_q.copy()
        self.lower, self.upper, self.vel_limits = r.lower.copy(), r.upper.copy(), r.velocity.copy()
        self.arm_joints = r.joint_names
        self.joint_names = tuple(r.joint_names) + tuple(r.gripper_joints)
        self.width, self.height = int(camera_width), int(camera_height)
        self.fovy = float(camera_fovy)
        self.shadows = shadows
        T_cam = scene_camera(r) if camera_extrinsics is None else np.asarray(camera_extrinsics)
        scene = build_scene(r, self.workspace, timestep, T_cam, fovy=self.fovy,
                            width=self.width, height=self.height, shadows=shadows)
        self.model, self._robot_bodies, self._park_y = scene
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._arm_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in r.joint_names])
        self._arm_dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in r.joint_names])
        self._finger_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in r.gripper_joints])
        self._finger_dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in r.gripper_joints])
        self._arm_act = np.array([m.actuator(f'act_{j}').id for j in r.joint_names])
        self._grip_act = m.actuator('act_gripper').id
        self._tcp = m.body(r.tool_frame).id
        self._obj_body = {s: m.body(s).id for s in OBJECT_SLOTS}
        self._obj_qadr = {s: m.jnt_qposadr[m.body(s).jntadr[0]] for s in OBJECT_SLOTS}
        self._obj_geom = {s: m.geom(s + '_geom').id for s in OBJECT_SLOTS}
        self._pad_mocap = {s: m.body_mocapid[m.body(s).id] for s in PAD_SLOTS}
        self._pad_geom = {s: m.geom(s + '_geom').id for s in PAD_SLOTS}
        self._target_mocap = m.body_mocapid[m.body('target').id]
        self._obstacle_mocap = m.body_mocapid[m.body('obstacle').id]
        self._obstacle_geom = m.geom('obstacle_geom').id
        arm_bodies = {m.body(n).id for n in self._robot_bodies if n != r.base_frame}
        self._arm_geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in arm_bodies])
        fingers = {m.body(n).id for n in r.gripper_links}
        self._finger_geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in fingers])
        self.kin = Kinematics(m, r.joint_names, r.tool_frame)
        # the fixed scene camera (renderers created on first use)
        self.camera = SceneCamera(m, self.data, self.width, self.height, self.fovy)
        self.task = None
        self.episode = None
        self.seed = None
        self.obstacle_contacts = 0
        self._q_target = self.home_q.copy()
        self._g_target = 0.0
        self.reset()


    # ------------------------------------------------------------------ episode control
    def reset(self, task=None, seed: int = 0):
        """Reset to a task's seeded scene (or an empty scene with the arm at home if task is None).

        Returns the episode description (see ``tasks.Episode``).
        """
        from .tasks import Episode, get_task
        m, d = self.model, self.data
        # resolve the task first: an unknown task or a bad seed raises with the scene untouched
        new_task = None if task is None else get_task(task, self.robot)
        ep = Episode(task='none', seed=int(seed)) if new_task is None \
            else new_task.sample(int(seed))
        mujoco.mj_resetData(m, d)
        self.seed = int(seed)
        self.task = new_task
        self.episode = ep
        # arm
        q0 = self.home_q if ep.start_q is None else np.asarray(ep.start_q, float)
        d.qpos[self._arm_qadr] = q0
        g0 = float(ep.start_gripper)
        d.qpos[self._finger_qadr] = self._mimic_positions(self.robot.gripper_position(g0))
        self._q_target = q0.copy()
        self._g_target = g0
        d.ctrl[self._arm_act] = q0
        d.ctrl[self._grip_act] = self.robot.gripper_position(g0)
        # objects: all slots get a pose and colour; unused ones go to the edge of the table
        for i, slot in enumerate(OBJECT_SLOTS):
            spec_o = ep.objects.get(slot)
            if spec_o is None:
                pos = (-0.1 + 0.06 * i, self._park_y, OBJECT_HALF_HEIGHT[OBJECT_SHAPE[slot]])
                yaw, color = 0.0, 'grey'
            else:
                pos, yaw, color = spec_o['pos'], spec_o.get('yaw', 0.0), spec_o['color']
            a = self._obj_qadr[slot]
            d.qpos[a:a + 3] = pos
            d.qpos[a + 3:a + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
            m.geom_rgba[self._obj_geom[slot]] = COLOR_RGBA.get(color, (0.6, 0.6, 0.6, 1.0))
        for slot in PAD_SLOTS:
            p = ep.pads.get(slot)
            mid = self._pad_mocap[slot]
            if p is None:
                d.mocap_pos[mid] = (0.0, 0.0, PARK_Z)
            else:
                d.mocap_pos[mid] = (p['pos'][0], p['pos'][1], PAD_HALF[2])
                m.geom_rgba[self._pad_geom[slot]] = COLOR_RGBA[p['color']]
        d.mocap_pos[self._target_mocap] = ep.target if ep.target is not None else (0, 0, PARK_Z)
        if ep.obstacle is not None:
            d.mocap_pos[self._obstacle_mocap] = ep.obstacle['pos']
            yaw = ep.obstacle.get('yaw', 0.0)
            d.mocap_quat[self._obstacle_mocap] = (np.cos(yaw / 2), 0, 0, np.sin(yaw / 2))
        else:
            d.mocap_pos[self._obstacle_mocap] = (0, 0, PARK_Z)
            d.mocap_quat[self._obstacle_mocap] = (1, 0, 0, 0)
        mujoco.mj_forward(m, d)
        self.obstacle_contacts = 0
        self._track_obstacle = ep.obstacle is not None
        return ep

    # ------------------------------------------------------------------ commands
    def _mimic_positions(self, g_pos: float) -> np.ndarray:
        """Positions of the gripper joint and its mimics for a gripper joint position."""
        m = self.model
        out = [g_pos]
        for j in self.robot.gripper_mimic:
            # the URDF importer turns <mimic> into a joint equality: q = c0 + c1 * q_gripper
            c0, c1 = 0.0, 1.0
            jid = m.joint(j).id
            for e in range(m.neq):
                if m.eq_type[e] == mujoco.mjtEq.mjEQ_JOINT and m.eq_obj1id[e] == jid:
                    c0, c1 = m.eq_data[e][0], m.eq_data[e][1]
            out.append(c0 + c1 * g_pos)
        return np.array(out)

    def set_joint_targets(self, q) -> bool:
        """Command the arm joint positions (rad, ``joint_names`` order). Clamps to the URDF
        limits.

        Returns True if any value was clamped. Raises ValueError (and keeps holding the previous
        targets) for a wrong length or non-finite values.
        """
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.shape[0] != self.robot.n_joints:
            raise ValueError(f'expected {self.robot.n_joints} joint targets, got {q.shape[0]}')
        if not np.all(np.isfinite(q)):
            raise ValueError('joint targets must be finite')
        qc = np.clip(q, self.lower, self.upper)
        self._q_target = qc
        self.data.ctrl[self._arm_act] = qc
        return bool(np.any(qc != q))

    def set_gripper(self, g: float) -> bool:
        """Gripper command in [0, 1] (0 open, 1 closed). Returns True if clamped."""
        g = float(g)
        if not np.isfinite(g):
            raise ValueError('gripper command must be finite')
        gc = min(1.0, max(0.0, g))
        self._g_target = gc
        self.data.ctrl[self._grip_act] = self.robot.gripper_position(gc)
        return gc != g

    def set_finger_position(self, pos: float) -> bool:
        """Command the gripper joint directly in its own units (ros2_control
        gripper_controller units, e.g. metres). Returns True if clamped."""
        pos = float(pos)
        if not np.isfinite(pos):
            raise ValueError('gripper joint position must be finite')
        lo, hi = self.robot.gripper_range
        return self.set_gripper(self.robot.gripper_closure(pos)) or not (lo <= pos <= hi)

    def step(self, n: int = 1):
        m, d = self.model, self.data
        for _ in range(int(n)):
            mujoco.mj_step(m, d)
            if self._track_obstacle and d.ncon:
                self._count_obstacle_contacts()

    def step_for(self, seconds: float):
        self.step(int(round(seconds / self.model.opt.timestep)))

    def _count_obstacle_contacts(self):
        c = self.data.contact
        n = self.data.ncon
        g1, g2 = c.geom1[:n], c.geom2[:n]
        og = self._obstacle_geom
        arm = self._arm_geoms
        hit = ((g1 == og) & np.isin(g2, arm)) | ((g2 == og) & np.isin(g1, arm))
        if np.any(hit):
            self.obstacle_contacts += 1

    # ------------------------------------------------------------------ state
    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def joint_state(self):
        """(names, positions, velocities) of the arm joints, then the gripper joint and its
        mimics (for /joint_states)."""
        d = self.data
        pos = np.concatenate([d.qpos[self._arm_qadr], d.qpos[self._finger_qadr]])
        vel = np.concatenate([d.qvel[self._arm_dadr], d.qvel[self._finger_dadr]])
        return list(self.joint_names), pos, vel

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._arm_qadr].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._arm_dadr].copy()

    def joint_targets(self) -> np.ndarray:
        return self._q_target.copy()

    def gripper_command(self) -> float:
        return self._g_target

    def gripper_state(self) -> float:
        """Measured gripper closure in [0, 1] from the gripper joint (0 open, 1 closed)."""
        return self.robot.gripper_closure(self.data.qpos[self._finger_qadr[0]])

    def finger_positions(self) -> np.ndarray:
        """Positions of the gripper joint and its mimics."""
        return self.data.qpos[self._finger_qadr].copy()

    def finger_velocities(self) -> np.ndarray:
        return self.data.qvel[self._finger_dadr].copy()

    def state(self) -> np.ndarray:
        """(n_joints + 1,): the arm joint positions (rad) + the gripper closure (0..1)."""
        return np.concatenate([self.joint_positions(), [self.gripper_state()]])

    def tool_pose(self):
        """Tool frame pose in the base frame: (xyz (3,), quat xyzw (4,))."""
        return (self.data.xpos[self._tcp].copy(),
                mat_to_quat(self.data.xmat[self._tcp].reshape(3, 3)))

    def object_poses(self) -> dict:
        """Ground truth: {name: {'pos', 'quat' (xyzw), 'color', 'shape', 'kind'}} for objects,
        pads, the target marker and the obstacle (only those used by the episode)."""
        d = self.data
        out = {}
        ep = self.episode
        for slot in OBJECT_SLOTS:
            b = self._obj_body[slot]
            info = ep.objects.get(slot) if ep is not None else None
            out[slot] = {'pos': d.xpos[b].copy(), 'quat': quat_wxyz_to_xyzw(d.xquat[b]),
                         'color': info['color'] if info else 'grey',
                         'shape': OBJECT_SHAPE[slot], 'kind': 'object',
                         'half_height': OBJECT_HALF_HEIGHT[OBJECT_SHAPE[slot]]}
        for slot in PAD_SLOTS:
            info = ep.pads.get(slot) if ep is not None else None
            if info is None:
                continue
            mid = self._pad_mocap[slot]
            out[slot] = {'pos': d.mocap_pos[mid].copy(), 'quat': np.array([0, 0, 0, 1.0]),
                         'color': info['color'], 'shape': 'pad', 'kind': 'pad'}
        if ep is not None and ep.target is not None:
            out['target'] = {'pos': d.mocap_pos[self._target_mocap].copy(),
                             'quat': np.array([0, 0, 0, 1.0]), 'color': 'green',
                             'shape': 'marker', 'kind': 'target'}
        if ep is not None and ep.obstacle is not None:
            mid = self._obstacle_mocap
            out['obstacle'] = {'pos': d.mocap_pos[mid].copy(),
                               'quat': quat_wxyz_to_xyzw(d.mocap_quat[mid]), 'color': 'grey',
                               'shape': 'box', 'kind': 'obstacle',
                               'half_size': np.array(OBSTACLE_HALF)}
        return out

    def finger_contacts(self, slot: str) -> int:
        """Number of fingers (0..2) touching object ``slot``."""
        d = self.data
        n = d.ncon
        og = self._obj_geom[slot]
        touching = set()
        for i in range(n):
            g1, g2 = d.contact.geom1[i], d.contact.geom2[i]
            if g1 == og and g2 in self._finger_geoms:
                touching.add(int(self.model.geom_bodyid[g2]))
            elif g2 == og and g1 in self._finger_geoms:
                touching.add(int(self.model.geom_bodyid[g1]))
        return len(touching)

    # ------------------------------------------------------------------ camera
    def render(self) -> np.ndarray:
        """RGB image (H, W, 3) uint8 from the fixed scene camera."""
        return self.camera.render()

    def render_depth(self) -> np.ndarray:
        """Depth image (H, W) float32, metres along the optical axis."""
        return self.camera.render_depth()

    def camera_info(self) -> dict:
        """Pinhole intrinsics and extrinsics of the camera (:meth:`SceneCamera.camera_info`)."""
        return self.camera.camera_info()

    def pixel_to_base(self, u: float, v: float, depth: float) -> np.ndarray:
        """Back-project pixel (u, v) with optical-axis depth (m) to a base-frame point."""
        return self.camera.pixel_to_base(u, v, depth)

    def base_to_pixel(self, p) -> np.ndarray:
        return self.camera.base_to_pixel(p)

    def close(self):
        camera = getattr(self, 'camera', None)  # None if __init__ failed before it
        if camera is not None:
            camera.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
