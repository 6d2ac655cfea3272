"""MuJoCo simulation of the arm7 description with a table-top scene and a fixed RGB camera.

Conventions (shared with the ROS nodes and the learned experts):
- base frame = MuJoCo world frame; metres, radians, seconds; quaternions (x, y, z, w).
- joint order: ``joint_1`` .. ``joint_7`` (``ARM_JOINTS``); gripper command/state is a scalar in
  [0, 1], 0 = fully open (80 mm between the pads), 1 = fully closed; the finger joint position
  is ``0.04 * (1 - g)`` metres (``finger_left_joint``; ``finger_right_joint`` mimics it).
- physics at ``timestep`` (default 0.002 s = 500 Hz); position actuators on every joint.
"""
from __future__ import annotations

import os

os.environ.setdefault('MUJOCO_GL', 'egl')

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from .description import home_pose, joint_limits, urdf_string  # noqa: E402
from .kinematics import ARM_JOINTS, Kinematics, mat_to_quat, quat_wxyz_to_xyzw  # noqa: E402

FINGER_JOINTS = ('finger_left_joint', 'finger_right_joint')
FINGER_OPEN = 0.04  # m per finger

COLORS = {
    'red': (0.85, 0.10, 0.10, 1.0),
    'green': (0.10, 0.65, 0.20, 1.0),
    'blue': (0.10, 0.30, 0.90, 1.0),
    'yellow': (0.95, 0.85, 0.10, 1.0),
    'purple': (0.55, 0.20, 0.75, 1.0),
    'orange': (1.00, 0.50, 0.00, 1.0),
}

CUBE_HALF = 0.02          # 40 mm cubes
CYL_RADIUS, CYL_HALF = 0.02, 0.02
OBJECT_SLOTS = ('cube_0', 'cube_1', 'cube_2', 'cube_3', 'cyl_0')
OBJECT_SHAPE = {'cube_0': 'cube', 'cube_1': 'cube', 'cube_2': 'cube', 'cube_3': 'cube',
                'cyl_0': 'cylinder'}
OBJECT_HALF_HEIGHT = {'cube': CUBE_HALF, 'cylinder': CYL_HALF}
PAD_SLOTS = ('pad_0', 'pad_1')
PAD_HALF = (0.045, 0.045, 0.0015)
OBSTACLE_HALF = (0.02, 0.12, 0.11)  # wall: thickness, width, half height (top at 0.22 m)
PARK_Z = -2.0                       # mocap bodies not used by a task are parked below the table

# arm position-actuator gains (N m / rad, N m s / rad)
ARM_KP = (4000.0, 4000.0, 2000.0, 2000.0, 600.0, 600.0, 300.0)
ARM_KV = (150.0, 150.0, 80.0, 80.0, 25.0, 25.0, 12.0)
ARM_ARMATURE = (0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05)
GRIP_KP, GRIP_KV, GRIP_FORCE = 1500.0, 20.0, 25.0

# collision groups: arm geoms do not collide with each other, everything else does.
WORLD_BITS = (1, 1)   # contype, conaffinity
ARM_BITS = (2, 1)


def _look_at_quat(pos, target, up=(0.0, 0.0, 1.0)):
    """MuJoCo camera quaternion (wxyz): camera -z looks at target, +y roughly up."""
    pos, target, up = (np.asarray(v, float) for v in (pos, target, up))
    fwd = target - pos
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, fwd)
    R = np.stack([right, cam_up, -fwd], axis=1)
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, R.reshape(9))
    return q


