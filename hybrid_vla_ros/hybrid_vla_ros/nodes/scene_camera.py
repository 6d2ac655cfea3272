"""``scene_camera``: the MuJoCo task scene and camera for an arm someone else owns.

The node of ``hardware:=mock`` (ros2_control mock_components; real hardware alike): the same
scene, camera and ground truth as ``sim_arm``
(:mod:`~hybrid_vla_ros.nodes.camera_publisher`), posed by the ``/joint_states`` of the arm
that ros2_control owns. It neither steps physics nor owns the arm: it publishes no
``/joint_states`` and no commands, and subscribes to none. It subscribes to ``/joint_states``
(sensor-data QoS), validates each message (:class:`~hybrid_vla_ros.sim.scene_mirror.SceneMirror`:
sizes, duplicate/unknown/missing joints, NaN/Inf, far out of limits -> a throttled error, the
last good state is kept), poses the arm (and fingers) from the latest good state with
``mj_forward`` at ``camera_rate`` and publishes ``camera/*`` (and ``ground_truth/*`` when
enabled) stamped with that joint state's stamp. A frame is published only for a joint state
newer than the last frame's, so a silent arm gives a silent (stale) camera, never a frame that
claims to be new. The objects of the task scene stay at their reset poses (not simulated);
``~/set_task`` and ``~/reset`` re-sample them and leave the arm where the joint states put it.
"""
import time

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import JointState

from hybrid_vla_ros.nodes.camera_publisher import ScenePublisherNode
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import SENSOR
from hybrid_vla_ros.sim.scene_mirror import JointStateError, SceneMirror


class SceneCameraNode(ScenePublisherNode):
    """The scene camera of an arm owned by ros2_control (mock_components or real hardware),
    posed by its ``/joint_states`` (:class:`SceneMirror`)."""

    mode = 'mirror'

    def __init__(self):
        super().__init__('scene_camera')
        p = self.declare_parameter
        js_topic = self.robot.config.joint_states_topic
        gripper = self.robot.gripper_joint
        extra = list(p('extra_joints', [''], _d(
            'joints that may appear in joint states and are ignored (other devices); any '
            'other joint the model does not have rejects the message')).value)
        tol = p('limit_tolerance', 0.1, _d('reject positions beyond a URDF limit by more than '
                                           'this (rad or m; negative = no check)')).value
        self.mirror = SceneMirror(self.sim, self.joint_names, gripper,
                                  [j for j in extra if j], tol)
        self._frame_seq = 0      # mirror.seq of the last published frame
        self._js_time = None     # monotonic time of the last good joint state
        self.create_subscription(JointState, js_topic, self.on_joint_state, SENSOR)
        self.get_logger().info(
            f'scene_camera: posed by {js_topic} (no physics, no commands), task '
            f'{self.task!r} seed {self.seed}, camera {self.camera_rate:g} Hz')
        self.start()

    def on_joint_state(self, msg: JointState) -> None:
        stamp = msg.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:  # an unstamped publisher: time of arrival
            stamp = self.get_clock().now().to_msg()
        try:
            self.mirror.update(msg.name, msg.position, stamp)
        except JointStateError as e:
            self.get_logger().error(f'joint_states ignored: {e}; keeping the last good state',
                                    throttle_duration_sec=1.0)
            return
        self._js_time = time.monotonic()

    def frame_stamp(self):
        if self.mirror.seq == self._frame_seq:  # no joint state since the last frame
            if not self.mirror.has_state:
                self.get_logger().warning('camera waiting for a valid joint state',
                                          throttle_duration_sec=5.0)
            return None
        self._frame_seq = self.mirror.seq
        self.mirror.apply()
        return self.mirror.stamp  # the image shows the arm at this joint state

    def reset_scene(self, task, seed: int):
        # new objects; the arm stays where its joint states say
        return self.mirror.reset(task, seed)

    def on_diagnostics(self) -> None:
        m = self.mirror
        st = DiagnosticStatus(name=f'{self.get_name()}: scene mirror', hardware_id='mujoco')
        age = None if self._js_time is None else time.monotonic() - self._js_time
        if age is None:
            st.level, st.message = DiagnosticStatus.WARN, 'no valid joint state yet'
        elif age > 1.0:
            st.level, st.message = DiagnosticStatus.WARN, f'no valid joint state for {age:.1f} s'
        else:
            st.level, st.message = DiagnosticStatus.OK, f'mirroring joint states ({age:.3f} s old)'
        st.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('joint_states_accepted', m.seq), ('joint_states_rejected', m.rejected),
            ('last_rejection', m.last_error), ('task', self.task), ('seed', self.seed),
            ('camera_frames', self.camera.frames if self.camera else -1),
            ('camera_skipped', self.camera.skipped if self.camera else 0))]
        self.publish_diagnostics([st])


def main(args=None):
    run_node(SceneCameraNode, args)


if __name__ == '__main__':
    main()
