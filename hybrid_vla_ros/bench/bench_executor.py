"""Jerk of the executor's command stream: hard chunk switching vs cross-fade blending.

A motor policy publishes 8-step chunks (50 ms apart, 20 Hz) that track a smooth reference but
disagree with each other by a per-chunk offset (model noise, sigma 2 mrad). The executor samples
them at 100 Hz. We report the RMS and max jerk (third difference / dt^3) and the largest per-tick
step of the commanded joint positions for several blend times, in one run.

    python hybrid_vla_ros/bench/bench_executor.py
"""
import argparse

import numpy as np

from hybrid_vla_ros.execution.chunk_stream import ChunkStream, ExecutorLimits
from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot


def run(blend_time, seconds, noise, seed, joints):
    """A synthetic stream over ``joints`` (limits +-3 rad, 2 rad/s: the blend is measured, not
    the robot)."""
    J, n = list(joints), len(joints)
    rng = np.random.default_rng(seed)
    lim = ExecutorLimits(np.full(n, -3.0), np.full(n, 3.0), np.full(n, 2.0))
    s = ChunkStream(J, lim, blend_time=blend_time, chunk_timeout=1.0)
    ref = lambda t: 0.4 * np.sin(2 * np.pi * 0.25 * t + np.arange(n))  # noqa: E731
    dt, chunk_dt, H, step = 0.01, 0.05, 8, 0.05
    out, next_chunk = [], 0.0
    for k in range(int(seconds / dt)):
        t = k * dt
        if t >= next_chunk - 1e-9:
            offset = rng.normal(0, noise, n)
            rows = np.array([ref(t + i * step) + offset for i in range(H)])
            s.add_chunk(joint_names=J, positions=rows.ravel(), gripper=np.zeros(H), horizon=H,
                        t0=t, step=step, now=t)
            next_chunk += chunk_dt
        q, _ = s.tick(t, ref(0.0))
        out.append(q)
    q = np.array(out)[20:]  # skip start-up
    jerk = np.diff(q, n=3, axis=0) / dt ** 3
    return (float(np.sqrt(np.mean(jerk ** 2))), float(np.abs(jerk).max()),
            float(np.abs(np.diff(q, axis=0)).max()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=60.0)
    ap.add_argument('--noise', type=float, default=0.002, help='per-chunk offset sigma (rad)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml',
                    help='its joint names and count')
    a = ap.parse_args()
    joints = load_robot(a.robot).joint_names
    print(f'chunks every 50 ms, H=8, controller 100 Hz, {a.seconds:.0f} s, '
          f'chunk disagreement sigma {a.noise * 1e3:.1f} mrad, seed {a.seed}')
    print('| blend_time | RMS jerk (rad/s^3) | max jerk (rad/s^3) | max step (mrad) |')
    print('|---|---|---|---|')
    rows = {}
    for bt in (0.0, 0.02, 0.05, 0.1):
        rows[bt] = run(bt, a.seconds, a.noise, a.seed, joints)
        rms, mx, stp = rows[bt]
        print(f'| {bt * 1e3:.0f} ms | {rms:.1f} | {mx:.1f} | {stp * 1e3:.2f} |')
    print(f'RMS jerk, hard switch / 50 ms blend: {rows[0.0][0] / rows[0.05][0]:.1f}x')


if __name__ == '__main__':
    main()
