"""The project's demonstration features: what ``hybrid-vla collect`` records, from a rollout log.

Features of the project's demonstrations (names of state/action from the robot config, see
:mod:`hybrid_vla_ros.data.dataset_spec`): ``observation.state`` (J+1) joints [rad] + gripper
[0 open..1 closed]; ``action`` (J+1) the expert's joint targets + gripper command;
``observation.tool_pose`` (7) TCP xyz [m] + quat xyzw in the base frame;
``observation.goal`` (8) the active sub-goal's target pose + gripper; ``observation.waypoint``
(8) the sub-goal's final waypoint; ``observation.active_waypoint`` (8) the waypoint the arm
heads to (the :class:`~hybrid_vla_ros.motor.features.WaypointTracker` rule, what the motor
level sees); ``observation.subgoal_index``; ``segment`` (0 for the demonstration, k >= 1 for
its k-th recovery segment; chunks never cross segments); ``action_chunk`` (H, J+1) on DAgger
episodes; ``observation.images.<camera>`` (video). The task string is the instruction; the
episode's plan, seed and outcome are one JSON column ``hybrid_vla/meta`` of the episodes table
(LeRobot keeps unknown columns).
"""
from typing import Dict, Optional, Tuple

import numpy as np

from hybrid_vla_ros.data.lerobot_format import DatasetError, vector_feature, video_feature


def demonstration_features(spec, image_shape: Optional[Tuple[int, int]] = None,
                           chunk_horizon: Optional[int] = None) -> Dict[str, dict]:
    """The features ``hybrid-vla collect`` records for the robot of ``spec``."""
    pose = ['x', 'y', 'z', 'qx', 'qy', 'qz', 'qw']
    target = pose + ['gripper']
    feats = {
        spec.state_feature: vector_feature(spec.state_names),
        spec.action_feature: vector_feature(spec.state_names),
        'observation.tool_pose': vector_feature(pose),
        'observation.goal': vector_feature(target),
        'observation.waypoint': vector_feature(target),
        'observation.active_waypoint': vector_feature(target),
        'observation.subgoal_index': {'dtype': 'int64', 'shape': [1], 'names': None},
        'segment': {'dtype': 'int64', 'shape': [1], 'names': None},
    }
    if chunk_horizon:
        feats['action_chunk'] = {'dtype': 'float32', 'shape': [int(chunk_horizon), spec.dim],
                                 'names': ['step', 'value']}
    if image_shape:
        feats[spec.camera_feature] = video_feature(*image_shape)
    return feats


def active_waypoints(obs_list) -> np.ndarray:
    """(T, 8) waypoint each step heads to, by the motor level's tracking rule."""
    from hybrid_vla_ros.motor.features import WaypointTracker, waypoint_vector
    tracker, key, out = WaypointTracker(), None, []
    for o in obs_list:
        wps = o['waypoints']
        k = (o['subgoal_index'], tuple(tuple(w['pos']) for w in wps))
        if k != key:
            tracker.set_waypoints([waypoint_vector(w['pos'], w['quat'], w['gripper'])
                                   for w in wps])
            key = k
        out.append(tracker.update(o['tool_pos']))
    return np.stack(out).astype(np.float32)


def episode_arrays(log, spec, frames=None) -> Dict[str, np.ndarray]:
    """Per-frame feature arrays of a rollout log (list of (obs, q_cmd, g_cmd)) and its frames."""
    if not log:
        raise DatasetError('empty episode log')
    obs = [o for o, _, _ in log]

    def goal_of(o):
        sg = o['subgoal']
        return np.concatenate([sg['target_pos'], sg['target_quat'], [sg['gripper']]])

    arrays = {
        spec.state_feature: np.stack([o['state'] for o in obs]).astype(np.float32),
        spec.action_feature: np.stack([np.concatenate([q, [g]]) for _, q, g in log]
                                      ).astype(np.float32),
        'observation.tool_pose': np.stack([np.concatenate([o['tool_pos'], o['tool_quat']])
                                           for o in obs]).astype(np.float32),
        'observation.goal': np.stack([goal_of(o) for o in obs]).astype(np.float32),
        'observation.waypoint': np.stack([o['waypoint'] for o in obs]).astype(np.float32),
        'observation.active_waypoint': active_waypoints(obs),
        'observation.subgoal_index': np.array([o['subgoal_index'] for o in obs], np.int64),
        'segment': np.array([o.get('segment', 0) for o in obs], np.int64),
    }
    if frames is not None:
        arrays[spec.camera_feature] = np.stack(frames).astype(np.uint8)
    return arrays
