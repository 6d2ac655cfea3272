"""Per-call latency of the strategic and tactical levels at batch 1 on this CPU.

    python bench/bench_planner.py [--checkpoint DIR] [--threads 1] [--repeats 30] [--json OUT]

Measures each frozen backbone (uncached and cached), each trained head, a whole
``StrategicPlanner.plan`` (new image + new instruction = worst case, and same image/instruction
= cached), ``TacticalPlanner.waypoints``, and checks the rates of the design (strategic 1 Hz,
tactical 5 Hz) with margin: the p99 must stay under half the period. Prints a table and, as the
last line, one JSON object.

``--closed-loop N`` also runs levels 3+2 closed loop in the sim for N scenes per task: the
strategic planner (re-planned before every sub-goal, RGB + depth), the tactical planner's
waypoints (obstacle from the planner's grounding), and the scripted expert's IK/min-jerk
joint trajectories as the motor level (not the
learned motor experts), reporting success rate and median task error per task.

``--vlm DIR`` also times the optional Hugging Face VLM backend (``HFVLMBackend``) from a local
folder: load time and whole ``plan()`` calls (greedy, ``--vlm-max-new-tokens`` cap; a refused
answer costs the same pipeline and is counted).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import statistics
import sys
import time

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MUJOCO_GL', 'egl')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot  # noqa: E402


def _stats(samples_ms) -> dict:
    s = sorted(samples_ms)
    p = lambda q: s[min(len(s) - 1, int(round(q * (len(s) - 1))))]  # noqa: E731
    return {'p50_ms': round(statistics.median(s), 3), 'p90_ms': round(p(0.9), 3),
            'p99_ms': round(p(0.99), 3), 'mean_ms': round(statistics.fmean(s), 3), 'n': len(s)}


def _time(fn, repeats: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t))
    return _stats(out)


def closed_loop(sp, tp, tasks, episodes: int, held_out: bool, seed0: int = 500_000,
                robot=None) -> dict:
    """Levels 3+2 in the sim with the scripted expert's motor layer (see module docstring)."""
    import numpy as np

    from hybrid_vla_ros.planning.skills import PlanningError
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.scripted_expert import joint_trajectory
    from hybrid_vla_ros.sim.tasks import CONTROL_DT, get_task
    sim = ArmSim(robot=robot or DEFAULT_ROBOT)
    n_sub = int(round(CONTROL_DT / sim.timestep))
    out = {}
    for name in tasks:
        task = get_task(name)
        succ, errs, refusals = [], [], 0
        for seed in range(seed0, seed0 + episodes):
            sim.reset(task, seed)
            instr = task.instruction(seed, held_out=held_out)
            hold_q, hold_g, idx, plan = sim.joint_targets(), sim.gripper_command(), 0, None
            while True:
                try:   # re-plan before each sub-goal: keep finished ones, take fresh targets
                    new = sp.plan(instr, sim.render(), sim.camera_info(),
                                  depth=sim.render_depth())
                    if plan is None:
                        plan = new
                    elif len(new.subgoals) == len(plan.subgoals):
                        plan.subgoals[idx] = new.subgoals[idx]
                except PlanningError:
                    if plan is None:
                        refusals += 1
                        break
                if idx >= len(plan.subgoals):
                    break
                sg = plan.subgoals[idx].to_expert()
                p_cmd, q_cmd = sim.kin.fk(hold_q)
                # the obstacle as the strategic level grounded it (not the ground truth)
                obs = {'tool_pos': p_cmd, 'tool_quat': q_cmd, 'gripper_command': hold_g,
                       'obstacle': plan.scene.get('obstacle')}
                wps = tp.waypoints(sg, obs)
                Q, G, _ = joint_trajectory(wps, hold_q, sim.kin, p_cmd, q_cmd, hold_g,
                                           CONTROL_DT, sim.vel_limits, q_rest=sim.home_q)
                for q, g in list(zip(Q, G)) + [(Q[-1], G[-1])] * 5:
                    sim.set_joint_targets(q)
                    sim.set_gripper(g)
                    sim.step(n_sub)
                hold_q, hold_g = Q[-1].copy(), float(G[-1])
                if plan is not None and idx >= len(plan.subgoals) - 1:
                    break
                idx += 1
            succ.append(bool(task.success(sim)))
            errs.append(float(task.error_mm(sim)))
        out[name] = {'success_rate': float(np.mean(succ)),
                     'median_error_mm': float(np.median(errs)), 'refusals': refusals,
                     'episodes': episodes}
    sim.close()
    return out


