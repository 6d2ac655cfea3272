"""The client of ``test_two_hosts.py``: runs inside the *motor host's* network namespace.

Beside ``motor_policy``, ``chunk_executor`` and ``sim_arm`` (this namespace) it sees the
executor's commands and the arm's joint states locally, and reaches the planners (the other
namespace) only across the veth link: their ``subgoals``, ``waypoints``, ``/diagnostics`` and
the ``execute_instruction`` action. It runs one episode and cuts the link in the middle:

1. waits for the graph (motor + executor ``~/ready``, the planners' diagnostics, the action
   server: all three planners found across the link);
2. sends the instruction goal, waits until the first sub-goal is done and chunks flow;
3. takes the planner end of the link down (``ip -n NS link set dev DEV down``), waits until the
   executor's command has been constant for ``--hold-seconds`` s and 100 commands (the hold),
   then brings the link back up;
4. waits until the arm moves on (a new chunk, the arm away from the held pose), then for the
   goal's result (or ``--episode-timeout``; then the goal is canceled).

Every step waits on an event with a timeout, never on a fixed delay. What it saw goes to
``<out>.json`` (events, feedback, counters) and ``<out>.npz`` (commands, joint states, chunks,
waypoints with their arrival times); ``test_two_hosts.py`` asserts on them. Exit code 0 when all
steps ran (whatever the episode's outcome), 1 when a step timed out (``error`` in the JSON).

Times are wall-clock seconds (``time.time()``, the clock ROS stamps with on this machine).
"""
import argparse
import json
import subprocess
import sys
import time


