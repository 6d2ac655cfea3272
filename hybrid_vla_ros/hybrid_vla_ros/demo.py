"""``hybrid-vla demo`` (what ``make demo`` runs): the whole graph on the simulated arm.

Brings up sim_arm + strategic_planner + tactical_planner + expert_router + motor_policy +
chunk_executor as separate processes with the shipped checkpoints, sends "put the red cube on the
blue pad" and one more instruction as ``ExecuteInstruction`` goals (the strategic planner's
action), prints progress per sub-goal and each goal's result, records every topic into an MCAP
bag (and the same run as a rerun recording, ``demo.rrd``), renders the rollout with the
waypoints drawn into a GIF and an image strip, and ends with a one-line summary.
"""
import argparse
import os
import time

import numpy as np

# (task, seed, instruction): seed 1000029's scene has a red cube and a blue pad (seeds >= 1e6
# are never used for training).
EPISODES = (('pick_place', 1000029, 'put the red cube on the blue pad'),
            ('multimodal', 1000002, None))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybrid_vla_ros.cli import add_robot_argument
    from hybrid_vla_ros.models.registry import expert_names
    add_robot_argument(parser)
    parser.add_argument('--expert', default='router', choices=list(expert_names()) + ['router'],
                        help='motor expert of the graph (default: the router picks)')
    parser.add_argument('--checkpoints', default=None,
                        help="motor checkpoints for --robot (<expert>/, router/; default: the "
                             'shipped ones, made for the default arm)')
    parser.add_argument('--out', default='runs/demo', help='folder for bag, GIF, logs')
    parser.add_argument('--timeout', type=float, default=60.0, help='seconds per episode')


def _project(points, cam):
    T = cam['T_base_camera']
    K = cam['K']
    out = []
    for p in points:
        pc = T[:3, :3].T @ (np.asarray(p, float) - T[:3, 3])
        if pc[2] > 1e-6:
            out.append((K[0, 0] * pc[0] / pc[2] + K[0, 2], K[1, 1] * pc[1] / pc[2] + K[1, 2]))
    return out


def _draw(img, pts, color, r=2):
    h, w = img.shape[:2]
    for u, v in pts:
        u, v = int(round(u)), int(round(v))
        img[max(0, v - r):min(h, v + r + 1), max(0, u - r):min(w, u + r + 1)] = color


def render_video(frames, cam, path_gif, path_strip, scale=2):
    """Frames with the active waypoints (blue) and sub-goal targets (orange) drawn."""
    import imageio.v2 as imageio
    out = []
    for img, wps, plan in frames:
        img = np.repeat(np.repeat(img, scale, 0), scale, 1).copy()
        c = dict(cam, K=cam['K'] * np.array([[scale], [scale], [1]]))
        if plan is not None:
            pts = [(s.target_pose.position.x, s.target_pose.position.y,
                    s.target_pose.position.z) for s in plan.subgoals]
            _draw(img, _project(pts, c), (255, 140, 0), 3)
        if wps is not None:
            pts = [(w.pose.position.x, w.pose.position.y, w.pose.position.z)
                   for w in wps.waypoints]
            _draw(img, _project(pts, c), (30, 80, 255), 2)
        out.append(img)
    if not out:
        return
    imageio.mimsave(path_gif, out[::2], duration=0.2, loop=0)
    idx = np.linspace(0, len(out) - 1, 8).astype(int)
    imageio.imwrite(path_strip, np.concatenate([out[i] for i in idx], axis=1))


def run(args) -> int:
    from hybrid_vla_ros.bringup.session import GraphSession
    from hybrid_vla_ros.evaluation.ros_eval import check_graph_checkpoints, graph_overrides
    from hybrid_vla_ros.robot import load_robot
    from hybrid_vla_ros.sim.arm_sim import ArmSim

    robot = load_robot(args.robot)
    check_graph_checkpoints(robot, args.expert, args.checkpoints)
    overrides = graph_overrides(argparse.Namespace(
        task=EPISODES[0][0], seed=EPISODES[0][1], expert=args.expert,
        checkpoints=args.checkpoints))
    os.makedirs(args.out, exist_ok=True)
    bag = os.path.join(args.out, 'demo.mcap')
    if os.path.exists(bag):
        os.remove(bag)
    t0 = time.monotonic()
    print(f'demo: robot {robot.name} ({robot.n_joints} joints, {robot.config_file})')
    print('demo: starting the graph (sim_arm, strategic_planner, tactical_planner, '
          'expert_router, motor_policy, chunk_executor, bag recorder)...')
    results = []
    session = GraphSession(robot=robot.config_file, overrides=overrides,
                           bag=bag, log_dir=args.out, keep_frames=True,
                           on_event=lambda m: print(f'demo: {m}', flush=True))
    try:
        session.start()
        print(f'demo: graph up in {time.monotonic() - t0:.0f} s')
        for task, seed, text in EPISODES:
            r = session.run_episode(task, seed, text, timeout=args.timeout)
            results.append(r)
            print(f"demo: {task}: {'SUCCESS' if r['success'] else 'FAILED'}, error "
                  f"{r['error_mm']:.1f} mm, goal {r['outcome']} ({r['message']}), "
                  f"{r['subgoals_done']}/{r['subgoals']} sub-goals, "
                  f"{r['seconds']:.0f} s, joint state -> chunk p50 {r['latency_ms_p50']:.1f} ms",
                  flush=True)
    finally:
        frames = session.frames if session.node is not None else []
        session.stop()
    sim = ArmSim(robot=robot)
    render_video(frames, sim.camera_info(), os.path.join(args.out, 'demo.gif'),
                 os.path.join(args.out, 'demo_strip.png'))
    sim.close()
    from hybrid_vla_ros.viewer.view_command import record
    rrd = os.path.join(args.out, 'demo.rrd')  # the bag in rerun: `rerun runs/demo/demo.rrd`
    record(bag, robot, rrd)
    ok = sum(r['success'] for r in results)
    print(f'demo: {ok}/{len(results)} tasks succeeded in {time.monotonic() - t0:.0f} s; bag '
          f'{bag}, rerun recording {rrd}, video {os.path.join(args.out, "demo.gif")}')
    return 0 if ok == len(results) else 1
