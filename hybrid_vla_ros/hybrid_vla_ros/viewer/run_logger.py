"""What a run looks like in rerun: one logger for bags, datasets and the live graph (ROS-free).

Entities (``world`` is the robot's base frame)::

    world/robot                    the arm from its URDF: its collision shapes (cylinders,
                                   spheres, boxes) posed by forward kinematics, the TCP
    world/camera/image             the scene camera, a pinhole at the robot config's extrinsics:
                                   every 3-D entity below is also drawn into the image
    world/objects                  the scene's objects (the sim's ground truth, when recorded)
    world/plan/subgoals            the strategic level's sub-goal targets (active one larger)
    world/plan/waypoints           the tactical level's waypoints
    world/plan/predicted_path      the motor level's predicted TCP path
    world/motor/refined, /coarse   the TCP path of the last action chunk, refined vs coarse
    text/instruction, text/plan    the instruction and the sub-goal list
    text/expert                    the expert the router chose, with its probabilities
    plots/...                      per-level rates and latencies (``/diagnostics``), chunk
                                   inference time, router probabilities, state/action values

Every message is placed on the ``ros_time`` timeline at its header stamp (log time when it has
none); a dataset uses ``frame`` and ``time`` (seconds in the episode) and ``episode``.
"""
from typing import Dict, Optional, Sequence

import numpy as np

from hybrid_vla_ros.robot.model import DEFAULT_ROBOT

APP_ID = 'hybrid_vla_ros'
POSE_PERIOD_NS = 40_000_000  # the arm is logged at up to 25 Hz
# Diagnostics values plotted per node (the rest of /diagnostics is counters)
DIAG_KEYS = ('rate_hz', 'inference_ms_p50', 'inference_ms_p99', 'compute_ms_p50',
             'obs_to_command_p50_ms', 'obs_to_command_p99_ms', 'last_plan_ms', 'sim_time_s')
COLORS = {'subgoal': (255, 170, 0), 'active': (255, 60, 60), 'waypoint': (0, 200, 255),
          'path': (120, 255, 120), 'refined': (255, 255, 255), 'coarse': (255, 0, 255),
          'robot': (200, 200, 210), 'tcp': (255, 220, 0)}
# colour words in object names (the sim's markers carry them as text)
NAMED = {'red': (220, 40, 40), 'green': (40, 180, 60), 'blue': (40, 90, 230),
         'yellow': (235, 210, 40), 'purple': (160, 60, 200), 'orange': (240, 140, 30),
         'white': (235, 235, 235), 'black': (40, 40, 40), 'gray': (128, 128, 128)}


def blueprint():
    """The default layout: 3-D scene | camera, plots and text."""
    import rerun.blueprint as rrb
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Spatial3DView(origin='world', name='robot'),
            rrb.Vertical(
                # the plan and the objects are 3-D: included here, rerun projects them
                # through the camera's pinhole into the image
                rrb.Spatial2DView(origin='world/camera/image', name='camera',
                                  contents=['$origin/**', '/world/plan/**',
                                            '/world/motor/**', '/world/robot/tcp']),
                rrb.TimeSeriesView(origin='plots', name='rates and latencies'),
                rrb.Horizontal(rrb.TextLogView(origin='text', name='instruction, expert'),
                               rrb.TextDocumentView(origin='text/plan', name='plan')),
                row_shares=[3, 2, 2]),
            column_shares=[3, 2]),
        collapse_panels=True)