def main(argv=None) -> int:
    here = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(here))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--checkpoint', type=Path, default=here / 'checkpoints' / 'planner')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    ap.add_argument('--repeats', type=int, default=30)
    ap.add_argument('--json', type=Path, default=None)
    ap.add_argument('--closed-loop', type=int, default=0, metavar='N',
                    help='also run levels 3+2 closed loop on N scenes per task')
    ap.add_argument('--held-out', action='store_true',
                    help='closed loop with held-out phrasings')
    ap.add_argument('--vlm', type=Path, default=None, metavar='DIR',
                    help='also time the HF VLM backend loaded from this local folder')
    ap.add_argument('--vlm-max-new-tokens', type=int, default=256)
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)

    from hybrid_vla_ros.planning.backbones import image_to_tensor, shared_text, shared_vision
    from hybrid_vla_ros.planning.grounding import locate
    from hybrid_vla_ros.planning.skills import PlanningError, plan_bounds
    from hybrid_vla_ros.planning.strategic_planner import StrategicPlanner
    from hybrid_vla_ros.planning.tactical_planner import TacticalPlanner
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.scripted_expert import plan as expert_plan
    from hybrid_vla_ros.sim.scripted_expert import task_state
    from hybrid_vla_ros.sim.tasks import get_task

    robot = load_robot(args.robot)
    sim = ArmSim(robot=robot)
    scenes = []
    for i, task in enumerate(('pick_place', 'stack', 'reach', 'detour', 'multimodal') * 8):
        sim.reset(task, 9000 + i)
        scenes.append((task, sim.render(), sim.camera_info(),
                       get_task(task).instruction(9000 + i),
                       task_state(sim)))
    vision, text = shared_vision(), shared_text()
    planner = StrategicPlanner.from_checkpoint(args.checkpoint)
    tactical = TacticalPlanner.from_checkpoint(args.checkpoint, robot=robot)
    planner.bounds = plan_bounds(robot.kinematics().reach())
    res = {'threads': args.threads, 'image_px': list(scenes[0][1].shape[:2])}
    k = {'i': 0}

    def nxt():
        k['i'] = (k['i'] + 1) % len(scenes)
        return scenes[k['i']]

    res['vision_uncached'] = _time(lambda: vision.encode(nxt()[1], use_cache=False),
                                   args.repeats)
    img0 = scenes[0][1]
    vision.encode(img0)
    res['vision_cached'] = _time(lambda: vision.encode(img0), args.repeats)
    res['text_uncached'] = _time(lambda: text.encode(nxt()[3], use_cache=False), args.repeats)
    text.encode(scenes[0][3])
    res['text_cached'] = _time(lambda: text.encode(scenes[0][3]), args.repeats)
    tf, vf = text.encode(scenes[0][3]), vision.encode(img0)
    dec = planner.backend.decoder
    res['decoder_head'] = _time(lambda: dec.decode(tf, vf), args.repeats)
    x = image_to_tensor(img0)
    with torch.no_grad():
        res['grounding_dense'] = _time(lambda: planner.grounding.dense(x, vf.stride4[None]),
                                       args.repeats)
        dense = planner.grounding.dense(x, vf.stride4[None])
    res['grounding_locate'] = _time(lambda: locate(planner.grounding, dense, 'red cube'),
                                    args.repeats)

    def plan_new():
        _, img, cam, instr, _ = nxt()
        vision.cache.data.clear()
        text.cache.data.clear()
        try:
            planner.plan(instr, img, cam)
        except PlanningError:   # a refusal costs the same pipeline; count it
            k['refusals'] = k.get('refusals', 0) + 1

    res['strategic_plan_uncached'] = _time(plan_new, args.repeats)
    _, img, cam, instr, _ = scenes[0]
    res['strategic_plan_cached'] = _time(lambda: planner.plan(instr, img, cam), args.repeats)
    st = scenes[1][4]
    sgs = expert_plan(st, 0)
    obs = {'tool_pos': st['tool_pos'], 'tool_quat': st['tool_quat'], 'gripper': 0.0}
    res['tactical_waypoints'] = _time(lambda: tactical.waypoints(sgs[k['i'] % len(sgs)], obs),
                                      args.repeats * 3)
    sim.close()
    if args.vlm is not None:
        from hybrid_vla_ros.planning.vlm_backend import HFVLMBackend
        t0 = time.perf_counter()
        vlm = HFVLMBackend(args.vlm, max_new_tokens=args.vlm_max_new_tokens)
        res['vlm_load_s'] = round(time.perf_counter() - t0, 2)
        vplanner = StrategicPlanner(planner.grounding, vlm, vision, text)
        tokens = []

        def vlm_plan():
            _, img, cam, instr, _ = nxt()
            try:
                vplanner.plan(instr, img, cam)
            except PlanningError:
                k['vlm_refusals'] = k.get('vlm_refusals', 0) + 1
            tokens.append(vlm.last_timing_ms.get('new_tokens', 0))

        res['vlm_plan'] = _time(vlm_plan, max(3, args.repeats // 6), warmup=1)
        res['vlm_new_tokens_mean'] = round(sum(tokens) / max(1, len(tokens)), 1)
        res['vlm_refusals'] = k.get('vlm_refusals', 0)
    strat_budget, tact_budget = 1000.0, 200.0
    res['strategic_1hz_ok_with_2x_margin'] = \
        res['strategic_plan_uncached']['p99_ms'] < strat_budget / 2
    res['tactical_5hz_ok_with_2x_margin'] = res['tactical_waypoints']['p99_ms'] < tact_budget / 2
    res['strategic_budget_used_p99'] = round(res['strategic_plan_uncached']['p99_ms']
                                             / strat_budget, 4)
    res['tactical_budget_used_p99'] = round(res['tactical_waypoints']['p99_ms'] / tact_budget, 4)
    res['load_average'] = os.getloadavg()[0]
    res['plan_refusals'] = k.get('refusals', 0)
    print(f'{"component (batch 1)":34s} {"p50 ms":>9s} {"p90 ms":>9s} {"p99 ms":>9s}')
    for name, v in res.items():
        if isinstance(v, dict):
            print(f'{name:34s} {v["p50_ms"]:9.2f} {v["p90_ms"]:9.2f} {v["p99_ms"]:9.2f}')
    if args.closed_loop:
        res['closed_loop'] = closed_loop(planner, tactical, ('reach', 'pick_place', 'detour',
                                                             'stack', 'multimodal'),
                                         args.closed_loop, args.held_out, robot=robot)
        res['closed_loop_held_out_phrasings'] = args.held_out
        for name, v in res['closed_loop'].items():
            print(f'closed loop {name:12s} success {v["success_rate"]:.2f}  median error '
                  f'{v["median_error_mm"]:.1f} mm  refusals {v["refusals"]}/{v["episodes"]}')
    line = json.dumps(res)
    if args.json:
        args.json.write_text(line + '\n')
    print(line)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