def link_stats(dev: str) -> dict:
    """rx/tx bytes and packets of ``dev`` (in this process's network namespace)."""
    out = subprocess.run(['ip', '-s', '-j', 'link', 'show', 'dev', dev], check=True,
                         capture_output=True, text=True).stdout
    st = json.loads(out)[0]['stats64']
    return {'rx_bytes': st['rx']['bytes'], 'tx_bytes': st['tx']['bytes'],
            'rx_packets': st['rx']['packets'], 'tx_packets': st['tx']['packets']}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True, help='output prefix (.json and .npz are written)')
    ap.add_argument('--instruction', required=True)
    ap.add_argument('--link-ns', required=True, help='network namespace of the link end to cut')
    ap.add_argument('--link-dev', required=True, help='that end (a veth) in --link-ns')
    ap.add_argument('--local-dev', required=True, help="this namespace's end of the link")
    ap.add_argument('--start-timeout', type=float, default=360.0)
    ap.add_argument('--episode-timeout', type=float, default=120.0)
    ap.add_argument('--hold-seconds', type=float, default=1.5)
    args = ap.parse_args(argv)

    from diagnostic_msgs.msg import DiagnosticArray
    import numpy as np
    import rclpy
    from rclpy.action import ActionClient
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64MultiArray, String

    from hybrid_vla_msgs.action import ExecuteInstruction
    from hybrid_vla_msgs.msg import ActionChunk, SubGoalList, WaypointArray
    from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR

    joints = [f'joint_{i}' for i in range(1, 8)]
    rclpy.init()
    node = rclpy.create_node('two_hosts_client')
    ex = rclpy.executors.SingleThreadedExecutor()
    ex.add_node(node)

    rec = {'events': {}, 'feedback': [], 'plans': [], 'diag_first': {}, 'link': {},
           'error': None}
    cmds, grips, chunks, wps, jss, sim_times = [], [], [], [], [], []
    st = {'ready': {}, 'js': None, 'status': None, 'run_start': None, 'run_len': 0,
          'last_cmd': None}

    def stamp(msg) -> float:
        return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9

    def on_cmd(msg):
        t = time.time()
        q = tuple(msg.data)
        cmds.append((t,) + q)
        if q != st['last_cmd']:
            st['run_start'], st['run_len'], st['last_cmd'] = t, 0, q
        st['run_len'] += 1

    def on_js(msg):
        try:
            q = [msg.position[list(msg.name).index(j)] for j in joints]
        except (ValueError, IndexError):
            return
        st['js'] = np.array(q)
        jss.append([time.time()] + q)

    def on_plan(msg):
        rec['plans'].append({'t': time.time(), 'instruction': msg.instruction,
                             'n': len(msg.subgoals), 'active_index': msg.active_index,
                             'stamp': stamp(msg)})

    def on_diag(msg):
        for s in msg.status:
            rec['diag_first'].setdefault(s.name.split(':')[0], time.time())

    def on_ready(name):
        def cb(msg):
            st['ready'][name] = bool(msg.data)
        return cb

    def on_status(msg):
        try:
            st['status'] = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        sim_times.append((time.time(), float(st['status'].get('sim_time', float('nan')))))

    node.create_subscription(Float64MultiArray, '/forward_position_controller/commands', on_cmd,
                             COMMAND)
    node.create_subscription(Float64MultiArray, '/gripper_controller/commands',
                             lambda m: grips.append((time.time(),) + tuple(m.data)), COMMAND)
    node.create_subscription(JointState, '/joint_states', on_js, SENSOR)
    node.create_subscription(ActionChunk, 'action_chunk',
                             lambda m: chunks.append((time.time(), stamp(m))), COMMAND)
    node.create_subscription(WaypointArray, 'waypoints',
                             lambda m: wps.append((time.time(), stamp(m))), COMMAND)
    node.create_subscription(SubGoalList, 'subgoals', on_plan, LATCHED)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 50)
    node.create_subscription(String, 'ground_truth/task_status', on_status, 10)
    for name in ('motor_policy', 'chunk_executor'):
        node.create_subscription(Bool, f'{name}/ready', on_ready(name), LATCHED)
    client = ActionClient(node, ExecuteInstruction, 'execute_instruction')

    def event(name):
        rec['events'][name] = time.time()

    def wait(pred, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.01)
            if pred():
                return
        raise TimeoutError(f'timed out after {timeout:.0f} s waiting for {what}')

    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.01)

    def link(state):
        subprocess.run(['ip', '-n', args.link_ns, 'link', 'set', 'dev', args.link_dev, state],
                       check=True)

    def chunk_since(t, stamped=False):
        """A chunk received (or, ``stamped``, published) after ``t``."""
        return bool(chunks) and chunks[-1][1 if stamped else 0] > t

    result_future = None
    goal = None
    try:
        event('client_started')
        planners = ('strategic_planner', 'tactical_planner', 'expert_router')
        wait(lambda: st['js'] is not None and all(st['ready'].get(n) for n in
                                                  ('motor_policy', 'chunk_executor'))
             and all(n in rec['diag_first'] for n in planners) and client.server_is_ready(),
             args.start_timeout, 'the graph on both hosts (ready, planner diagnostics, action '
             'server)')
        event('graph_ready')
        rec['link']['at_ready'] = link_stats(args.local_dev)

        fb = rec['feedback']
        sent = client.send_goal_async(
            ExecuteInstruction.Goal(instruction=args.instruction),
            feedback_callback=lambda m: fb.append({
                't': time.time(), 'state': m.feedback.state,
                'active_index': m.feedback.active_index,
                'n': len(m.feedback.plan.subgoals)}))
        event('goal_sent')
        wait(sent.done, 60.0, 'the goal response (across the link)')
        goal = sent.result()
        if not goal.accepted:
            raise RuntimeError('the goal was rejected')
        result_future = goal.get_result_async()
        event('goal_accepted')

        def ours():
            return [p for p in rec['plans'] if p['instruction'] == args.instruction and p['n']]
        wait(lambda: ours() or result_future.done(), 90.0, 'the plan (across the link)')
        event('plan_received')
        # the goal's own view (its feedback), not only the plan topic's
        wait(lambda: result_future.done() or (
            any(f['active_index'] >= 1 and f['state'] == 'executing' for f in fb)
            and chunk_since(time.time() - 0.2)),
            90.0, 'the first sub-goal done while chunks flow')
        if result_future.done():
            raise RuntimeError('the goal ended before its first sub-goal was done: '
                               f'{result_future.result().result.message}')
        event('first_subgoal_done')
        rec['link']['before_down'] = link_stats(args.local_dev)

        # ---- the link goes down
        n_before = len(cmds)
        rec['events']['link_down_request'] = time.time()
        link('down')
        event('link_down')
        rec['cmd_index_link_down'] = n_before

        def holding():
            return st['run_start'] is not None and st['run_start'] > rec['events']['link_down'] \
                and time.time() - st['run_start'] >= args.hold_seconds and st['run_len'] >= 100
        wait(holding, 60.0, f'the executor holding a constant command for {args.hold_seconds} s '
             '(100 commands)')
        event('hold_confirmed')
        rec['hold_start'] = st['run_start']
        rec['link']['during_down'] = link_stats(args.local_dev)
        q_hold = np.array(st['last_cmd'])   # the held command
        rec['q_hold'] = q_hold.tolist()
        arm_at_up = st['js'].copy()
        rec['arm_at_up'] = arm_at_up.tolist()

        # ---- the link comes back
        event('link_up_request')
        link('up')
        event('link_up')
        up = rec['events']['link_up']
        wait(lambda: chunk_since(up, stamped=True), 60.0,
             'a new action chunk, published after the link came back')
        event('first_chunk_after_up')
        wait(lambda: float(np.max(np.abs(st['js'] - arm_at_up))) > 0.02, 60.0,
             'the arm moving on after the link came back')
        event('arm_moving_after_up')

        wait(result_future.done, max(1.0, args.episode_timeout - (
            time.time() - rec['events']['goal_sent'])), 'the goal result')
        event('goal_done')
        try:   # the cube settles on the pad after the last sub-goal
            wait(lambda: (st['status'] or {}).get('success'), 3.0, 'task success')
        except TimeoutError:
            pass
    except (TimeoutError, RuntimeError, subprocess.CalledProcessError) as e:
        rec['error'] = str(e)
    finally:
        if rec['events'].get('link_down') and not rec['events'].get('link_up'):
            try:
                link('up')
            except subprocess.CalledProcessError:
                pass
        if result_future is not None and not result_future.done():
            cancel = goal.cancel_goal_async()
            try:
                wait(lambda: cancel.done() and result_future.done(), 15.0, 'the cancel')
            except TimeoutError:
                pass
        if result_future is not None and result_future.done():
            r = result_future.result()
            rec['result'] = {'status': int(r.status), 'success': bool(r.result.success),
                             'message': r.result.message,
                             'subgoals_done': int(r.result.subgoals_done),
                             'subgoals_total': int(r.result.subgoals_total),
                             'error_mm': float(r.result.error_mm)}
        spin(0.3)
        rec['task_status'] = st['status']
        rec['link']['end'] = link_stats(args.local_dev)
        np.savez(args.out + '.npz',
                 commands=np.array(cmds, dtype=float).reshape(-1, 8),
                 gripper=np.array(grips, dtype=float).reshape(-1, 2),
                 chunks=np.array(chunks, dtype=float).reshape(-1, 2),
                 waypoints=np.array(wps, dtype=float).reshape(-1, 2),
                 joint_states=np.array(jss, dtype=float).reshape(-1, 8),
                 sim_time=np.array(sim_times, dtype=float).reshape(-1, 2))
        with open(args.out + '.json', 'w') as f:
            json.dump(rec, f, indent=1)
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0 if rec['error'] is None else 1


if __name__ == '__main__':
    sys.exit(main())
