"""The chunk executor's logic without ROS: blending, limits, holding."""
import numpy as np
import pytest

from hybrid_vla_ros.execution.chunk_stream import ChunkRejectedError, ChunkStream, ExecutorLimits

J = [f'joint_{i}' for i in range(1, 8)]
LIM = ExecutorLimits(lower=np.full(7, -2.0), upper=np.full(7, 2.0), velocity=np.full(7, 1.5))
DT = 0.01


def chunk(stream, q_rows, t0, now, step=0.02, names=J, gripper=None):
    q_rows = np.asarray(q_rows, float)
    return stream.add_chunk(joint_names=names, positions=q_rows.reshape(-1),
                            gripper=np.zeros(len(q_rows)) if gripper is None else gripper,
                            horizon=len(q_rows), t0=t0, step=step, now=now)


def ramp(q0, v, H=8, step=0.02):
    return np.array([q0 + v * step * k for k in range(H)])


def test_follows_a_single_chunk():
    s = ChunkStream(J, LIM)
    chunk(s, ramp(np.zeros(7), 0.5), t0=0.0, now=0.0)
    for t in np.arange(0.0, 0.07, DT):
        s.tick(t, measured=np.zeros(7))
    q, g = s.tick(0.07, measured=np.zeros(7))
    # step k's target holds for its step (the policies' training semantics), reached from
    # step k-1's over the first blend_time (default 50 ms, capped at the 20 ms step here):
    # t = 0.07 is inside step 3 (0.06 .. 0.08), half-way through the ramp from step 2
    assert np.allclose(q, 0.5 * 0.05)
    assert g is None  # the gripper's position was never measured: nothing is sent for it
    assert s.tick(0.071, measured=np.zeros(7), measured_gripper=0.0)[1] == 0.0
    assert np.allclose(s.tick(0.0799, measured=np.zeros(7))[0], 0.5 * 0.06, atol=1e-4)
    # never ahead of the step's own target (the old interpolation towards step k+1 was)
    for t in np.arange(0.08, 0.16, DT):
        k = np.floor(t / 0.02 + 1e-9)
        assert np.all(s.tick(t, measured=np.zeros(7))[0] <= 0.5 * 0.02 * k + 1e-9)
    hard = ChunkStream(J, LIM, blend_time=0.0)  # no ramp: a pure zero-order hold
    chunk(hard, ramp(np.zeros(7), 0.5), t0=0.0, now=0.0)
    for t in np.arange(0.0, 0.07, DT):
        hard.tick(t, measured=np.zeros(7))
    assert np.allclose(hard.tick(0.07, measured=np.zeros(7))[0], 0.5 * 0.06)


def test_new_chunk_blends_without_a_jump():
    s = ChunkStream(J, LIM, blend_time=0.05)
    chunk(s, ramp(np.zeros(7), 0.5), t0=0.0, now=0.0)
    out = [s.tick(t, np.zeros(7))[0] for t in np.arange(0, 0.05, DT)]
    # the new chunk disagrees by 5 cm-ish (0.05 rad offset): a hard switch would jump 0.05
    chunk(s, ramp(np.full(7, 0.05 + 0.025), 0.5), t0=0.05, now=0.05)
    out += [s.tick(t, None)[0] for t in np.arange(0.05, 0.15, DT)]
    steps = np.abs(np.diff(np.array(out), axis=0)).max()
    assert steps < 0.02, f'largest per-tick step {steps:.4f} rad'
    # t = 0.14: half-way from the new chunk's step 3 (0.06 s in) to its step 4
    assert np.allclose(out[-1], 0.075 + 0.5 * 0.07, atol=1e-6)


def test_never_outside_position_or_velocity_limits():
    rng = np.random.default_rng(0)
    s = ChunkStream(J, LIM)
    t, prev = 0.0, np.zeros(7)
    for k in range(200):
        if k % 5 == 0:
            chunk(s, rng.normal(0, 10, size=(8, 7)), t0=t, now=t)
        q, _ = s.tick(t, np.zeros(7))
        assert np.all(q >= LIM.lower) and np.all(q <= LIM.upper)
        assert np.all(np.abs(q - prev) <= LIM.velocity * DT + 1e-12)
        prev, t = q, t + DT


@pytest.mark.parametrize('bad,match', [
    (dict(positions=[np.nan] * 56), 'NaN'),
    (dict(positions=[0.0] * 55), 'expected horizon 8'),
    (dict(names=J[:6] + ['elbow']), 'unknown joints'),
    (dict(names=J[:6]), 'expected each of'),
    (dict(gripper=[0.0] * 3), 'gripper has 3'),
    (dict(step=0.0), 'bad timing'),
])
def test_bad_chunks_are_rejected_and_the_old_one_kept(bad, match):
    s = ChunkStream(J, LIM)
    good = chunk(s, ramp(np.zeros(7), 0.1), t0=0.0, now=0.0)
    kw = dict(joint_names=bad.get('names', J),
              positions=bad.get('positions', [0.0] * 56), gripper=bad.get('gripper', [0.0] * 8),
              horizon=8, t0=0.01, step=bad.get('step', 0.02), now=0.01)
    if 'names' in bad:
        kw['positions'] = [0.0] * 8 * len(bad['names'])
    with pytest.raises(ChunkRejectedError, match=match):
        s.add_chunk(**kw)
    assert s.current is good and s.n_rejected == 1


