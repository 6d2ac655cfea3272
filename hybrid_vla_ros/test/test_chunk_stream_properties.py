"""Property test of the executor's safety contract (the ROS-free ``ChunkStream``).

Hypothesis generates sequences of chunks (NaN, Inf, wrong sizes, huge values, unknown joints,
stale, future and out-of-order stamps), joint states (missing, NaN, wrong sizes, jumps, out of
limits), resets, e-stops, heartbeats and clock steps (forward, zero, backward, stalls). After
every tick the contract of :mod:`hybrid_vla_ros.execution.chunk_stream` is checked: nothing is
commanded before a valid measurement, every command is finite and inside the position limits,
and moves from the previous command (or from the measurement it started from) by no more than
the velocity limit allows, arm and gripper alike; an e-stop holds the command exactly.
Derandomized (seeded by the test itself), thousands of sequences.
"""
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np

from hybrid_vla_ros.execution.chunk_stream import ChunkRejectedError, ChunkStream, ExecutorLimits

J = [f'joint_{i}' for i in range(1, 7)]
N = len(J)
LIM = ExecutorLimits(lower=np.linspace(-2.9, -0.5, N), upper=np.linspace(0.4, 2.9, N),
                     velocity=np.linspace(0.5, 2.5, N), gripper_open=0.04, gripper_closed=0.0,
                     gripper_velocity=0.2)
MAX_DT = 0.02
EPS = 1e-9

HOSTILE = [math.nan, math.inf, -math.inf, 1e300, -1e300, 1e6]
# one defect per chunk at most, in 1 chunk of 3: enough valid chunks get through to move the arm
DEFECTS = ['none'] * 14 + ['value', 'wrong_size', 'empty', 'names', 'unknown', 'gripper_size',
                           'gripper_nan', 'stale', 'future', 'far_future', 't0_nan', 'step_zero',
                           'step_negative', 'step_tiny', 'step_huge', 'step_inf', 'huge_values']


def chunk_op(defect, H, seed, now, last_grip_empty):
    """(kwargs of ChunkStream.add_chunk) for a chunk with at most one ``defect``."""
    rng = np.random.default_rng(seed)
    names = list(rng.permutation(J)) if defect == 'names' else list(J)
    if defect == 'unknown':
        names = J[:-1] + ['elbow']
    rows = rng.uniform(-4, 4, N) + rng.uniform(-0.3, 0.3, N) * np.arange(H)[:, None]  # (H, N)
    if defect == 'huge_values':
        rows = rows * 1e200
    positions = rows.ravel().tolist()
    if defect == 'value':
        positions[rng.integers(len(positions))] = HOSTILE[rng.integers(len(HOSTILE))]
    elif defect == 'wrong_size':
        positions = positions[:-1] if rng.random() < 0.5 else positions + [0.0] * 7
    elif defect == 'empty':
        positions = []
    gripper = rng.uniform(-1, 2, H).tolist()
    if defect == 'gripper_size':
        gripper = gripper + [0.0]
    elif defect == 'gripper_nan':
        gripper[0] = math.nan
    elif last_grip_empty:
        gripper = []  # no gripper targets: keeps the last one
    t0_offset = {'stale': -rng.uniform(0.31, 100.0), 'future': 0.31, 'far_future': 1e9,
                 't0_nan': math.nan}.get(defect, rng.uniform(-0.05, 0.02))
    step = {'step_zero': 0.0, 'step_negative': -0.05, 'step_tiny': 1e-9, 'step_huge': 1e9,
            'step_inf': math.inf}.get(defect, [0.05, 0.02, 0.1][rng.integers(3)])
    return dict(joint_names=names, positions=positions, gripper=gripper, horizon=H,
                t0=now + t0_offset, step=step, now=now)


TICK_DT = [0.01, 0.01, 0.01, 0.005, 0.0, 0.03, -0.02, 0.5, 2.0]
MEASURED = ['same'] * 8 + ['none', 'nan', 'jump', 'wrong', 'outside', 'new', 'new']
chunk_st = st.tuples(st.just('chunk'), st.sampled_from(DEFECTS), st.integers(1, 12),
                     st.integers(0, 2 ** 32 - 1), st.integers(0, 5))
tick_st = st.tuples(st.just('tick'), st.sampled_from(TICK_DT), st.sampled_from(MEASURED),
                    st.integers(0, 2 ** 32 - 1), st.sampled_from(['value', 'value', 'none',
                                                                   'nan']))
ops = st.lists(st.one_of(chunk_st, chunk_st, *[tick_st] * 8, st.tuples(st.just('reset')),
                         st.tuples(st.just('estop'), st.sampled_from([True, False, False])),
                         st.tuples(st.just('heartbeat')), st.tuples(st.just('heartbeat'))),
               min_size=30, max_size=120)


def _within(x, lo, hi):
    return np.all(x >= lo - EPS) and np.all(x <= hi + EPS)


