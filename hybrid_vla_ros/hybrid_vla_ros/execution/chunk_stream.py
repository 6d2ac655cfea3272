"""The chunk executor's logic: blend chunks in time, enforce limits, hold when in doubt.

A motor policy publishes chunks of H joint targets every ~50 ms, each starting at its stamp;
consecutive chunks overlap. At every controller tick the executor samples the newest chunk at the
current time (each step's target held for its step) and cross-fades from the previous one over
``blend_time`` (a real-time-chunking
style blend: the command stays continuous when a new chunk disagrees with the old). The result
is clamped to the joint position limits and rate-limited to the velocity limits. It holds (repeats
the last safe command) when there is no chunk, when the newest chunk has run out or is older
than ``chunk_timeout``, when the joint states stop, when the heartbeat from upstream is lost,
or on an e-stop.

The safety contract, for any sequence of inputs (property-tested in
``test/test_chunk_stream_properties.py``):

* nothing is commanded before a valid measured position is known (after :meth:`clear` too);
* every command is finite and inside the position limits (arm joints and gripper joint);
* every command differs from the previous one by at most ``velocity * dt`` per joint, where
  ``dt`` is the clock time since the previous command, capped at ``max_dt`` (a stalled
  executor resumes at the velocity limit, it never catches up with a jump); the first command
  after a (re)start or a re-sync is within ``velocity * max_dt`` of the measured position;
* the gripper command obeys the gripper joint's position and velocity limits in the same way,
  starting from its measured position.
"""
from dataclasses import dataclass
import math
from typing import Optional, Sequence

import numpy as np


class ChunkRejectedError(ValueError):
    """A chunk failed validation and was dropped (the executor keeps what it had)."""


@dataclass
class Chunk:
    """One action chunk in the executor's joint order."""

    t0: float                 # time of the first step (s)
    step: float               # seconds between steps
    positions: np.ndarray     # (H, J)
    gripper: np.ndarray       # (H,)
    received: float           # arrival time (s)
    expert: str = ''

    @property
    def t_end(self) -> float:
        return self.t0 + self.step * (len(self.positions) - 1)

    ramp: float = 0.0         # s to move from step k-1's target to step k's (0: a jump)
    entry: Optional[tuple] = None  # (q, g) commanded at t0: where step 0's ramp starts

    def sample(self, t: float):
        """Step ``k``'s target during [t0 + k step, t0 + (k + 1) step), reached from step
        k-1's along a straight line over the first ``ramp`` s of the step (clamped to the
        chunk's span; with ``ramp`` = step, the chunk's targets joined by lines, each reached at
        the end of its step; step 0's line starts at ``entry``, the command when the chunk
        took over). This is what a chunk means to the policies, which were trained and evaluated
        holding each step's target for its step: interpolating towards the *next* step's
        target instead commands the arm ahead of the policy and, while it servos at a target,
        makes it drift millimetres past it. The ramp keeps the command continuous (no jerk
        spike at step boundaries); continuity between chunks is the stream's blend."""
        k = min(max(math.floor((t - self.t0) / self.step), 0), len(self.positions) - 1)
        into = t - self.t0 - k * self.step
        if into >= self.ramp or (k == 0 and self.entry is None):
            return self.positions[k], float(self.gripper[k])
        q0, g0 = (self.positions[k - 1], self.gripper[k - 1]) if k else self.entry
        a = max(into, 0.0) / self.ramp  # linear: constant velocity within a step
        return (1 - a) * q0 + a * self.positions[k], float((1 - a) * g0 + a * self.gripper[k])


@dataclass(frozen=True)
class ExecutorLimits:
    """Position and velocity limits in the controller's joint order, and the gripper joint's.

    The gripper command 0 (open) .. 1 (closed) maps linearly to the gripper joint's position
    ``gripper_open`` .. ``gripper_closed`` (joint units, e.g. m); ``gripper_velocity`` is its
    velocity limit in the same units per second. The defaults make the gripper position the
    0..1 command itself, unlimited in velocity.
    """

    lower: np.ndarray         # (J,) rad
    upper: np.ndarray         # (J,) rad
    velocity: np.ndarray      # (J,) rad/s
    gripper_open: float = 0.0
    gripper_closed: float = 1.0
    gripper_velocity: float = math.inf

    def gripper_position(self, g: float) -> float:
        """Gripper joint position for a 0 (open) .. 1 (closed) command."""
        return self.gripper_open + (self.gripper_closed - self.gripper_open) * g

    @property
    def gripper_range(self):
        return (min(self.gripper_open, self.gripper_closed),
                max(self.gripper_open, self.gripper_closed))


