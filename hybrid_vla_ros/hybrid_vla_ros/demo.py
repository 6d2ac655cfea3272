"""``hybrid-vla demo``: what `make demo` runs.

Today: two OS processes exchange the stack's custom interfaces over real DDS. A planner-side
process publishes a SubGoalList (transient local) and an ActionChunk; this process receives and
prints them. It grows into the full graph demo as the nodes land.
"""
import argparse
import os
import signal
import subprocess
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--timeout', type=float, default=30.0,
                        help='seconds to wait for the messages (default 30)')


def _publisher_main() -> None:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from hybrid_vla_msgs.msg import ActionChunk, SubGoal, SubGoalList

    rclpy.init()
    node = rclpy.create_node('demo_planner')
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_plan = node.create_publisher(SubGoalList, 'subgoals', latched)
    pub_chunk = node.create_publisher(ActionChunk, 'action_chunk', 10)
    plan = SubGoalList(instruction='put the red cube on the blue pad')
    for i, (skill, obj) in enumerate([('move_above', 'red_cube'), ('grasp', 'red_cube'),
                                      ('place', 'blue_pad'), ('release', 'red_cube')]):
        sg = SubGoal(id=f'sg{i}', skill=skill, object=obj, description=f'{skill} {obj}',
                     confidence=1.0)
        sg.target_pose.position.z = 0.1 * (i + 1)
        plan.subgoals.append(sg)
    plan.header.stamp = node.get_clock().now().to_msg()
    pub_plan.publish(plan)
    chunk = ActionChunk(expert='coarse_to_fine', horizon=2,
                        joint_names=[f'joint_{j}' for j in range(1, 8)],
                        positions=[0.01 * k for k in range(14)], gripper=[0.0, 1.0],
                        refine_steps=5)
    try:
        deadline = time.monotonic() + 30.0
        while rclpy.ok() and time.monotonic() < deadline:
            chunk.header.stamp = node.get_clock().now().to_msg()
            pub_chunk.publish(chunk)
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def run(args) -> int:
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from hybrid_vla_msgs.msg import ActionChunk, SubGoalList

    child = subprocess.Popen([sys.executable, '-c',
                              'from hybrid_vla_ros.demo import _publisher_main; '
                              '_publisher_main()'], env=os.environ.copy())
    got = {}
    rclpy.init()
    node = rclpy.create_node('demo_listener')
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(SubGoalList, 'subgoals', lambda m: got.setdefault('plan', m),
                             latched)
    node.create_subscription(ActionChunk, 'action_chunk', lambda m: got.setdefault('chunk', m),
                             10)
    try:
        deadline = time.monotonic() + args.timeout
        while len(got) < 2 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=10)
        node.destroy_node()
        rclpy.try_shutdown()
    if len(got) < 2:
        print(f'demo: FAILED, received only {sorted(got)} within {args.timeout} s')
        return 1
    plan, chunk = got['plan'], got['chunk']
    print(f"instruction: {plan.instruction!r}")
    for i, sg in enumerate(plan.subgoals):
        print(f'  sub-goal {i}: {sg.skill:<10} {sg.object:<9} z={sg.target_pose.position.z:.2f}')
    print(f'action chunk from expert {chunk.expert!r}: horizon {chunk.horizon}, '
          f'{len(chunk.joint_names)} joints, {len(chunk.positions)} positions, '
          f'refine_steps {chunk.refine_steps}')
    print('demo: OK, SubGoalList and ActionChunk crossed DDS between two processes')
    return 0
