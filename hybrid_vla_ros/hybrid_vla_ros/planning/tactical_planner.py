"""Tactical planner (level 2, ~5 Hz): active sub-goal + observation -> a short list of waypoints.

A small MLP trained on the scripted expert's waypoints (``sim.scripted_expert.waypoints``): it
predicts how many waypoints the sub-goal needs (1 for direct moves and gripper actions, 3 for
the via-points over the ``detour`` wall) and, per waypoint, the TCP position (as an offset from
the sub-goal target), orientation, gripper and time from start. Outputs are made finite,
unit-quaternion, time-monotonic and clipped to ``TACTICAL_WORKSPACE``.

Inputs (all task space, so the level is robot-agnostic): the sub-goal (skill, target pose,
gripper), the measured TCP pose and gripper, and the obstacle position when the scene has one
(from the strategic level's grounding, ``Plan.scene['obstacle']``, or perception).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..domain.rotations import quat_to_mat
from ..domain.types import Waypoint, subgoal_target
from ..domain.vocabulary import SKILL_ALLOW_LIST
from .skills import PlanningError

MAX_WAYPOINTS = 3
# TCP workspace (base frame, m): the reachable box above the table
# waypoint bounds (base frame, m) in the reference workspace (``sim.workspace.REFERENCE``);
# :func:`tactical_workspace` maps them into a robot's workspace
TACTICAL_WORKSPACE = (np.array([0.15, -0.45, 0.0]), np.array([0.85, 0.45, 0.45]))


def tactical_workspace(robot=None):
    """The waypoint bounds of ``robot`` (a model, name or YAML; None = the default robot):
    :data:`TACTICAL_WORKSPACE` mapped into its workspace."""
    from ..robot import load_robot
    from ..sim.workspace import workspace_of
    ws = workspace_of(load_robot() if robot is None else load_robot(robot))
    lo, hi = TACTICAL_WORKSPACE
    return (np.array([ws.x(lo[0]), ws.y(lo[1]), lo[2]]),
            np.array([ws.x(hi[0]), ws.y(hi[1]), hi[2]]))
_CENTER = np.array([0.5, 0.0, 0.15])
_POS_SCALE = 0.3    # m
_TIME_SCALE = 5.0   # s
FEATURE_DIM = len(SKILL_ALLOW_LIST) + 3 + 4 + 1 + 3 + 3 + 4 + 1 + 1 + 2 + 2
OUT_PER_WP = 3 + 4 + 1 + 1


def _canon(q, ref) -> np.ndarray:
    """Unit quaternion in the hemisphere of ``ref`` (q and -q are the same rotation)."""
    q = np.asarray(q, float)
    q = q / max(np.linalg.norm(q), 1e-9)
    return -q if np.dot(q, ref) < 0 else q


def _subgoal_fields(sg) -> tuple:
    skill, p, q, g = subgoal_target(sg)
    if skill not in SKILL_ALLOW_LIST:
        raise PlanningError(f'sub-goal skill {skill!r} is not allow-listed')
    p, q = np.asarray(p, float), np.asarray(q, float)
    if p.shape != (3,) or q.shape != (4,) or not (np.all(np.isfinite(p))
                                                  and np.all(np.isfinite(q))):
        raise PlanningError(f'sub-goal target must be finite xyz + quat, got {p}, {q}')
    return skill, p, q / np.linalg.norm(q), float(g)


def obstacle_from_objects(objects: dict):
    """Obstacle descriptor {'pos', 'yaw'} from ``ArmSim.object_poses()`` (None if absent)."""
    ob = objects.get('obstacle') if objects else None
    if ob is None:
        return None
    R = quat_to_mat(ob['quat'])
    return {'pos': np.asarray(ob['pos'], float), 'yaw': float(np.arctan2(R[1, 0], R[0, 0]))}


def tactical_features(subgoal, observation: dict) -> np.ndarray:
    """(FEATURE_DIM,) float32 input vector for one (sub-goal, observation) pair.

    ``observation``: 'tool_pos' (3,), 'tool_quat' (4,) xyzw, 'gripper' (0..1; the commanded
    value is used if 'gripper_command' is given), optional 'obstacle' {'pos'} (e.g. the
    strategic plan's ``scene['obstacle']``) or 'objects' (``ArmSim.object_poses()``).
    """
    skill, tp, tq, tg = _subgoal_fields(subgoal)
    p = np.asarray(observation['tool_pos'], float)
    q = _canon(observation['tool_quat'], tq)
    g = float(observation.get('gripper_command', observation.get('gripper', 0.0)))
    ob = observation.get('obstacle')
    if ob is None and 'objects' in observation:
        ob = obstacle_from_objects(observation['objects'])
    onehot = np.zeros(len(SKILL_ALLOW_LIST))
    onehot[SKILL_ALLOW_LIST.index(skill)] = 1.0
    if ob is not None:
        op = np.asarray(ob['pos'], float)
        # position only: the wall's yaw is not observable from the strategic grounding
        obf = [1.0, *((op[:2] - _CENTER[:2]) / _POS_SCALE), *((op[:2] - p[:2]) / _POS_SCALE)]
    else:
        obf = [0.0] * 5
    f = np.concatenate([onehot, (tp - _CENTER) / _POS_SCALE, _canon(tq, tq), [tg],
                        (p - _CENTER) / _POS_SCALE, (p - tp) / _POS_SCALE, q, [g], obf])
    if not np.all(np.isfinite(f)):
        raise PlanningError('tactical observation contains NaN/Inf')
    return f.astype(np.float32)


def waypoint_targets(wps, subgoal) -> tuple:
    """Expert waypoints -> (target (MAX_WAYPOINTS, OUT_PER_WP) float32, count int) in the
    network's normalised output space (padded slots repeat the last waypoint)."""
    _, tp, tq, _ = _subgoal_fields(subgoal)
    if not 1 <= len(wps) <= MAX_WAYPOINTS:
        raise ValueError(f'expert gave {len(wps)} waypoints (max {MAX_WAYPOINTS})')
    rows = []
    for w in wps:
        rows.append(np.concatenate([(np.asarray(w.pos) - tp) / _POS_SCALE, _canon(w.quat, tq),
                                    [w.gripper], [w.time_from_start / _TIME_SCALE]]))
    while len(rows) < MAX_WAYPOINTS:
        rows.append(rows[-1])
    return np.array(rows, np.float32), len(wps)


@dataclass(frozen=True)
class TacticalConfig:
    hidden: int = 256
    n_layers: int = 3


class TacticalNet(nn.Module):
    """MLP: features (B, FEATURE_DIM) -> waypoints (B, K, 9) normalised + count logits (B, K)."""

    def __init__(self, cfg: TacticalConfig = TacticalConfig()) -> None:
        super().__init__()
        self.config = cfg
        layers, w = [], FEATURE_DIM
        for _ in range(cfg.n_layers):
            layers += [nn.Linear(w, cfg.hidden), nn.SiLU()]
            w = cfg.hidden
        self.body = nn.Sequential(*layers)
        self.wp = nn.Linear(w, MAX_WAYPOINTS * OUT_PER_WP)
        self.count = nn.Linear(w, MAX_WAYPOINTS)
        self.skip = nn.Linear(FEATURE_DIM, MAX_WAYPOINTS * OUT_PER_WP)

    def forward(self, x: torch.Tensor) -> tuple:
        h = self.body(x)
        wp = (self.wp(h) + self.skip(x)).view(-1, MAX_WAYPOINTS, OUT_PER_WP)
        return wp, self.count(h)

    def loss(self, x, target, count) -> tuple:
        """Masked MSE on the valid waypoints + CE on the count (count in 1..K)."""
        wp, logits = self.forward(x)
        valid = (torch.arange(MAX_WAYPOINTS)[None] < count[:, None]).float()   # (B, K)
        mse = ((wp - target) ** 2).mean(-1)
        reg = (mse * valid).sum() / valid.sum()
        ce = nn.functional.cross_entropy(logits, count - 1)
        return reg + 0.1 * ce, {'reg': reg.item(), 'ce': ce.item()}


def decode_waypoints(wp: np.ndarray, count: int, subgoal, workspace=TACTICAL_WORKSPACE) -> list:
    """Network output (K, 9) normalised -> list of ``Waypoint`` (finite, clipped, monotonic)."""
    _, tp, tq, _ = _subgoal_fields(subgoal)
    out, t_prev = [], 0.0
    for k in range(int(count)):
        r = np.nan_to_num(np.asarray(wp[k], float), nan=0.0, posinf=0.0, neginf=0.0)
        pos = np.clip(tp + r[:3] * _POS_SCALE, workspace[0], workspace[1])
        q = r[3:7]
        q = tq if np.linalg.norm(q) < 1e-6 else q / np.linalg.norm(q)
        g = float(np.clip(r[7], 0.0, 1.0))
        t = float(np.clip(r[8] * _TIME_SCALE, t_prev + 0.05, t_prev + 30.0))
        out.append(Waypoint(pos, q, g, t))
        t_prev = t
    return out


class TacticalPlanner:
    """Level-2 planner: ``waypoints(subgoal, observation) -> [Waypoint(pos, quat, gripper,
    time_from_start)]``. ``subgoal``: a ``domain.types.SubGoal`` or a sub-goal dict (skill,
    target_pos, target_quat, gripper)."""

    def __init__(self, net: TacticalNet, workspace=TACTICAL_WORKSPACE) -> None:
        self.net = net.eval()
        self.workspace = workspace

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, robot=None) -> TacticalPlanner:
        """The checkpoint's planner, its waypoints bounded by ``robot``'s workspace."""
        from ..models.checkpoint import read_module
        from .strategic_planner import DEFAULT_CHECKPOINT
        path = Path(path) if path else DEFAULT_CHECKPOINT
        f, j = path / 'tactical.safetensors', path / 'tactical.json'
        if not f.is_file() or not j.is_file():
            raise FileNotFoundError(f'no tactical checkpoint in {path}; train one with '
                                    '`hybrid-vla train tactical --out DIR`')
        net, _ = read_module(str(f), str(j),
                             lambda meta: TacticalNet(TacticalConfig(**meta['config'])))
        return cls(net, tactical_workspace(robot))

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        from ..models.checkpoint import write_module
        path = Path(path)
        write_module(str(path / 'tactical.safetensors'), str(path / 'tactical.json'), self.net,
                     {'kind': 'tactical', 'config': asdict(self.net.config), **(extra or {})})

    @torch.no_grad()
    def waypoints(self, subgoal, observation: dict) -> list:
        x = torch.from_numpy(tactical_features(subgoal, observation))[None]
        wp, logits = self.net(x)
        count = int(logits[0].argmax()) + 1
        return decode_waypoints(wp[0].numpy(), count, subgoal, self.workspace)