class ArmSim:
    """Table-top scene around the arm7 URDF. Deterministic given (task, seed)."""

    def __init__(self, urdf: str | None = None, camera_width: int = 128, camera_height: int = 128,
                 camera_pos=(1.0, 0.0, 0.85), camera_target=(0.47, 0.0, 0.0),
                 camera_fovy: float = 45.0, timestep: float = 0.002, shadows: bool = False):
        self.urdf = urdf or urdf_string()
        self.limits = joint_limits(self.urdf)
        home = home_pose(self.urdf)
        self.home_q = np.array([home.get(j, 0.0) for j in ARM_JOINTS])
        self.lower = np.array([self.limits[j]['lower'] for j in ARM_JOINTS])
        self.upper = np.array([self.limits[j]['upper'] for j in ARM_JOINTS])
        self.vel_limits = np.array([self.limits[j]['velocity'] for j in ARM_JOINTS])
        self.width, self.height = int(camera_width), int(camera_height)
        self.fovy = float(camera_fovy)
        self.shadows = shadows
        self.model = self._build(timestep, camera_pos, camera_target)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._arm_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        self._arm_dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in ARM_JOINTS])
        self._finger_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in FINGER_JOINTS])
        self._finger_dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in FINGER_JOINTS])
        self._arm_act = np.array([m.actuator(f'act_{j}').id for j in ARM_JOINTS])
        self._grip_act = m.actuator('act_gripper').id
        self._tcp = m.body('tool0').id
        self._cam = m.camera('scene_cam').id
        self._obj_body = {s: m.body(s).id for s in OBJECT_SLOTS}
        self._obj_qadr = {s: m.jnt_qposadr[m.body(s).jntadr[0]] for s in OBJECT_SLOTS}
        self._obj_geom = {s: m.geom(s + '_geom').id for s in OBJECT_SLOTS}
        self._pad_mocap = {s: m.body_mocapid[m.body(s).id] for s in PAD_SLOTS}
        self._pad_geom = {s: m.geom(s + '_geom').id for s in PAD_SLOTS}
        self._target_mocap = m.body_mocapid[m.body('target').id]
        self._obstacle_mocap = m.body_mocapid[m.body('obstacle').id]
        self._obstacle_geom = m.geom('obstacle_geom').id
        arm_bodies = {m.body(n).id for n in ('link_1', 'link_2', 'link_3', 'link_4', 'link_5',
                                             'link_6', 'link_7', 'hand', 'finger_left',
                                             'finger_right', 'tool0')}
        self._arm_geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in arm_bodies])
        self._finger_geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in
                                       (m.body('finger_left').id, m.body('finger_right').id)])
        self.kin = Kinematics(m)
        self._renderer = None
        self._depth_renderer = None
        self.task = None
        self.episode = None
        self.seed = None
        self.obstacle_contacts = 0
        self._q_target = self.home_q.copy()
        self._g_target = 0.0
        self.reset()

    # ------------------------------------------------------------------ model construction
    def _build(self, timestep, camera_pos, camera_target) -> mujoco.MjModel:
        spec = mujoco.MjSpec.from_string(self.urdf)
        spec.compiler.fusestatic = False
        spec.compiler.discardvisual = False  # keep the visual-only markers (pads, target)
        spec.modelname = 'arm7_scene'
        opt = spec.option
        opt.timestep = timestep
        opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        opt.impratio = 10.0
        spec.visual.global_.offwidth = max(640, self.width)
        spec.visual.global_.offheight = max(480, self.height)
        spec.visual.quality.shadowsize = 1024 if self.shadows else 0

        arm_rgba = {'base_link': (0.15, 0.15, 0.17, 1), 'link_7': (0.15, 0.15, 0.17, 1),
                    'hand': (0.15, 0.15, 0.17, 1), 'finger_left': (0.4, 0.4, 0.42, 1),
                    'finger_right': (0.4, 0.4, 0.42, 1)}
        arm_body_names = ('base_link', 'link_1', 'link_2', 'link_3', 'link_4', 'link_5', 'link_6',
                          'link_7', 'hand', 'finger_left', 'finger_right', 'tool0')
        for body in spec.bodies:
            if body.name not in arm_body_names:
                continue
            if body.name != 'base_link':
                body.gravcomp = 1.0  # gravity-compensated arm (as a real torque-controlled arm)
            for g in body.geoms:
                g.contype, g.conaffinity = ARM_BITS
                g.rgba = arm_rgba.get(body.name, (0.9, 0.9, 0.9, 1))
                if body.name.startswith('finger'):
                    g.friction = (1.5, 0.01, 0.001)
                    g.condim = 4
                    g.solref = (0.005, 1.0)
        for j, arm in zip(ARM_JOINTS, ARM_ARMATURE):
            spec.joint(j).armature = arm
        for j in FINGER_JOINTS:
            spec.joint(j).armature = 0.01

        wb = spec.worldbody
        # lights
        wb.add_light(pos=(0.5, -0.6, 1.6), dir=(-0.1, 0.4, -1.0), diffuse=(0.7, 0.7, 0.7),
                     specular=(0.2, 0.2, 0.2), castshadow=self.shadows)
        wb.add_light(pos=(1.5, 0.5, 1.2), dir=(-1.0, -0.3, -0.8), diffuse=(0.35, 0.35, 0.35),
                     specular=(0.0, 0.0, 0.0), castshadow=False)
        spec.visual.headlight.ambient = (0.3, 0.3, 0.3)
        # table (top surface at z = 0, the arm's mounting plane) and a floor
        wb.add_geom(name='table', type=mujoco.mjtGeom.mjGEOM_BOX, size=(0.55, 0.6, 0.02),
                    pos=(0.35, 0.0, -0.02), rgba=(0.55, 0.42, 0.30, 1.0),
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
        wb.add_camera(name='scene_cam', pos=camera_pos,
                      quat=_look_at_quat(camera_pos, camera_target), fovy=self.fovy)
        # actuators
        for j, kp, kv in zip(ARM_JOINTS, ARM_KP, ARM_KV):
            a = spec.add_actuator(name=f'act_{j}', target=j, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            a.set_to_position(kp=kp, kv=kv)
            eff = self.limits[j]['effort']
            a.forcelimited = True
            a.forcerange = (-eff, eff)
            a.ctrllimited = True
            a.ctrlrange = (self.limits[j]['lower'], self.limits[j]['upper'])
        a = spec.add_actuator(name='act_gripper', target='finger_left_joint',
                              trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.set_to_position(kp=GRIP_KP, kv=GRIP_KV)
        a.forcelimited = True
        a.forcerange = (-GRIP_FORCE, GRIP_FORCE)
        a.ctrllimited = True
        a.ctrlrange = (0.0, FINGER_OPEN)
        return spec.compile()

    # ------------------------------------------------------------------ episode control
    def reset(self, task=None, seed: int = 0):
        """Reset to a task's seeded scene (or an empty scene with the arm at home if task is None).

        Returns the episode description (see ``tasks.Episode``).
        """
        from .tasks import Episode, get_task
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self.seed = int(seed)
        if task is None:
            self.task = None
            ep = Episode(task='none', seed=self.seed)
        else:
            self.task = get_task(task)
            ep = self.task.sample(self.seed)
        self.episode = ep
        # arm
        q0 = self.home_q if ep.start_q is None else np.asarray(ep.start_q, float)
        d.qpos[self._arm_qadr] = q0
        g0 = float(ep.start_gripper)
        d.qpos[self._finger_qadr] = FINGER_OPEN * (1.0 - g0)
        self._q_target = q0.copy()
        self._g_target = g0
        d.ctrl[self._arm_act] = q0
        d.ctrl[self._grip_act] = FINGER_OPEN * (1.0 - g0)
        # objects: all slots get a pose and colour; unused ones go to the edge of the table
        for i, slot in enumerate(OBJECT_SLOTS):
            spec_o = ep.objects.get(slot)
            if spec_o is None:
                pos = (-0.1 + 0.06 * i, -0.5, OBJECT_HALF_HEIGHT[OBJECT_SHAPE[slot]])
                yaw, color = 0.0, 'grey'
            else:
                pos, yaw, color = spec_o['pos'], spec_o.get('yaw', 0.0), spec_o['color']
            a = self._obj_qadr[slot]
            d.qpos[a:a + 3] = pos
            d.qpos[a + 3:a + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
            m.geom_rgba[self._obj_geom[slot]] = COLORS.get(color, (0.6, 0.6, 0.6, 1.0))
        for slot in PAD_SLOTS:
            p = ep.pads.get(slot)
            mid = self._pad_mocap[slot]
            if p is None:
                d.mocap_pos[mid] = (0.0, 0.0, PARK_Z)
            else:
                d.mocap_pos[mid] = (p['pos'][0], p['pos'][1], PAD_HALF[2])
                m.geom_rgba[self._pad_geom[slot]] = COLORS[p['color']]
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
    def set_joint_targets(self, q) -> bool:
        """Command the 7 arm joint positions (rad). Clamps to the URDF limits.

        Returns True if any value was clamped. Raises ValueError (and keeps holding the previous
        targets) for a wrong length or non-finite values.
        """
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.shape[0] != 7:
            raise ValueError(f'expected 7 joint targets, got {q.shape[0]}')
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
        self.data.ctrl[self._grip_act] = FINGER_OPEN * (1.0 - gc)
        return gc != g

    def set_finger_position(self, pos_m: float) -> bool:
        """Command finger_left_joint directly in metres (ros2_control gripper_controller units:
        0.04 open .. 0 closed). Returns True if clamped."""
        pos_m = float(pos_m)
        if not np.isfinite(pos_m):
            raise ValueError('finger position must be finite')
        return self.set_gripper(1.0 - pos_m / FINGER_OPEN) or not (0.0 <= pos_m <= FINGER_OPEN)

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

    joint_names = ARM_JOINTS + FINGER_JOINTS

    def joint_state(self):
        """(names, positions, velocities) of all 9 joints, in URDF order (for /joint_states)."""
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
        """Measured gripper closure in [0, 1] from the left finger (0 open, 1 closed)."""
        return float(np.clip(1.0 - self.data.qpos[self._finger_qadr[0]] / FINGER_OPEN, 0.0, 1.0))

    def finger_positions(self) -> np.ndarray:
        return self.data.qpos[self._finger_qadr].copy()

    def state(self) -> np.ndarray:
        """8-vector: 7 joint positions (rad) + gripper state (0..1)."""
        return np.concatenate([self.joint_positions(), [self.gripper_state()]])

    def tool_pose(self):
        """TCP (tool0) pose in the base frame: (xyz (3,), quat xyzw (4,))."""
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
    def _get_renderer(self, depth=False):
        if depth:
            if self._depth_renderer is None:
                self._depth_renderer = mujoco.Renderer(self.model, self.height, self.width)
                self._depth_renderer.enable_depth_rendering()
            return self._depth_renderer
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
        return self._renderer

    def render(self) -> np.ndarray:
        """RGB image (H, W, 3) uint8 from the fixed scene camera."""
        r = self._get_renderer()
        r.update_scene(self.data, camera=self._cam)
        return r.render().copy()

    def render_depth(self) -> np.ndarray:
        """Depth image (H, W) float32, metres along the optical axis."""
        r = self._get_renderer(depth=True)
        r.update_scene(self.data, camera=self._cam)
        return r.render().astype(np.float32)

    def camera_info(self) -> dict:
        """Pinhole intrinsics (ROS convention: pixel centres at integer coordinates) and
        extrinsics of the optical frame (x right, y down, z forward) in the base frame."""
        fy = 0.5 * self.height / np.tan(np.deg2rad(self.fovy) / 2)
        fx = fy
        cx, cy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        pos = self.data.cam_xpos[self._cam].copy()
        R_mj = self.data.cam_xmat[self._cam].reshape(3, 3)
        R_opt = R_mj @ np.diag([1.0, -1.0, -1.0])
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R_opt, pos
        return {'width': self.width, 'height': self.height, 'K': K, 'fx': fx, 'fy': fy,
                'cx': cx, 'cy': cy, 'fovy_deg': self.fovy, 'distortion': np.zeros(5),
                'T_base_camera': T, 'position': pos, 'quat': mat_to_quat(R_opt),
                'frame_id': 'scene_camera_optical_frame'}

    def pixel_to_base(self, u: float, v: float, depth: float) -> np.ndarray:
        """Back-project pixel (u, v) with optical-axis depth (m) to a base-frame point."""
        ci = self.camera_info()
        p_cam = np.array([(u - ci['cx']) / ci['fx'] * depth, (v - ci['cy']) / ci['fy'] * depth,
                          depth])
        T = ci['T_base_camera']
        return T[:3, :3] @ p_cam + T[:3, 3]

    def base_to_pixel(self, p) -> np.ndarray:
        ci = self.camera_info()
        T = ci['T_base_camera']
        pc = T[:3, :3].T @ (np.asarray(p, float) - T[:3, 3])
        return np.array([ci['fx'] * pc[0] / pc[2] + ci['cx'], ci['fy'] * pc[1] / pc[2] + ci['cy']])

    def close(self):
        for r in (self._renderer, self._depth_renderer):
            if r is not None:
                r.close()
        self._renderer = self._depth_renderer = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
