"""Timing of the whole ROS graph before/after the real-time levers, in the same conditions.

Runs ``hybrid-vla eval --ros`` twice, one after the other (never two graphs at once), on the
same task and seeds: *before* = every lever off through ``--ros-set`` (no SCHED_FIFO, no nice,
no gc.freeze, torch's default threads, the camera rendered inside the physics tick, the
executor waiting for its next timer tick, rviz paths at 20 Hz), *after* = the shipped
config/arm7.yaml. Prints one row per metric and, last, one JSON object. Latencies come from
message stamps, rates/deadline misses from the nodes' counters (see ``evaluation/ros_eval.py``).
``--parse BEFORE.txt AFTER.txt`` tabulates two existing ``eval --ros`` outputs instead.

    python hybrid_vla_ros/bench/bench_ros_timing.py --task pick_place --episodes 8
"""
import argparse
import json
import subprocess
import sys

from hybrid_vla_ros.domain.seeds import EVAL_SEED_START  # noqa: E402

NODES = ('sim_arm', 'strategic_planner', 'tactical_planner', 'expert_router', 'motor_policy',
         'chunk_executor')
BEFORE = [f'{n}:{k}={v}' for n in NODES for k, v in (
    ('realtime_priority', 0), ('nice', 0), ('gc_freeze', 'false'), ('torch_threads', 0))] + [
    'chunk_executor:command_on_chunk=false', 'motor_policy:viz_rate=20.0',
    'sim_arm:camera_thread=false']
LEVELS = ('strategic_planner', 'tactical_planner', 'motor_policy', 'chunk_executor', 'sim_arm')


def run_eval(task: str, episodes: int, seed: int, sets) -> dict:
    cmd = ['hybrid-vla', 'eval', '--ros', '--task', task, '--episodes', str(episodes),
           '--seed', str(seed)]
    for s in sets:
        cmd += ['--ros-set', s]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return last_json(out)


def last_json(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.startswith('{')]
    if not lines:
        raise ValueError('no JSON line in the eval output')
    return json.loads(lines[-1])


def rows(before: dict, after: dict):
    def lat(d, key, q):
        return d.get(key, {}).get(q)
    yield 'success_rate', before['success_rate'], after['success_rate']
    for key in ('latency_ms', 'obs_to_command_ms'):
        for q in ('p50', 'p90', 'p99', 'max'):
            yield f'{key} {q}', lat(before, key, q), lat(after, key, q)
    for level in LEVELS:
        b, a = before['rates'].get(level, {}), after['rates'].get(level, {})
        for k in ('achieved_hz', 'deadline_miss', 'max_gap_ms'):
            yield f'{level} {k}', b.get(k), a.get(k)
    yield 'loadavg_1min max', before['loadavg_1min']['max'], after['loadavg_1min']['max']


def _fmt(v) -> str:
    return f'{"-":>12s}' if v is None else f'{v:12.4g}'


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--task', default='pick_place')
    ap.add_argument('--episodes', type=int, default=8)
    ap.add_argument('--seed', type=int, default=EVAL_SEED_START)
    ap.add_argument('--parse', nargs=2, metavar=('BEFORE', 'AFTER'),
                    help='tabulate two existing eval --ros outputs instead of running')
    args = ap.parse_args(argv)
    if args.parse:
        before, after = (last_json(open(p).read()) for p in args.parse)
    else:
        before = run_eval(args.task, args.episodes, args.seed, BEFORE)
        after = run_eval(args.task, args.episodes, args.seed, [])
    table = list(rows(before, after))
    print(f"{'metric':40s} {'before':>12s} {'after':>12s}")
    for name, b, a in table:
        print(f'{name:40s} {_fmt(b)} {_fmt(a)}')
    print(json.dumps({'task': before['task'], 'episodes': before['episodes'],
                      'seed': before['seed'], 'before': before, 'after': after}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
