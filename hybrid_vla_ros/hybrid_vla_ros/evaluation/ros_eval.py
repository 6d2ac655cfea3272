"""``hybrid-vla eval --ros``: the same evaluation through the launched ROS 2 graph.

Each episode's instruction is an ``ExecuteInstruction`` goal of the strategic planner
(:class:`~hybrid_vla_ros.bringup.session.GraphSession`); the outcome is read from the sim's
evaluation-only ``ground_truth/task_status``. ``episodes_without_plan``: goals rejected or
aborted before any plan (planning failed), or that no answer came for. Timing, all from
message stamps / node clocks:

* ``latency_ms``: joint state -> action chunk at the motor (``ActionChunk.header.stamp`` -
  ``observation_stamp``: the DDS hop from the plant, parsing, inference, message building).
* ``obs_to_command_ms``: joint state -> the first controller command published from the chunk
  computed from it (the executor's ``~/command_observation``: stamp of the command publish -
  the observation stamp): both hops, inference and the executor's wait.
* ``replans``: sub-goals the strategic planner found stale and re-planned (``subgoal_timeout``),
  ``discarded_plans``: plans that finished after a newer request or a reset (not applied); both
  from its ``/diagnostics`` counters.
* ``rates``: per level, the achieved rate and the deadline-miss fraction over the whole
  evaluation, from the nodes' cumulative counters in ``/diagnostics``. The deadline
  (:mod:`hybrid_vla_ros.execution.rate_monitor`): a period of ``T = 1 / target_hz`` is missed when
  the gap between consecutive outputs exceeds 1.5 T (``round(gap / T) - 1`` periods missed, at
  least 1) or the work of a cycle took longer than T; ``deadline_miss`` = missed / periods;
  idle spells (no plan or waypoints yet) are not counted. ``max_gap_ms`` is over each node's
  life. Levels: ``strategic_planner`` (1 Hz plan re-publish), ``tactical_planner`` (5 Hz
  waypoints), ``motor_policy`` (20 Hz chunks), ``chunk_executor`` (100 Hz commands),
  ``sim_arm`` (100 Hz joint states, the plant).
"""
import os
import tempfile
import time

import numpy as np


def evaluate_ros(args) -> dict:
    from hybrid_vla_ros.bringup.session import GraphSession
    from hybrid_vla_ros.evaluation.hierarchy_eval import fill_instruction, instruction_templates
    from hybrid_vla_ros.evaluation.stats import episode_errors, success_summary
    from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot
    from hybrid_vla_ros.sim.tasks import CONTROL_DT, get_task

    task = get_task(args.task)
    phrasings = instruction_templates(args.instructions, task) if args.instructions else None
    overrides = graph_overrides(args)
    extra = getattr(args, 'ros_overrides', None) or {}
    for node, values in extra.items():
        overrides.setdefault(node, {}).update(values)
    log_dir = tempfile.mkdtemp(prefix='hybrid_vla_eval_ros_')
    rows, latencies, command_latencies, inference = [], [], [], []
    load = [os.getloadavg()[0]]
    t_start = time.monotonic()
    robot = load_robot(getattr(args, 'robot', None) or DEFAULT_ROBOT)
    check_graph_checkpoints(robot, args.expert, getattr(args, 'checkpoints', None))
    hang = getattr(args, 'hang_timeout', None)
    with GraphSession(robot=robot.config_file, overrides=overrides, log_dir=log_dir,
                      hang_timeout=10.0 if hang is None else hang,
                      on_event=lambda m: print(m, flush=True)) as session:
        before = session.rate_snapshot()
        planner_before = dict(session.status_values.get('strategic_planner', {}))
        for i in range(args.episodes):
            seed = args.seed + i
            text = fill_instruction(phrasings[i % len(phrasings)], task, seed) if phrasings \
                else task.instruction(seed, held_out=getattr(args, 'held_out', False))
            try:
                r = session.run_episode(args.task, seed, text,
                                        timeout=task.max_steps * CONTROL_DT * 2 + 10)
            except TimeoutError as e:  # the planner did not answer the goal: a failed episode
                print(f'  episode failed: {e}', flush=True)
                status = session.latest.get('status', {})
                r = {'success': bool(status.get('success', False)) and
                     status.get('seed') == seed,
                     'error_mm': float(status.get('error_mm', float('nan'))),
                     'subgoals': 0, 'subgoals_done': 0, 'no_plan': True}
            print(f"  -> {'success' if r['success'] else 'FAILED'}, error {r['error_mm']:.1f} mm, "
                  f"{r['subgoals_done']}/{r['subgoals']} sub-goals", flush=True)
            latencies += session.chunk_latency_ms
            inference += session.chunk_inference
            command_latencies += session.command_latency_ms
            rows.append(r)
            load.append(os.getloadavg()[0])
        after = session.rate_snapshot()
        planner_after = dict(session.status_values.get('strategic_planner', {}))
    e = np.array([r['error_mm'] for r in rows])
    return {'task': args.task, 'expert': args.expert, 'robot': robot.name, 'levels': 3,
            'ros': True,
            'seed': args.seed, **success_summary([r['success'] for r in rows]),
            'median_error_mm': float(np.nanmedian(e)),
            'p95_error_mm': float(np.nanpercentile(e, 95)), 'errors_mm': episode_errors(e),
            'episodes_without_plan': sum(bool(r.get('no_plan')) for r in rows),
            'subgoals_completed': float(np.mean([r['subgoals_done'] / max(1, r['subgoals'])
                                                 for r in rows])),
            'replans': counter_growth(planner_before, planner_after, 'replans'),
            'discarded_plans': counter_growth(planner_before, planner_after, 'discarded_plans'),
            'latency_ms': percentiles(latencies),
            'latency_by_expert_ms': by_expert(latencies, inference),
            'obs_to_command_ms': percentiles(command_latencies),
            'rates': rate_table(before, after),
            'deadline': 'missed period: gap between outputs > 1.5/target_hz, or the work of a '
                        'cycle > 1/target_hz; deadline_miss = missed / periods',
            'loadavg_1min': {'min': min(load), 'max': max(load)},
            'wall_s': round(time.monotonic() - t_start, 1),
            'graph_overrides': extra,
            'logs': os.path.join(log_dir, 'graph.log')}