def test_joint_order_of_the_chunk_is_mapped():
    s = ChunkStream(J, LIM)
    rows = np.tile(np.arange(7, dtype=float) * 0.1, (8, 1))
    chunk(s, rows[:, ::-1], t0=0.0, now=0.0, names=J[::-1])
    q, _ = s.tick(0.0, np.zeros(7))  # first tick holds the measured position
    assert np.allclose(s.current.positions[0], np.arange(7) * 0.1)
    assert q.shape == (7,)


def test_holds_when_upstream_goes_silent():
    s = ChunkStream(J, LIM, chunk_timeout=0.2)
    chunk(s, ramp(np.zeros(7), 0.5, H=50), t0=0.0, now=0.0)
    q_before, _ = s.tick(0.19, np.zeros(7))
    q_after = [s.tick(t, np.zeros(7))[0] for t in (0.21, 0.3, 0.5)]
    assert 'no new chunk' in s.hold_reason
    for q in q_after:
        assert np.array_equal(q, q_before)


def test_estop_and_heartbeat_hold():
    s = ChunkStream(J, LIM, heartbeat_timeout=0.1)
    s.heartbeat(0.0)
    chunk(s, ramp(np.zeros(7), 0.5, H=50), t0=0.0, now=0.0)
    q1, _ = s.tick(0.05, np.zeros(7))
    assert s.hold_reason == ''
    q2, _ = s.tick(0.2, np.zeros(7))  # heartbeat 0.2 s old
    assert s.hold_reason == 'heartbeat lost' and np.array_equal(q1, q2)
    s.heartbeat(0.2)
    s.estop = True
    q3, _ = s.tick(0.21, np.zeros(7))
    assert s.hold_reason == 'e-stop' and np.array_equal(q2, q3)


def test_before_any_chunk_it_holds_the_measured_position():
    s = ChunkStream(J, LIM)
    assert s.tick(0.0, None)[0] is None  # nothing known: send nothing
    # measured far out of limits: clamping it would be a jump, so nothing is commanded
    assert s.tick(0.01, np.full(7, 5.0))[0] is None
    assert 'outside the joint limits' in s.hold_reason
    # just past a limit (within one command's velocity budget): clamped hold
    q, _ = s.tick(0.02, np.full(7, 2.0 + 0.5 * LIM.velocity[0] * s.max_dt))
    assert np.array_equal(q, np.full(7, 2.0))
    q, _ = s.tick(0.03, np.full(7, 0.5))
    assert np.array_equal(q, np.full(7, 2.0))  # holding; a 1.5 rad move is no re-sync (off)


def test_a_chunk_before_any_joint_state_commands_nothing():
    # an executor restarted while the motor keeps publishing: the chunk's target is 2.5 rad
    # from where the arm is; nothing may be sent until the arm's position is measured, then
    # the command moves from there at the velocity limit
    s = ChunkStream(J, LIM)
    chunk(s, np.full((8, 7), 1.9), t0=0.0, now=0.0)
    for t in (0.0, 0.01, 0.02):
        assert s.tick(t, None) == (None, None)
    q0, _ = s.tick(0.03, np.full(7, -0.6))
    assert np.array_equal(q0, np.full(7, -0.6))
    q1, _ = s.tick(0.04, np.full(7, -0.6))
    assert np.allclose(q1, -0.6 + LIM.velocity * DT)


def test_gripper_obeys_its_joint_limits():
    lim = ExecutorLimits(LIM.lower, LIM.upper, LIM.velocity, gripper_open=0.04,
                         gripper_closed=0.0, gripper_velocity=0.2)
    s = ChunkStream(J, lim)
    chunk(s, np.zeros((8, 7)), t0=0.0, now=0.0, gripper=np.ones(8))  # close at once
    fingers = [s.tick(t, np.zeros(7), 0.04)[1] for t in np.arange(0.0, 0.25, DT)]
    steps = np.abs(np.diff(fingers))
    assert fingers[0] == 0.04 and np.all(steps <= 0.2 * DT + 1e-12)
    assert fingers[-1] == pytest.approx(0.0)  # closed after 0.2 s at 0.2 m/s


def test_first_command_moves_from_the_measured_position_at_the_velocity_limit():
    s = ChunkStream(J, LIM)
    chunk(s, np.ones((8, 7)), t0=0.0, now=0.0)  # 1 rad away from where the arm is
    q0, _ = s.tick(0.0, np.zeros(7))
    q1, _ = s.tick(DT, np.zeros(7))
    assert np.array_equal(q0, np.zeros(7))
    assert np.allclose(q1, LIM.velocity * DT)
