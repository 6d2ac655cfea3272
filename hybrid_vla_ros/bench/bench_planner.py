"""Per-call latency of the strategic and tactical levels at batch 1 on this CPU.

    python bench/bench_planner.py [--checkpoint DIR] [--threads 1] [--repeats 30] [--json OUT]

Measures each frozen backbone (uncached and cached), each trained head, a whole
``StrategicPlanner.plan`` (new image + new instruction = worst case, and same image/instruction
= cached), ``TacticalPlanner.waypoints``, and checks the rates of the design (strategic 1 Hz,
tactical 5 Hz) with margin: the p99 must stay under half the period. Prints a table and, as the
last line, one JSON object.

The planners in closed loop (with the learned motor level and the executor, through the same
cores as the nodes) are ``hybrid-vla eval --levels 3`` (``--held-out`` for phrasings never
trained on); this bench times the levels alone.

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


def main(argv=None) -> int:
    here = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(here))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--checkpoint', type=Path, default=here / 'checkpoints' / 'planner')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    ap.add_argument('--repeats', type=int, default=30)
    ap.add_argument('--json', type=Path, default=None)
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
    line = json.dumps(res)
    if args.json:
        args.json.write_text(line + '\n')
    print(line)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
