#!/usr/bin/env python3
"""Physics throughput of ArmSim: steps/s and real-time factor, camera off and on.

    python bench/bench_sim.py [--seconds 5] [--render-hz 20] [--size 128]
"""
import argparse
import os
import sys
import time

os.environ.setdefault('MUJOCO_GL', 'egl')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import numpy as np  # noqa: E402

from hybrid_vla_ros.robot import DEFAULT_ROBOT  # noqa: E402
from hybrid_vla_ros.sim.arm_sim import ArmSim  # noqa: E402


def run(sim, sim_seconds, render_hz, control_hz=20):
    sim.reset('pick_place', 0)
    rng = np.random.default_rng(0)
    n_ctrl = int(round(1.0 / control_hz / sim.timestep))
    render_every = None if not render_hz else int(round(1.0 / render_hz / sim.timestep))
    total = int(round(sim_seconds / sim.timestep))
    q0 = sim.joint_positions()
    frames = 0
    t0 = time.perf_counter()
    k = 0
    while k < total:
        amp = 0.2 * rng.uniform(0.9, 1)
        sim.set_joint_targets(q0 + amp * np.sin(0.5 * sim.time + np.arange(len(q0))))
        sim.step(n_ctrl)
        k += n_ctrl
        if render_every and k % render_every < n_ctrl:
            sim.render()
            frames += 1
    wall = time.perf_counter() - t0
    return total / wall, sim_seconds / wall, frames / wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--seconds', type=float, default=5.0, help='simulated seconds per case')
    ap.add_argument('--render-hz', type=float, default=20.0)
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    args = ap.parse_args(argv)
    sim = ArmSim(robot=args.robot, camera_width=args.size, camera_height=args.size)
    sim.reset('pick_place', 0)
    sim.step(10)
    print(f"robot {sim.robot.name}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, "
          f'timestep {sim.timestep * 1000:.1f} ms, '
          f'{args.seconds:.0f} simulated s per case, camera {args.size}x{args.size}, '
          f'pick_place scene ({sim.data.ncon} contacts at rest), control 20 Hz')
    print(f"{'case':<28}{'steps/s':>12}{'real-time x':>13}{'frames/s':>10}")
    sps, rtf, _ = run(sim, args.seconds, 0)
    print(f"{'camera off':<28}{sps:>12.0f}{rtf:>13.1f}{'-':>10}")
    sps, rtf, fps = run(sim, args.seconds, args.render_hz)
    print(f"{'camera on @ %g Hz' % args.render_hz:<28}{sps:>12.0f}{rtf:>13.1f}{fps:>10.1f}")
    # raw render rate
    t0 = time.perf_counter()
    for _ in range(100):
        sim.render()
    print(f"{'render only':<28}{'':>12}{'':>13}{100 / (time.perf_counter() - t0):>10.1f}")
    sim.close()


if __name__ == '__main__':
    main()
