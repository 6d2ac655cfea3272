"""``hybrid-vla eval --ros``: the same evaluation through the launched ROS 2 graph.

Instructions go in on the ``instruction`` topic; the outcome is read from the sim's
evaluation-only ``ground_truth/task_status``; latency is joint state -> action chunk, from the
message stamps.
"""
import os
import tempfile

import numpy as np


def evaluate_ros(args) -> dict:
    from hybrid_vla_ros.bringup.session import GraphSession
    from hybrid_vla_ros.evaluation.hierarchy_eval import read_instructions
    from hybrid_vla_ros.sim.tasks import get_task

    task = get_task(args.task)
    phrasings = None
    if args.instructions:
        phrasings = [t for k, t in read_instructions(args.instructions) if k == args.task]
        if not phrasings:
            raise ValueError(f'{args.instructions}: no phrasing for task {args.task!r}')
    overrides = {'sim_arm': {'task': args.task, 'seed': args.seed}}
    if args.expert != 'router':
        overrides['expert_router'] = {'fixed_expert': args.expert}
    log_dir = tempfile.mkdtemp(prefix='hybrid_vla_eval_ros_')
    rows, latencies = [], []
    with GraphSession(overrides=overrides, log_dir=log_dir,
                      on_event=lambda m: print(m, flush=True)) as session:
        for i in range(args.episodes):
            seed = args.seed + i
            text = phrasings[i % len(phrasings)] if phrasings else task.instruction(seed)
            r = session.run_episode(args.task, seed, text,
                                    timeout=task.max_steps * 0.05 * 2 + 10)
            latencies += session.chunk_latency_ms
            rows.append(r)
    e = np.array([r['error_mm'] for r in rows])
    lat = np.asarray(latencies or [np.nan])
    return {'task': args.task, 'expert': args.expert, 'levels': 3, 'ros': True,
            'episodes': args.episodes, 'seed': args.seed,
            'success_rate': float(np.mean([r['success'] for r in rows])),
            'median_error_mm': float(np.median(e)), 'p95_error_mm': float(np.percentile(e, 95)),
            'subgoals_completed': float(np.mean([r['subgoals_done'] / max(1, r['subgoals'])
                                                 for r in rows])),
            'latency_ms': {'p50': float(np.median(lat)), 'p90': float(np.percentile(lat, 90)),
                           'p99': float(np.percentile(lat, 99))},
            'logs': os.path.join(log_dir, 'graph.log')}