#: Bounds of a chunk's timing a controller can execute (s); a horizon above ``MAX_HORIZON``
#: steps is a malformed message, not a plan.
MIN_STEP, MAX_STEP, MAX_HORIZON = 1e-3, 10.0, 10000


class ChunkStream:
    """Turns a stream of chunks into safe per-tick joint commands.

    :param joint_names: the controller's joint order.
    :param limits: position and velocity limits in that order, and the gripper's.
    :param blend_time: cross-fade duration from the previous chunk to a new one (s).
    :param chunk_timeout: no new chunk for this long (upstream dead or stalled) -> hold (s).
        A chunk whose first step is more than this in the past (stale: delayed in transport or
        by a hung producer) or in the future (clocks disagree) is rejected.
    :param heartbeat_timeout: if > 0, a heartbeat (e.g. an operator's dead-man switch) must
        arrive at least this often, else hold (s). 0 disables the heartbeat requirement.
    :param resync_tolerance: if > 0 and the measured position is further than this (rad, any
        joint) from the last command, the command restarts from the measured position (the arm
        was moved by something else, e.g. a simulator reset or a collision): the executor then
        holds / moves on from where the arm is instead of dragging it back. 0 disables.
    :param max_dt: the longest time one command's velocity budget covers (s), normally two
        controller periods.
    :param state_timeout: if > 0 and the measured position passed to :meth:`tick` with its
        time is older than this, hold (the plant or its driver stopped reporting) (s).
    """

    def __init__(self, joint_names: Sequence[str], limits: ExecutorLimits, *,
                 blend_time: float = 0.05, chunk_timeout: float = 0.3,
                 heartbeat_timeout: float = 0.0, resync_tolerance: float = 0.0,
                 max_dt: float = 0.02, state_timeout: float = 0.0):
        self.joint_names = list(joint_names)
        self.limits = limits
        n = len(self.joint_names)
        for key in ('lower', 'upper', 'velocity'):
            v = np.asarray(getattr(limits, key), dtype=float)
            if v.shape != (n,) or not np.all(np.isfinite(v)):
                raise ValueError(f'limits.{key}: expected {n} finite values, got {v}')
        if np.any(limits.lower > limits.upper) or np.any(limits.velocity <= 0):
            raise ValueError('limits: expected lower <= upper and velocity > 0 for every joint')
        if not limits.gripper_velocity > 0:
            raise ValueError(f'limits.gripper_velocity must be > 0, got {limits.gripper_velocity}')
        if not (max_dt > 0 and math.isfinite(max_dt)):
            raise ValueError(f'max_dt must be > 0 s, got {max_dt}')
        self.blend_time = float(blend_time)
        self.chunk_timeout = float(chunk_timeout)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.resync_tolerance = float(resync_tolerance)
        self.max_dt = float(max_dt)
        self.state_timeout = float(state_timeout)
        self.n_resyncs = 0
        self.n_seeds = 0   # starts from a measured position (first, after clear, re-sync)
        self.current: Optional[Chunk] = None
        self.switch_time = -np.inf
        self.last_cmd: Optional[np.ndarray] = None   # (J,) last arm command
        self.blend_from = None
        self.last_grip = 0.0                          # last 0..1 gripper target (from chunks)
        self.last_grip_cmd: Optional[float] = None    # last gripper joint command
        self.last_tick: Optional[float] = None
        self.estop = False
        self.last_heartbeat = -np.inf
        self.hold_reason = 'no chunk yet'
        self.n_rejected = 0
        self.n_clamped = 0

    # ------------------------------------------------------------------ input
    def add_chunk(self, *, joint_names: Sequence[str], positions: Sequence[float],
                  gripper: Sequence[float], horizon: int, t0: float, step: float, now: float,
                  expert: str = '') -> Chunk:
        """Validate and accept a chunk (raises :class:`ChunkRejectedError`)."""
        try:
            chunk = self._validate(joint_names, positions, gripper, horizon, t0, step, now,
                                   expert)
            if self.current is not None and chunk.t0 < self.current.t0:
                raise ChunkRejectedError(
                    f'chunk starts at {chunk.t0:.3f} s, before the executing one '
                    f'({self.current.t0:.3f} s): out of order, dropped')
        except ChunkRejectedError:
            self.n_rejected += 1
            raise
        # Blend from the command function in effect now (itself possibly mid-blend), so a chunk
        # that arrives during a blend still starts from a continuous command.
        self.blend_from = self._command_fn(now)
        if self.blend_from is not None:  # step 0's target is reached from the command at t0
            q, g = self.blend_from(chunk.t0)
            chunk.entry = (np.array(q, dtype=float), float(g))
        self.current = chunk
        self.switch_time = now
        return chunk

    def _command_fn(self, now: float):
        """t -> (q, g) of what is being executed at ``now`` (None before the first command)."""
        if self.last_cmd is not None and (self.current is None or self.hold_reason):
            held = (self.last_cmd.copy(), self.last_grip)
            return lambda t: held
        cur, prev, ts, bt = self.current, self.blend_from, self.switch_time, self.blend_time
        if cur is None:
            return None
        if prev is None or now - ts >= bt:
            return cur.sample  # the older chain is no longer needed: drop it

        def blended(t):
            q, g = cur.sample(t)
            if t - ts >= bt:
                return q, g
            a = (t - ts) / bt
            a = a * a * (3 - 2 * a)  # smoothstep: no velocity jump at either end
            q_old, g_old = prev(t)
            return (1 - a) * q_old + a * q, (1 - a) * g_old + a * g
        return blended

    def _validate(self, joint_names, positions, gripper, horizon, t0, step, now, expert):
        try:
            names = [str(n) for n in joint_names]
            H = int(horizon)
            p = np.asarray(positions, dtype=float).reshape(-1)
            g = np.asarray(gripper, dtype=float).reshape(-1)
            t0, step, now = float(t0), float(step), float(now)
        except (TypeError, ValueError, OverflowError) as e:
            raise ChunkRejectedError(f'malformed chunk: {e}') from None
        unknown = sorted(set(names) - set(self.joint_names))
        if unknown:
            raise ChunkRejectedError(f'unknown joints {unknown[:8]}; this arm has '
                                     f'{self.joint_names}')
        if sorted(names) != sorted(self.joint_names):
            raise ChunkRejectedError(f'chunk names {names[:16]}, expected each of '
                                     f'{self.joint_names} once')
        if not 0 < H <= MAX_HORIZON or p.size != H * len(names):
            raise ChunkRejectedError(f'positions has {p.size} values, expected horizon {H} x '
                                     f'{len(names)} joints = {H * len(names)} '
                                     f'(horizon 1..{MAX_HORIZON})')
        if g.size not in (0, H):
            raise ChunkRejectedError(f'gripper has {g.size} values, expected 0 or {H}')
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(g))):
            raise ChunkRejectedError('chunk contains NaN/Inf')
        if not (math.isfinite(step) and MIN_STEP <= step <= MAX_STEP and math.isfinite(t0)):
            raise ChunkRejectedError(f'bad timing: step {step} s (expected {MIN_STEP}..'
                                     f'{MAX_STEP}), t0 {t0}')
        if now - t0 > self.chunk_timeout:
            raise ChunkRejectedError(f'stale: its first step is {now - t0:.3f} s old '
                                     f'(chunk_timeout {self.chunk_timeout} s)')
        if t0 - now > self.chunk_timeout:
            raise ChunkRejectedError(f'starts {t0 - now:.3f} s in the future: the clocks of '
                                     'the motor policy and the executor disagree')
        order = [names.index(j) for j in self.joint_names]
        # Targets beyond the limits are clamped here already (the tick clamps again), so the
        # blend arithmetic never sees huge values.
        p = np.clip(p.reshape(H, len(names))[:, order], self.limits.lower, self.limits.upper)
        if g.size == 0:
            g = np.full(H, self.last_grip)
        return Chunk(t0, step, p, np.clip(g, 0.0, 1.0), now, expert,
                     min(self.blend_time, step))

    def clear(self) -> None:
        """Forget the chunks and the last command: the next tick holds at the measured position
        it is given (after the arm was moved by something else, e.g. a simulator reset)."""
        self.current = self.blend_from = self.last_cmd = self.last_tick = None
        self.last_grip_cmd = None
        self.switch_time = -np.inf
        self.hold_reason = 'no chunk yet'

    def heartbeat(self, now: float) -> None:
        self.last_heartbeat = now

    # ------------------------------------------------------------------ output
    def _measured(self, measured, measured_gripper):
        """The measurement if it is usable: (J,) finite, and the gripper's if finite."""
        q = None
        if measured is not None:
            q = np.asarray(measured, dtype=float).reshape(-1)
            if q.shape != (len(self.joint_names),) or not np.all(np.isfinite(q)):
                q = None
        gm = None
        if measured_gripper is not None and math.isfinite(float(measured_gripper)):
            gm = float(measured_gripper)
        return q, gm

    def _seed(self, q: np.ndarray) -> bool:
        """Start commanding from the measured position ``q``; False if it is out of the
        position limits by more than one command may move (then nothing is commanded)."""
        budget = self.limits.velocity * self.max_dt
        if np.any(q < self.limits.lower - budget) or np.any(q > self.limits.upper + budget):
            return False
        self.last_cmd = np.clip(q, self.limits.lower, self.limits.upper)
        self.n_seeds += 1
        return True

    def _gripper_command(self, g: float, dt: float, measured_g: Optional[float]):
        """Gripper joint command for the 0..1 target ``g`` within the gripper's limits, or None
        while its position is unknown (nothing is sent for the gripper then)."""
        lo, hi = self.limits.gripper_range
        if self.last_grip_cmd is None:
            if measured_g is None or not lo - self.limits.gripper_velocity * self.max_dt \
                    <= measured_g <= hi + self.limits.gripper_velocity * self.max_dt:
                return None
            self.last_grip_cmd = min(max(measured_g, lo), hi)
            dt = 0.0  # the first command is the measured position itself
        target = min(max(self.limits.gripper_position(g), lo), hi)
        step = self.limits.gripper_velocity * dt
        cmd = min(max(target, self.last_grip_cmd - step), self.last_grip_cmd + step)
        self.last_grip_cmd = min(max(cmd, lo), hi)
        return self.last_grip_cmd

    def _hold(self, reason: str, measured_g):
        self.hold_reason = reason
        if self.last_cmd is None:
            return None, None
        return self.last_cmd.copy(), self._gripper_command(self.last_grip, 0.0, measured_g)

    def tick(self, now: float, measured: Optional[np.ndarray] = None,
             measured_gripper: Optional[float] = None, measured_time: Optional[float] = None):
        """The command for time ``now``: (joint positions (J,) or None, gripper joint position
        or None).

        ``measured`` (J,) is the arm's measured position, ``measured_gripper`` the gripper
        joint's (both optional; NaN/Inf or wrong sizes count as missing), ``measured_time`` when
        they were measured (for ``state_timeout``). A None is returned for what must not be
        commanded: the joints before any valid measured position is known, the gripper before
        its measured position is known.
        """
        now = float(now)
        if not math.isfinite(now):
            return self._hold('the clock is not finite', None)
        if self.last_tick is None:
            dt = 0.0
            self.last_tick = now
        else:  # a clock that steps back does not earn a velocity budget
            dt = min(max(0.0, now - self.last_tick), self.max_dt)
            self.last_tick = max(self.last_tick, now)
        q_meas, g_meas = self._measured(measured, measured_gripper)
        if q_meas is not None and self.state_timeout > 0 and measured_time is not None \
                and now - measured_time > self.state_timeout:
            return self._hold(f'no joint state for {now - measured_time:.2f} s', None)
        if self.last_cmd is None:
            if q_meas is None:
                self.hold_reason = 'no joint state yet'
                return None, None
            if not self._seed(q_meas):
                self.hold_reason = 'measured position outside the joint limits'
                return None, None
            dt = 0.0  # the first command is the measured position itself
            self.last_grip_cmd = None
        elif self.resync_tolerance > 0 and q_meas is not None \
                and np.max(np.abs(q_meas - self.last_cmd)) > self.resync_tolerance:
            if not self._seed(q_meas):
                self.last_cmd = None
                self.hold_reason = 'measured position outside the joint limits'
                return None, None
            self.n_resyncs += 1
            self.last_grip_cmd = None  # the gripper restarts from its measured position too
            dt = 0.0
        c = self.current
        if self.estop:
            return self._hold('e-stop', g_meas)
        if self.heartbeat_timeout > 0 and now - self.last_heartbeat > self.heartbeat_timeout:
            return self._hold('heartbeat lost', g_meas)
        if c is None:
            return self._hold('no chunk yet', g_meas)
        if now - c.received > self.chunk_timeout:
            return self._hold(f'no new chunk for {now - c.received:.2f} s (upstream dead or '
                              'stalled)', g_meas)
        q, g = self._command_fn(now)(now)
        q = np.asarray(q, dtype=float)
        if not (np.all(np.isfinite(q)) and math.isfinite(g)):  # defensive: never sent
            return self._hold('non-finite command computed', g_meas)
        self.hold_reason = ''
        q = np.clip(q, self.limits.lower, self.limits.upper)
        max_step = self.limits.velocity * dt
        q_lim = np.clip(q, self.last_cmd - max_step, self.last_cmd + max_step)
        if np.any(q_lim != q):
            self.n_clamped += 1
        q = np.clip(q_lim, self.limits.lower, self.limits.upper)
        self.last_cmd, self.last_grip = q.copy(), float(min(max(g, 0.0), 1.0))
        return q, self._gripper_command(self.last_grip, dt, g_meas)