class RunLogger:
    """Logs decoded ROS 2 messages (or dataset frames) of one robot into a rerun recording.

    :param robot: robot config name or YAML (URDF, joint names, camera extrinsics);
    :param recording: a ``rerun.RecordingStream`` (made, with a fixed id, when None).
    """

    def __init__(self, robot=DEFAULT_ROBOT, recording=None, recording_id: str = 'run'):
        import mujoco
        import rerun as rr

        from hybrid_vla_ros.robot import load_robot

        self.rr = rr
        self.robot_model = load_robot(robot)
        self.robot = self.robot_model.config_file  # what load_dataset_spec / load_robot take
        self.rec = recording or rr.RecordingStream(APP_ID, recording_id=recording_id)
        self.cfg = self.robot_model.config
        self.kin = self.robot_model.kinematics()
        self.model, self.data = self.kin.model, self.kin.data
        self._mj = mujoco
        self.qadr = {}
        for j in range(self.model.njnt):
            name = mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_JOINT, j)
            self.qadr[name] = int(self.model.jnt_qposadr[j])
        self.g_open = self.robot_model.gripper_open
        self.g_closed = self.robot_model.gripper_closed
        ext = self.robot_model.camera_extrinsics
        if ext is None:  # older YAMLs: the strategic planner's section
            ext = self.robot_model.section('strategic_planner').get('camera_extrinsics')
        self.extrinsics = None if ext is None else np.asarray(ext, float).reshape(-1).tolist()
        self._pinhole = None
        self._last_pose = None
        self._plan_text = ''
        self._static()

    # ------------------------------------------------------------------ setup
    def _static(self) -> None:
        rr = self.rr
        self.rec.send_blueprint(blueprint())
        self.rec.log('world', rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        if self.extrinsics is not None:
            T = np.asarray(self.extrinsics, float).reshape(4, 4)
            self.rec.log('world/camera', rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]),
                         static=True)

    def time_ns(self, ns: int) -> None:
        self.rec.set_time('ros_time', timestamp=np.datetime64(int(ns), 'ns'))

    def frame(self, episode: int, index: int, fps: float) -> None:
        self.rec.set_time('frame', sequence=int(index))
        self.rec.set_time('time', duration=index / float(fps))
        self.rec.set_time('episode', sequence=int(episode))

    # ------------------------------------------------------------------ robot
    def pose_arm(self, positions: Dict[str, float]) -> np.ndarray:
        """Log the arm at these joint positions; returns the TCP position (3,)."""
        rr = self.rr
        for name, value in positions.items():
            if name in self.qadr:
                self.data.qpos[self.qadr[name]] = value
        self._mj.mj_kinematics(self.model, self.data)
        xpos = self.data.xpos
        parent = self.model.body_parentid
        segs = [[xpos[parent[b]], xpos[b]] for b in range(2, self.model.nbody)]
        self.rec.log('world/robot/links', rr.LineStrips3D(segs, radii=0.004,
                                                          colors=(90, 90, 110)))
        self._log_geoms()
        tcp = xpos[self.kin.tcp_id].copy()
        self.rec.log('world/robot/tcp', rr.Points3D([tcp], radii=0.012, colors=COLORS['tcp']))
        return tcp

    def _log_geoms(self) -> None:
        """The URDF's collision shapes (MuJoCo geoms) at the current pose."""
        rr, m, d = self.rr, self.model, self.data
        quat = np.empty(4)
        shapes = {2: [], 5: [], 6: []}  # sphere, cylinder, box
        for g in range(m.ngeom):
            kind = int(m.geom_type[g])
            if kind in shapes:
                self._mj.mju_mat2Quat(quat, d.geom_xmat[g])
                shapes[kind].append((d.geom_xpos[g].copy(), quat[[1, 2, 3, 0]].copy(),
                                     m.geom_size[g].copy()))
        colour = COLORS['robot']
        if shapes[5]:
            c, q, sz = zip(*shapes[5])
            self.rec.log('world/robot/cylinders', rr.Cylinders3D(
                centers=c, quaternions=q, radii=[z[0] for z in sz],
                lengths=[2 * z[1] for z in sz], colors=colour, fill_mode='solid'))
        if shapes[2]:
            c, _, sz = zip(*shapes[2])
            self.rec.log('world/robot/spheres', rr.Ellipsoids3D(
                centers=c, half_sizes=[[z[0]] * 3 for z in sz], colors=(150, 150, 165),
                fill_mode='solid'))
        if shapes[6]:
            c, q, sz = zip(*shapes[6])
            self.rec.log('world/robot/boxes', rr.Boxes3D(
                centers=c, quaternions=q, half_sizes=[z[:3] for z in sz],
                colors=(60, 60, 70), fill_mode='solid'))

    def state_vector(self, state: Sequence[float], names: Sequence[str]) -> None:
        """An ``observation.state`` row (arm joints + gripper 0..1) -> the arm in 3-D."""
        pos = {}
        for n, v in zip(names, state):
            if n in self.cfg.joint_names:
                pos[n] = float(v)
            elif n == 'gripper':
                pos[self.cfg.gripper_joint] = self.g_open + (self.g_closed - self.g_open) * v
        self.pose_arm(pos)

    def joint_state(self, msg, stamp_ns: Optional[int] = None) -> None:
        # the arm at most every POSE_PERIOD_NS: /joint_states comes at the controller's rate
        if stamp_ns is not None and self._last_pose is not None and \
                0 <= stamp_ns - self._last_pose < POSE_PERIOD_NS:
            return
        self._last_pose = stamp_ns
        self.pose_arm(dict(zip(msg.name, msg.position)))

    def tcp_path(self, q_rows: np.ndarray) -> np.ndarray:
        """(N, 3) TCP positions of joint rows (N, J)."""
        return np.stack([self.kin.fk(np.asarray(q[:len(self.cfg.joint_names)], float))[0]
                         for q in q_rows])

    # ------------------------------------------------------------------ camera
    def camera_info(self, msg) -> None:
        key = (tuple(msg.k), msg.width, msg.height)
        if key == self._pinhole or not msg.width:
            return
        self._pinhole = key
        self.rec.log('world/camera/image', self.rr.Pinhole(
            image_from_camera=np.asarray(msg.k, float).reshape(3, 3),
            resolution=[msg.width, msg.height], camera_xyz=self.rr.ViewCoordinates.RDF),
            static=True)

    def image(self, rgb: np.ndarray) -> None:
        # JPEG: a tenth of the raw size, so long runs stay light for the (web) viewer
        self.rec.log('world/camera/image', self.rr.Image(rgb).compress(jpeg_quality=90))

    def image_msg(self, msg) -> None:
        from hybrid_vla_ros.image_bridge import imgmsg_to_cv2
        self.image(imgmsg_to_cv2(msg, 'rgb8'))

    # ------------------------------------------------------------------ levels
    def instruction(self, text: str) -> None:
        self.rec.log('text/instruction', self.rr.TextLog(text, level='INFO'))

    def subgoals(self, msg) -> None:
        rr = self.rr
        if msg.instruction and msg.instruction != self._plan_text:  # (the action's goal)
            self.instruction(msg.instruction)
        self._plan_text = msg.instruction
        pts = [[s.target_pose.position.x, s.target_pose.position.y, s.target_pose.position.z]
               for s in msg.subgoals]
        labels = [f'{i + 1}. {s.skill} {s.object}'.strip() for i, s in enumerate(msg.subgoals)]
        active = int(msg.active_index)
        colors = [COLORS['active'] if i == active else COLORS['subgoal']
                  for i in range(len(pts))]
        radii = [0.02 if i == active else 0.012 for i in range(len(pts))]
        self.rec.log('world/plan/subgoals', rr.Points3D(pts, labels=labels, colors=colors,
                                                        radii=radii) if pts else rr.Clear(
            recursive=False))
        lines = [f'**{msg.instruction or "(no plan)"}**', '']
        lines += [('→ ' if i == active else '  ') + f'{lab}: {s.description}'
                  for i, (lab, s) in enumerate(zip(labels, msg.subgoals))]
        self.rec.log('text/plan', rr.TextDocument('\n\n'.join(lines),
                                                  media_type=rr.MediaType.MARKDOWN))

    def waypoints(self, msg) -> None:
        rr = self.rr
        pts = [[w.pose.position.x, w.pose.position.y, w.pose.position.z]
               for w in msg.waypoints]
        if not pts:
            self.rec.log('world/plan/waypoints', rr.Clear(recursive=False))
            return
        self.rec.log('world/plan/waypoints', rr.Points3D(pts, radii=0.008,
                                                         colors=COLORS['waypoint']))
        self.rec.log('world/plan/waypoint_line', rr.LineStrips3D([pts], radii=0.003,
                                                                 colors=COLORS['waypoint']))

    def predicted_path(self, msg) -> None:
        pts = [[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in msg.poses]
        if pts:
            self.rec.log('world/plan/predicted_path', self.rr.LineStrips3D(
                [pts], radii=0.004, colors=COLORS['path']))

    def action_chunk(self, msg) -> None:
        rr = self.rr
        n, h = len(msg.joint_names), int(msg.horizon)
        if not n or h <= 0 or len(msg.positions) != n * h:
            return
        names = list(msg.joint_names)
        idx = [names.index(j) for j in self.cfg.joint_names if j in names]
        if len(idx) != len(self.cfg.joint_names):
            return
        q = np.asarray(msg.positions, float).reshape(h, n)[:, idx]
        self.rec.log('world/motor/refined', rr.LineStrips3D(
            [self.tcp_path(q)], radii=0.003, colors=COLORS['refined'],
            labels=[msg.expert]))
        if len(msg.coarse) == n * h:
            c = np.asarray(msg.coarse, float).reshape(h, n)[:, idx]
            self.rec.log('world/motor/coarse', rr.LineStrips3D(
                [self.tcp_path(c)], radii=0.003, colors=COLORS['coarse']))
        if np.isfinite(msg.inference_ms):
            self.rec.log('plots/motor_policy/chunk_inference_ms',
                         rr.Scalars(float(msg.inference_ms)))

    def expert(self, msg) -> None:
        rr = self.rr
        probs = ', '.join(f'{c} {p:.2f}' for c, p in zip(msg.candidates, msg.probabilities))
        self.rec.log('text/expert', rr.TextLog(f'expert {msg.expert} ({probs})',
                                               level='DEBUG'))
        for c, p in zip(msg.candidates, msg.probabilities):
            self.rec.log(f'plots/router/p_{c}', rr.Scalars(float(p)))

    def objects(self, msg) -> None:
        rr = self.rr
        cubes = [m for m in msg.markers if m.action == 0]
        if not cubes:
            return
        self.rec.log('world/objects', rr.Boxes3D(
            centers=[[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in cubes],
            half_sizes=[[m.scale.x / 2, m.scale.y / 2, m.scale.z / 2] for m in cubes],
            quaternions=[[m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
                          m.pose.orientation.w] for m in cubes],
            labels=[m.text or m.ns for m in cubes], fill_mode='solid',
            colors=[self._colour(m) for m in cubes]))

    @staticmethod
    def _colour(marker):
        for word in (marker.text or marker.ns).split():
            if word in NAMED:
                return NAMED[word]
        c = marker.color
        return (int(255 * c.r), int(255 * c.g), int(255 * c.b))

    def diagnostics(self, msg) -> None:
        for st in msg.status:
            node = st.name.split(':')[0].strip().replace(' ', '_') or 'node'
            for kv in st.values:
                if kv.key not in DIAG_KEYS:
                    continue
                try:
                    v = float(kv.value)
                except ValueError:
                    continue
                if np.isfinite(v):
                    self.rec.log(f'plots/{node}/{kv.key}', self.rr.Scalars(v))

    # ------------------------------------------------------------------ dispatch
    def message(self, topic: str, msg, stamp_ns: Optional[int] = None) -> bool:
        """Log one ROS message by its type; False when the type is not shown."""
        h = getattr(msg, 'header', None)
        if h is not None and (h.stamp.sec or h.stamp.nanosec):
            stamp_ns = h.stamp.sec * 1_000_000_000 + h.stamp.nanosec
        if stamp_ns is not None:
            self.time_ns(stamp_ns)
        kind = type(msg).__name__
        handler = {'JointState': self.joint_state, 'CameraInfo': self.camera_info,
                   'SubGoalList': self.subgoals, 'WaypointArray': self.waypoints,
                   'Path': self.predicted_path, 'ActionChunk': self.action_chunk,
                   'ExpertSelection': self.expert, 'DiagnosticArray': self.diagnostics}.get(kind)
        if kind == 'Image':
            if 'depth' in topic:
                return False
            handler = self.image_msg
        elif kind == 'String' and topic.rstrip('/').endswith('instruction'):
            handler = self.instruction
            msg = msg.data
        elif kind == 'MarkerArray' and 'ground_truth/objects' in topic:
            handler = self.objects
        if handler is None:
            return False
        if kind == 'JointState':
            self.joint_state(msg, stamp_ns)
        else:
            handler(msg)
        return True