def graph_overrides(args) -> dict:
    """The node parameters ``--task/--seed``, ``--expert`` and ``--checkpoints`` set (before
    ``--ros-set``): a fixed expert is the only one the motor node loads (a folder may hold just
    that one) and the router is bypassed; ``--checkpoints`` is the motor node's
    ``checkpoint_dir`` and, with the router, the router node's (its ``router/``)."""
    overrides = {'sim_arm': {'task': args.task, 'seed': args.seed}}
    checkpoints = getattr(args, 'checkpoints', None)
    motor = {}
    if checkpoints:
        checkpoints = os.path.abspath(checkpoints)
        if not os.path.isdir(checkpoints):
            raise FileNotFoundError(f'--checkpoints {checkpoints}: no such folder')
        motor['checkpoint_dir'] = checkpoints
    if args.expert != 'router':
        overrides['expert_router'] = {'fixed_expert': args.expert}
        motor.update(experts=[args.expert], default_expert=args.expert)
    elif checkpoints:
        overrides['expert_router'] = {'checkpoint_dir': checkpoints}
    if motor:
        overrides['motor_policy'] = motor
    return overrides


def check_graph_checkpoints(robot, expert: str, checkpoints=None) -> None:
    """Before any node starts: every checkpoint the graph will load (the fixed expert, or the
    router and the motor node's ``experts``) exists and was made for ``robot`` (a clear
    CheckpointError / FileNotFoundError here instead of a node dying at start-up)."""
    from hybrid_vla_ros.models.checkpoint import check_robot, read_config
    from hybrid_vla_ros.motor.policy import shipped_motor_dir
    root = os.path.abspath(checkpoints) if checkpoints else shipped_motor_dir(robot)
    if expert != 'router':
        names = [expert]
    else:
        names = list(robot.section('motor_policy').get(
            'experts', ['token', 'flow', 'diffusion', 'coarse_to_fine'])) + ['router']
    for name in names:
        path = os.path.join(root, name)
        if not os.path.isfile(os.path.join(path, 'config.json')):
            raise FileNotFoundError(
                f'no checkpoint {path} for the graph (--expert {expert}); train one with '
                f'`hybrid-vla train motor --robot {robot.name} ...` and pass --checkpoints')
        check_robot(read_config(path), robot.joint_names, path)


def counter_growth(before: dict, after: dict, key: str):
    """Growth of a cumulative counter of a node's /diagnostics values (None if not reported)."""
    try:
        return int(float(after[key]) - float(before.get(key, 0)))
    except (KeyError, ValueError):
        return None


def percentiles(values) -> dict:
    v = np.asarray(values if len(values) else [np.nan], dtype=float)
    return {'n': len(values), 'p50': float(np.median(v)), 'p90': float(np.percentile(v, 90)),
            'p99': float(np.percentile(v, 99)), 'max': float(np.max(v))}


def by_expert(latencies, inference) -> dict:
    """Per expert: joint state -> chunk latency, its inference part (``inference_ms`` in the
    message) and the rest (DDS hop from the plant, executor dispatch, pre/post-processing)."""
    out = {}
    for name in sorted({e for e, _ in inference}):
        idx = [i for i, (e, _) in enumerate(inference) if e == name]
        lat = np.array([latencies[i] for i in idx])
        inf = np.array([inference[i][1] for i in idx])
        out[name] = {'n': len(idx), 'latency': percentiles(lat), 'inference': percentiles(inf),
                     'other': percentiles(lat - inf)}
    return out


def rate_table(before: dict, after: dict) -> dict:
    """Per level: the rate/deadline summary of the counters' growth between two snapshots."""
    from hybrid_vla_ros.execution.rate_monitor import summarize
    out = {}
    for name, end in sorted(after.items()):
        start = before.get(name, {})
        delta = {k: end.get(k, 0.0) - start.get(k, 0.0) for k in end}
        delta['max_gap_ms'] = end.get('max_gap_ms')
        out[name] = summarize(end.get('target_hz', float('nan')), delta)
    return out