# The chunk_executor node's parameter defaults. The ROS-free evaluation executes chunks through
# a stream built from the same values (:func:`executor_stream`), so both run one executor.
EXECUTOR_DEFAULTS = {'rate': 100.0, 'blend_time': 0.05, 'chunk_timeout': 0.3,
                     'heartbeat_timeout': 0.0, 'velocity_scale': 0.9,
                     'joint_state_timeout': 0.5, 'resync_tolerance': 0.3}


def robot_limits(robot, velocity_scale: float = 1.0) -> ExecutorLimits:
    """The :class:`ExecutorLimits` of a :class:`~hybrid_vla_ros.robot.RobotModel`: its URDF
    position limits, its velocity limits (arm and gripper) times ``velocity_scale``, and its
    closure -> gripper joint mapping."""
    return ExecutorLimits(lower=robot.lower.copy(), upper=robot.upper.copy(),
                          velocity=velocity_scale * robot.velocity,
                          gripper_open=float(robot.gripper_open),
                          gripper_closed=float(robot.gripper_closed),
                          gripper_velocity=velocity_scale * float(robot.gripper_velocity))


def executor_stream(robot, **settings) -> ChunkStream:
    """The chunk executor's stream for ``robot``: ``settings`` are the node's parameters
    (:data:`EXECUTOR_DEFAULTS` for any not given)."""
    unknown = sorted(set(settings) - set(EXECUTOR_DEFAULTS))
    if unknown:
        raise ValueError(f'unknown executor settings {unknown}; known: '
                         f'{sorted(EXECUTOR_DEFAULTS)}')
    s = {**EXECUTOR_DEFAULTS, **settings}
    if not 0.0 < s['velocity_scale'] <= 1.0 or s['rate'] <= 0:
        raise ValueError('velocity_scale must be in (0, 1] and rate > 0')
    return ChunkStream(list(robot.joint_names), robot_limits(robot, s['velocity_scale']),
                       blend_time=s['blend_time'], chunk_timeout=s['chunk_timeout'],
                       heartbeat_timeout=s['heartbeat_timeout'],
                       resync_tolerance=s['resync_tolerance'], max_dt=2.0 / s['rate'],
                       state_timeout=s['joint_state_timeout'])
