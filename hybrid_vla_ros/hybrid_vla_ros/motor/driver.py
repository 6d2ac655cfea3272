"""The motor level's logic without ROS: :class:`MotorCore` (the ``motor_policy`` node's
adaptee: the waypoints followed, the expert in use, one chunk from a state) and
:class:`PolicyDriver`, which drives it in closed loop from the sim rollout's observations.

The driver re-plans every control step (receding horizon) unless ``exec_steps`` > 1, in which
case it executes that many steps of each chunk open loop. ACT's temporal ensemble
(:mod:`.ensemble`) is applied by :class:`MotorCore` itself with each expert's own size (its
checkpoint's ``ensemble``) unless ``ensemble`` = m >= 1 overrides it, so the ``motor_policy``
node (its ``ensemble`` parameter) and the ROS-free loops ensemble the same way. Used by the
ROS-free evaluation (``evaluation/motor_eval.py``, ``evaluation/hierarchy_eval.py``) and
DAgger collection (``data/dagger.py``).
"""
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .ensemble import TemporalEnsemble
from .features import WaypointTracker, waypoint_vector
from .policy import MotorPolicy


class MotorCore:
    """``policy``: the loaded experts; ``expert``: the one used until :meth:`on_expert` says
    otherwise; ``kinematics`` (optional): the robot's FK, for :meth:`act` without a tool pose;
    ``waypoint_timeout``: no waypoints for this long (s) = no task (:meth:`has_task`; 0 =
    never); ``reach``: waypoints further from the base are refused; ``ensemble``: ACT's
    temporal ensemble of the last m chunks (1 = off) whose steps are ``step_s`` apart, for
    every expert; None or 0 = each expert's own setting (its checkpoint's ``ensemble``)."""

    def __init__(self, policy: MotorPolicy, expert: str, *, kinematics=None,
                 steps: Optional[int] = None, waypoint_timeout: float = 0.0,
                 reach: float = float('inf'), ensemble: Optional[int] = None,
                 step_s: float = 0.05):
        if expert not in policy.experts:
            raise ValueError(f'expert {expert!r} is not loaded ({sorted(policy.experts)})')
        if ensemble is not None and int(ensemble) < 0:
            raise ValueError(f'ensemble must be >= 0 (0 = each expert\'s own), got {ensemble}')
        self.policy, self.expert, self.kin, self.steps = policy, expert, kinematics, steps
        self.waypoint_timeout = float(waypoint_timeout)
        self.tracker = WaypointTracker(reach=reach)
        self.ensemble_override = int(ensemble) if ensemble else None
        self.ensemble = TemporalEnsemble(self.ensemble_size(expert), step_s)
        self.subgoal_id = ''
        self.wp_time = -np.inf

    def on_waypoints(self, subgoal_id: str, waypoints: Sequence[np.ndarray], now: float) -> None:
        """The waypoints of ``subgoal_id`` ((8,) vectors, :func:`waypoint_vector`), received at
        ``now``. A different set starts at its first waypoint; the same set again (the tactical
        level re-publishes it) keeps the waypoint being tracked. ValueError (nothing changes)
        for waypoints no arm can follow (:class:`WaypointTracker`)."""
        wps = [np.asarray(w, np.float32).reshape(-1) for w in waypoints]
        same = subgoal_id == self.subgoal_id and len(wps) == len(self.tracker.waypoints) and \
            all(np.array_equal(a, b) for a, b in zip(wps, self.tracker.waypoints))
        if not same:
            self.tracker.set_waypoints(wps)
            self.ensemble.reset()
        self.subgoal_id, self.wp_time = subgoal_id, float(now)

    def ensemble_size(self, expert: str) -> int:
        """The temporal ensemble ``expert`` runs with here (the override, else its own)."""
        return self.policy.ensemble_size(expert, self.ensemble_override)

    def on_expert(self, name: str) -> bool:
        """Use ``name`` from now on; False (the expert in use stays) if it is not loaded.
        The ensemble takes the new expert's size; its earlier chunks are kept when the size
        stays (they predict the same instants), dropped when it changes."""
        if name not in self.policy.experts:
            return False
        size = self.ensemble_size(name)
        if size != self.ensemble.size:
            self.ensemble.size = size
            self.ensemble.reset()
        self.expert = name
        return True

    def has_task(self, now: float) -> bool:
        """There are waypoints, received within ``waypoint_timeout``."""
        return bool(self.tracker.waypoints) and not (
            self.waypoint_timeout > 0 and now - self.wp_time > self.waypoint_timeout)

    def act(self, state, tool_pos=None, tool_quat=None, generator=None, now: float = 0.0):
        """One chunk of the expert in use from ``state`` toward the tracked waypoint: (chunk
        (H, n+1), coarse chunk or None, inference ms). The tool pose is FK of the state's arm
        joints unless given. ``now``: the time of the chunk's first step (s), for the temporal
        ensemble. ValueError for a bad state (nothing is produced)."""
        state = np.asarray(state, float)
        if tool_pos is None:
            tool_pos, tool_quat = self.kin.fk(state[:self.policy.state_dim - 1])
        wp = self.tracker.update(tool_pos)
        chunk, coarse, ms = self.policy.act(self.expert, state, wp, tool_pos, tool_quat,
                                            steps=self.steps, generator=generator)
        return self.ensemble(chunk, now), coarse, ms


class PolicyDriver:
    """Adapts :class:`MotorPolicy` to the sim rollout's ``policy(obs)`` callable.

    ``choose(obs)`` picks the expert per step (a fixed name, or the router).
    """

    def __init__(self, policy: MotorPolicy, choose: Callable[[dict], str], *,
                 steps: Optional[int] = None, exec_steps: int = 1, seed: int = 0,
                 ensemble: Optional[int] = None):
        import torch
        self.policy, self.choose, self.steps = policy, choose, steps
        self.exec_steps = max(1, int(exec_steps))
        self.core = MotorCore(policy, next(iter(policy.experts)), steps=steps,
                              ensemble=ensemble, step_s=1.0)
        self.t = 0        # control steps so far: the ensemble's clock
        self.key = None
        self.queue = []
        self.latencies_ms = []
        self.experts_used: Dict[str, int] = {}
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, obs: dict):
        key = (obs['subgoal_index'], tuple(tuple(w['pos']) for w in obs['waypoints']))
        if key != self.key:
            self.core.on_waypoints(str(obs['subgoal_index']),
                                   [waypoint_vector(w['pos'], w['quat'], w['gripper'])
                                    for w in obs['waypoints']], 0.0)
            self.key, self.queue = key, []
        if self.queue:   # an open-loop step: via-points pass meanwhile too
            self.core.tracker.update(obs['tool_pos'])
        else:
            name = self.choose(obs)
            if not self.core.on_expert(name):
                raise ValueError(f'unknown expert {name!r}: loaded are '
                                 f'{sorted(self.policy.experts)}')
            chunk, _, ms = self.core.act(obs['state'], obs['tool_pos'], obs['tool_quat'],
                                         generator=self.generator, now=float(self.t))
            self.latencies_ms.append(ms)
            self.experts_used[name] = self.experts_used.get(name, 0) + 1
            self.queue = list(chunk[:self.exec_steps])
        self.t += 1
        a = self.queue.pop(0)  # the arm joints, then the gripper closure
        return a[:-1], float(np.clip(a[-1], 0.0, 1.0))
