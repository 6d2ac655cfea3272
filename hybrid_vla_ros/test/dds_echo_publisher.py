"""Publishes fully populated hybrid_vla_msgs (and a sensor_msgs/Image) for the DDS tests.

Also the single source of the sample messages the tests compare against
(:func:`sample_messages`); float32 values are exactly representable so equality is exact.

Run as a script (own OS process)::

    python dds_echo_publisher.py [--timeout 30] [--rate 10]

QoS as the design names it: ``subgoals`` reliable + transient local, depth 1, published ONCE
(a late subscriber must still get it); every other topic reliable (depth 10), republished at
``--rate`` Hz. Prints ``READY`` once everything is published the first time, then runs until
stdin gets ``stop`` / EOF, or ``--timeout`` seconds pass.
"""
import argparse
import sys
import threading
import time

QOS_TRANSIENT_LOCAL = 'transient_local'
QOS_RELIABLE = 'reliable'


def sample_messages():
    """``{name: (topic, message, qos kind)}`` with every field set, arrays non-empty."""
    from builtin_interfaces.msg import Duration, Time
    from geometry_msgs.msg import Point, Pose, Quaternion
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from hybrid_vla_msgs.msg import (
        ActionChunk,
        ExpertSelection,
        SubGoal,
        SubGoalList,
        Waypoint,
        WaypointArray,
    )

    def header(frame='base_link', sec=1700000000, nanosec=123456789):
        return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame)

    def pose(i):
        return Pose(position=Point(x=0.1 * i, y=-0.2 * i, z=0.3 + i),
                    orientation=Quaternion(x=0.5, y=-0.5, z=0.5, w=0.5))

    subgoals = SubGoalList(
        header=header(),
        instruction='put the red cube on the green pad, gently (déjà vu)',
        active_index=1,
        subgoals=[
            SubGoal(id=f'sg{i}', skill=skill, object=obj, description=f'step {i}: {skill}',
                    target_pose=pose(i), confidence=conf)
            for i, (skill, obj, conf) in enumerate([
                ('move_above', 'red_cube', 0.875), ('grasp', 'red_cube', 0.5),
                ('place', 'green_pad', 0.25)])
        ])
    waypoints = WaypointArray(
        header=header(nanosec=5),
        subgoal_id='sg1',
        waypoints=[
            Waypoint(pose=pose(i), gripper=g,
                     time_from_start=Duration(sec=i, nanosec=250000000 * i))
            for i, g in enumerate([0.0, 0.5, 1.0, 0.75])
        ])
    horizon, joints = 4, [f'joint{j}' for j in range(1, 8)]
    chunk = ActionChunk(
        header=header(frame='', nanosec=42),
        expert='coarse_to_fine',
        joint_names=joints,
        horizon=horizon,
        step=Duration(sec=0, nanosec=50000000),
        positions=[0.01 * k - 0.1 for k in range(horizon * len(joints))],
        gripper=[0.0, 0.25, 0.5, 1.0],
        coarse=[0.02 * k for k in range(horizon * len(joints))],
        refine_steps=3,
        inference_ms=1.625,
        observation_stamp=Time(sec=1699999999, nanosec=999000000))
    selection = ExpertSelection(
        header=header(nanosec=7),
        expert='flow',
        candidates=['token', 'diffusion', 'flow', 'coarse_to_fine'],
        probabilities=[0.125, 0.25, 0.5, 0.125],
        subgoal_id='sg1')
    height, width, step = 3, 4, 16  # rgb8 rows of 12 bytes padded to 16
    image = Image(header=header(frame='camera'), height=height, width=width, encoding='rgb8',
                  is_bigendian=0, step=step, data=bytes((7 * k) % 256 for k in range(48)))
    return {
        'subgoals': ('subgoals', subgoals, QOS_TRANSIENT_LOCAL),
        'waypoints': ('waypoints', waypoints, QOS_RELIABLE),
        'action_chunk': ('action_chunk', chunk, QOS_RELIABLE),
        'expert': ('expert', selection, QOS_RELIABLE),
        'image': ('camera/image_raw', image, QOS_RELIABLE),
    }


def qos_profile(kind):
    """The QoSProfile of a qos kind (the design's: subgoals latched depth 1, others reliable)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if kind == QOS_TRANSIENT_LOCAL:
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--timeout', type=float, default=30.0)
    parser.add_argument('--rate', type=float, default=10.0)
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    stop = threading.Event()

    def watch_stdin():
        for line in sys.stdin:
            if line.strip() == 'stop':
                break
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    rclpy.init()
    node = None
    try:
        node = Node('dds_echo_publisher')
        samples = sample_messages()
        publishers = {}
        for name, (topic, msg, kind) in samples.items():
            publishers[name] = node.create_publisher(type(msg), topic, qos_profile(kind))
        for name, (_, msg, _) in samples.items():
            publishers[name].publish(msg)
        print('READY', flush=True)

        def republish():
            for name, (_, msg, kind) in samples.items():
                if kind != QOS_TRANSIENT_LOCAL:  # the latched one is published once only
                    publishers[name].publish(msg)

        node.create_timer(1.0 / args.rate, republish)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        deadline = time.monotonic() + args.timeout
        while not stop.is_set() and time.monotonic() < deadline and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
