"""The chunk executor's logic: blend chunks in time, enforce limits, hold when in doubt.

A motor policy publishes chunks of H joint targets every ~50 ms, each starting at its stamp;
consecutive chunks overlap. At every controller tick the executor samples the newest chunk at the
current time (each step's target held for its step) and cross-fades from the previous one over
``blend_time`` (a real-time-chunking
style blend: the command stays continuous when a new chunk disagrees with the old). The result
is clamped to the joint position limits and rate-limited to the velocity limits. It holds (repeats
the last safe command) when there is no chunk, when the newest chunk has run out or is older
than ``chunk_timeout``, when the heartbeat from upstream is lost, or on an e-stop.
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
    lower: np.ndarray         # (J,) rad
    upper: np.ndarray         # (J,) rad
    velocity: np.ndarray      # (J,) rad/s


class ChunkStream:
    """Turns a stream of chunks into safe per-tick joint commands.

    :param joint_names: the controller's joint order.
    :param limits: position and velocity limits in that order.
    :param blend_time: cross-fade duration from the previous chunk to a new one (s).
    :param chunk_timeout: no new chunk for this long (upstream dead or stalled) -> hold (s).
    :param heartbeat_timeout: if > 0, a heartbeat (e.g. an operator's dead-man switch) must
        arrive at least this often, else hold (s). 0 disables the heartbeat requirement.
    :param resync_tolerance: if > 0 and the measured position is further than this (rad, any
        joint) from the last command, the command restarts from the measured position (the arm
        was moved by something else, e.g. a simulator reset or a collision): the executor then
        holds / moves on from where the arm is instead of dragging it back. 0 disables.
    """

    def __init__(self, joint_names: Sequence[str], limits: ExecutorLimits, *,
                 blend_time: float = 0.05, chunk_timeout: float = 0.3,
                 heartbeat_timeout: float = 0.0, resync_tolerance: float = 0.0):
        self.joint_names = list(joint_names)
        self.limits = limits
        self.blend_time = float(blend_time)
        self.chunk_timeout = float(chunk_timeout)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.resync_tolerance = float(resync_tolerance)
        self.n_resyncs = 0
        self.current: Optional[Chunk] = None
        self.switch_time = -np.inf
        self.last_cmd: Optional[np.ndarray] = None
        self.blend_from = None
        self.last_grip = 0.0
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
        except ChunkRejectedError:
            self.n_rejected += 1
            raise
        if self.current is not None and chunk.t0 < self.current.t0:
            self.n_rejected += 1
            raise ChunkRejectedError(f'chunk starts at {chunk.t0:.3f} s, before the executing one '
                                f'({self.current.t0:.3f} s): out of order, dropped')
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
        names = list(joint_names)
        unknown = sorted(set(names) - set(self.joint_names))
        if unknown:
            raise ChunkRejectedError(f'unknown joints {unknown}; this arm has {self.joint_names}')
        if sorted(names) != sorted(self.joint_names):
            raise ChunkRejectedError(f'chunk names {names}, expected each of {self.joint_names}')
        H = int(horizon)
        p = np.asarray(positions, dtype=float)
        if H <= 0 or p.size != H * len(names):
            raise ChunkRejectedError(f'positions has {p.size} values, expected horizon {H} x '
                                f'{len(names)} joints = {H * len(names)}')
        g = np.asarray(gripper, dtype=float)
        if g.size not in (0, H):
            raise ChunkRejectedError(f'gripper has {g.size} values, expected 0 or {H}')
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(g))):
            raise ChunkRejectedError('chunk contains NaN/Inf')
        if not (np.isfinite(step) and step > 0 and np.isfinite(t0)):
            raise ChunkRejectedError(f'bad timing: step {step}, t0 {t0}')
        order = [names.index(j) for j in self.joint_names]
        p = p.reshape(H, len(names))[:, order]
        if g.size == 0:
            g = np.full(H, self.last_grip)
        return Chunk(float(t0), float(step), p, np.clip(g, 0.0, 1.0), float(now), expert,
                     min(self.blend_time, float(step)))

    def clear(self) -> None:
        """Forget the chunks and the last command: the next tick holds at the measured position
        it is given (after the arm was moved by something else, e.g. a simulator reset)."""
        self.current = self.blend_from = self.last_cmd = self.last_tick = None
        self.switch_time = -np.inf
        self.hold_reason = 'no chunk yet'

    def heartbeat(self, now: float) -> None:
        self.last_heartbeat = now

    # ------------------------------------------------------------------ output
    def _hold(self, reason: str, measured: Optional[np.ndarray]):
        self.hold_reason = reason
        if self.last_cmd is None:
            if measured is None:
                return None, self.last_grip
            self.last_cmd = np.clip(measured, self.limits.lower, self.limits.upper)
        return self.last_cmd.copy(), self.last_grip

    def tick(self, now: float, measured: Optional[np.ndarray] = None):
        """The command for time ``now``: (joint positions (J,) or None, gripper 0..1).

        ``measured`` (J,) seeds the hold position before any command was sent. Returns None for
        the joints only if nothing is known yet (then nothing may be sent).
        """
        dt = 0.0 if self.last_tick is None else max(0.0, now - self.last_tick)
        self.last_tick = now
        if self.resync_tolerance > 0 and self.last_cmd is not None and measured is not None \
                and np.max(np.abs(np.asarray(measured) - self.last_cmd)) > self.resync_tolerance:
            self.last_cmd = np.clip(measured, self.limits.lower, self.limits.upper)
            self.n_resyncs += 1
        c = self.current
        if self.estop:
            return self._hold('e-stop', measured)
        if self.heartbeat_timeout > 0 and now - self.last_heartbeat > self.heartbeat_timeout:
            return self._hold('heartbeat lost', measured)
        if c is None:
            return self._hold('no chunk yet', measured)
        if now - c.received > self.chunk_timeout:
            return self._hold(f'no new chunk for {now - c.received:.2f} s (upstream dead or '
                              'stalled)', measured)
        self.hold_reason = ''
        q, g = self._command_fn(now)(now)
        q = np.clip(q, self.limits.lower, self.limits.upper)
        if self.last_cmd is None and measured is not None:
            self.last_cmd = np.clip(measured, self.limits.lower, self.limits.upper)
        if self.last_cmd is not None:  # first tick: dt = 0, so no move before a rate is known
            max_step = self.limits.velocity * dt
            q_lim = np.clip(q, self.last_cmd - max_step, self.last_cmd + max_step)
            if np.any(q_lim != q):
                self.n_clamped += 1
            q = q_lim
        self.last_cmd, self.last_grip = q.copy(), float(g)
        return q, float(g)