@settings(max_examples=3000, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(ops=ops, heartbeat=st.sampled_from([0.0, 0.0, 0.0, 0.1]),
       resync=st.sampled_from([0.0, 0.3]),
       start=st.floats(0.0, 1e6))
def test_every_command_is_safe_for_any_input_sequence(ops, heartbeat, resync, start):
    s = ChunkStream(J, LIM, chunk_timeout=0.3, heartbeat_timeout=heartbeat,
                    resync_tolerance=resync, max_dt=MAX_DT)
    now = start
    t_max = None            # the latest time any tick saw (a clock step back earns nothing)
    prev = prev_g = None    # the previous tick's arm / gripper command (None: none sent)
    measured = np.clip(np.zeros(N), LIM.lower, LIM.upper)
    glo, ghi = LIM.gripper_range
    for op in ops:
        if op[0] == 'chunk':
            _, defect, H, seed, empty = op
            try:
                s.add_chunk(**chunk_op(defect, H, seed, now, empty == 0))
            except ChunkRejectedError as e:
                assert str(e)  # every rejection says why
        elif op[0] == 'reset':
            s.clear()
            prev = prev_g = t_max = None
        elif op[0] == 'estop':
            s.estop = op[1]
        elif op[0] == 'heartbeat':
            s.heartbeat(now)
        else:
            _, dt, kind, seed, g_kind = op
            rng = np.random.default_rng(seed)
            q_new = LIM.lower + rng.uniform(-0.02, 1.02, N) * (LIM.upper - LIM.lower)
            g_meas = {'value': float(rng.uniform(-0.01, 0.05)), 'none': None,
                      'nan': math.nan}[g_kind]
            now += dt
            meas = {'same': measured, 'none': None, 'nan': np.full(N, math.nan),
                    'wrong': np.zeros(N + 1),
                    'jump': np.where(measured + 0.5 <= LIM.upper, measured + 0.5, measured - 0.5),
                    'outside': LIM.upper + 1.0, 'new': np.asarray(q_new)}[kind]
            if kind in ('jump', 'new'):
                measured = np.asarray(meas)
            valid = meas is not None and np.shape(meas) == (N,) and np.all(np.isfinite(meas))
            budget_dt = 0.0 if t_max is None else min(max(0.0, now - t_max), MAX_DT)
            seeds = s.n_seeds
            q, g = s.tick(now, meas, g_meas)
            t_max = now if t_max is None else max(t_max, now)
            if q is None:
                assert prev is None or s.last_cmd is None, 'a commanding stream went silent'
                prev = prev_g = None
                assert g is None
                continue
            assert q.shape == (N,) and np.all(np.isfinite(q))
            assert _within(q, LIM.lower, LIM.upper), 'outside the position limits'
            resynced = (prev is not None and resync > 0 and valid
                        and np.max(np.abs(meas - prev)) > resync)
            if prev is None or resynced:
                # a (re)start: from the measured position, at most one velocity budget away
                assert valid, 'commanded without a valid measured position'
                assert np.all(np.abs(q - meas) <= LIM.velocity * MAX_DT + EPS)
                assert s.n_seeds == seeds + 1, 'a restart the seeds counter did not count'
            else:
                assert s.n_seeds == seeds, 'a seed counted without a restart'
                assert np.all(np.abs(q - prev) <= LIM.velocity * budget_dt + EPS), \
                    f'velocity limit: step {np.abs(q - prev)} in {budget_dt} s'
                if s.estop:
                    assert np.array_equal(q, prev), 'e-stop must hold the command'
            if g is not None:
                assert math.isfinite(g) and glo - EPS <= g <= ghi + EPS
                if prev_g is None or resynced:
                    assert g_meas is not None and abs(g - g_meas) <= \
                        LIM.gripper_velocity * MAX_DT + EPS
                else:
                    assert abs(g - prev_g) <= LIM.gripper_velocity * budget_dt + EPS
            elif prev_g is not None and not resynced:
                raise AssertionError('the gripper command stopped while the arm is commanded')
            prev, prev_g = q.copy(), g


def test_no_valid_input_holds_forever():
    """A stream that stops getting chunks holds exactly where it was, whatever the clock does."""
    s = ChunkStream(J, LIM, chunk_timeout=0.3, max_dt=MAX_DT)
    q0 = np.clip(np.full(N, 0.1), LIM.lower, LIM.upper)
    rows = np.tile(np.clip(q0 + 0.2, LIM.lower, LIM.upper), (8, 1))
    s.add_chunk(joint_names=J, positions=rows.ravel(), gripper=np.ones(8), horizon=8, t0=0.0,
                step=0.05, now=0.0)
    t, out = 0.0, []
    while t < 0.25:
        out.append(s.tick(t, q0, 0.04))
        t += 0.01
    q_last, g_last = out[-1]
    for t in (0.35, 0.5, 10.0, 5.0, 1e4):
        q, g = s.tick(t, q0 + 0.05, 0.0)
        assert 'no new chunk' in s.hold_reason
        assert np.array_equal(q, q_last) and g == g_last
