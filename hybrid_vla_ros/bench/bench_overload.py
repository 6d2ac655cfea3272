"""The ROS graph under CPU overload: ``--hogs`` extra CPU-bound processes compete for the cores
while ``hybrid-vla eval --ros`` runs its episodes (the same evaluation, :func:`evaluate_ros`).

Beside the evaluation's own figures (success, per-level rates and deadline misses from
``/diagnostics``, joint state -> chunk and observation -> command latencies) an independent
monitor in this process records every controller command with its DDS source timestamp and
checks it against the URDF: position limits, and the executor's velocity budget between
consecutive commands (``velocity_scale`` 0.9 x URDF velocity x at most 2 controller periods),
where a step above the budget is allowed only as one of the executor's restarts from the
measured position (its ``seeds`` counter, the rule of ``test/test_graph_faults.py``);
it also reads the executor's counters of chunks rejected as stale / malformed and of ticks
held. Success carries its Wilson 95% interval. The last line is the JSON.

    python hybrid_vla_ros/bench/bench_overload.py --hogs 2 --episodes 20
"""
import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
from hybrid_vla_ros.evaluation.stats import format_rate  # noqa: E402
from hybrid_vla_ros.robot import DEFAULT_ROBOT  # noqa: E402


class CommandMonitor:
    """Every arm and gripper command of the graph, with its publish time (DDS source stamp),
    and the executor's diagnostics counters."""

    def __init__(self, domain_id: int):
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Float64MultiArray
        self.arm, self.grip, self.executor_values = [], [], {}
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('overload_monitor', context=self.context)
        qos = QoSProfile(depth=10000, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(
            Float64MultiArray, '/forward_position_controller/commands',
            lambda m, i: self.arm.append((i['source_timestamp'] * 1e-9, np.array(m.data))), qos)
        self.node.create_subscription(
            Float64MultiArray, '/gripper_controller/commands',
            lambda m, i: self.grip.append((i['source_timestamp'] * 1e-9, m.data[0])), qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _on_diag(self, msg):
        for st in msg.status:
            if st.name == 'chunk_executor':
                self.executor_values = {kv.key: kv.value for kv in st.values}

    def _spin(self):
        while self.running:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        import rclpy
        self.running = False
        self.thread.join(5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def check_commands(arm, grip, limits, joints, gripper_joint, scale=0.9, max_dt=0.02):
    """Counts of commands outside the position limits and of steps above the velocity budget."""
    lower = np.array([limits[j]['lower'] for j in joints])
    upper = np.array([limits[j]['upper'] for j in joints])
    budget = scale * np.array([limits[j]['velocity'] for j in joints]) * max_dt + 1e-9
    q = np.array([c for _, c in arm]) if arm else np.zeros((0, len(joints)))
    out_pos = int(np.sum(np.any((q < lower - 1e-9) | (q > upper + 1e-9), axis=1)))
    steps = np.abs(np.diff(q, axis=0))
    # counted as they are; the evaluation's sim reset between episodes teleports the arm home
    # and the executor restarts from the measured pose, so one such step per episode is expected
    fast = int(np.sum(np.any(steps > budget, axis=1)))
    g = np.array([c for _, c in grip])
    gl = limits[gripper_joint]
    g_out = int(np.sum((g < gl['lower'] - 1e-12) | (g > gl['upper'] + 1e-12)))
    g_fast = int(np.sum(np.abs(np.diff(g)) > scale * gl['velocity'] * max_dt + 1e-12))
    return {'arm_commands': len(q), 'outside_position_limits': out_pos,
            'steps_above_velocity_budget': fast, 'gripper_commands': len(g),
            'gripper_outside_limits': g_out, 'gripper_steps_above_velocity_budget': g_fast}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--hogs', type=int, default=2, help='extra CPU-bound processes')
    ap.add_argument('--episodes', type=int, default=20)
    ap.add_argument('--task', default='pick_place')
    ap.add_argument('--seed', type=int, default=EVAL_SEED_START)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    a = ap.parse_args()
    from hybrid_vla_ros.evaluation.ros_eval import evaluate_ros
    from hybrid_vla_ros.robot import load_robot
    from hybrid_vla_ros.sim.description import joint_limits
    robot = load_robot(a.robot)

    domain = int(os.environ.get('ROS_DOMAIN_ID') or random.SystemRandom().randint(1, 101))
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    hogs = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(a.hogs)]
    monitor = CommandMonitor(domain)
    try:
        args = argparse.Namespace(task=a.task, episodes=a.episodes, seed=a.seed,
                                  expert='router', instructions=None, ros_overrides={},
                                  robot=robot.config_file, checkpoints=None)
        result = evaluate_ros(args)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        time.sleep(1.0)
        monitor.close()
    limits = joint_limits(robot.urdf)
    checks = check_commands(monitor.arm, monitor.grip, limits, list(robot.joint_names),
                            robot.gripper_joint)
    # a step above the budget is a restart from the measured position (the executor's `seeds`
    # counter: its first command, one after each episode reset, each re-sync) or a real excess;
    # test_graph_faults.py applies the same rule
    restarts = int(monitor.executor_values.get('seeds', 0))
    checks['restarts_from_measured'] = restarts
    checks['steps_above_budget_beyond_restarts'] = max(
        0, checks['steps_above_velocity_budget'] - restarts)
    # success, its episode count and interval come with the evaluation's summary
    result.update({'hogs': a.hogs, 'commands': checks,
                   'executor_counters': monitor.executor_values})
    print(f"{a.hogs} CPU hogs, {a.task}: success {format_rate(result)}, "
          f"load {result['loadavg_1min']}")
    for level, r in result['rates'].items():
        print(f'  {level}: {r}')
    print(f"  js->chunk {result['latency_ms']}, obs->command {result['obs_to_command_ms']}")
    print(f'  commands: {checks}')
    print(f'  executor: {monitor.executor_values}')
    print(json.dumps(result))


if __name__ == '__main__':
    main()
