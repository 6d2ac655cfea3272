"""The planners' privileged labels, read off a sim episode (the simulator is passed in, never
imported): what the scripted expert's plan (``sim/scripted_expert.py``) is symbolically
(``expert_symbolic``: planner steps, step tokens, role attributes), every entity in view with
its 3-D centre and grasp yaw (``scene_entities``) and a task state with the tool pose set
(``tool_state``). Training (``training/planner_data.py``) makes the planners' datasets from
them; evaluation (``evaluation/planner_eval.py``, ``evaluation/hierarchy_eval.py``) scores the
planners against them.
"""
import numpy as np

from ..domain.rotations import quat_to_mat
from ..domain.vocabulary import OBJECT_SHAPE
from .skills import SymbolicStep

# the tasks the planners are trained and evaluated on
STRATEGIC_TASKS = ('reach', 'pick_place', 'stack', 'multimodal', 'detour')


def entity_name(episode, name: str) -> str:
    """Descriptive name of a sim entity (slot id -> 'red cube', pad id -> 'blue pad')."""
    if name in episode.objects:
        return f"{episode.objects[name]['color']} {OBJECT_SHAPE[name]}"
    if name in episode.pads:
        return f"{episode.pads[name]['color']} pad"
    return name


def expert_symbolic(episode, subgoals) -> tuple:
    """Expert sub-goals -> (SymbolicStep list, step-token list, role attributes)."""
    info = episode.info
    roles, names = {}, {}
    for sg in subgoals:
        if sg.object != 'target' and sg.object not in roles:
            roles[sg.object] = 'AB'[len(roles)]
    for slot, r in roles.items():
        names[r] = entity_name(episode, slot)
    pad_name = entity_name(episode, info['pad']) if 'pad' in info else ''
    attrs = {'A_color': '<none>', 'A_shape': '<none>', 'B_color': '<none>',
             'B_shape': '<none>', 'P_color': '<none>'}
    for r, n in names.items():
        attrs[f'{r}_color'], attrs[f'{r}_shape'] = n.split()
    if pad_name:
        attrs['P_color'] = pad_name.split()[0]
    steps, tokens = [], []
    for sg in subgoals:
        if sg.object == 'target':
            tokens.append(('move_to', 'T', ''))
            steps.append(SymbolicStep('move_to', 'target'))
            continue
        role = roles[sg.object]
        ref_role = ''
        if sg.id.endswith('move_above_place') or sg.skill == 'place':
            ref_role = 'P' if role == 'A' else 'A'
        tokens.append((sg.skill, role, ref_role))
        ref = '' if not ref_role else (pad_name if ref_role == 'P' else names['A'])
        steps.append(SymbolicStep(sg.skill, names[role], ref))
    return steps, tokens, attrs


def _grasp_yaw(quat) -> float:
    R = quat_to_mat(quat)
    return float(np.arctan2(R[1, 0], R[0, 0]))


def scene_entities(sim) -> list:
    """Every entity in view: (name, centre pos (3,), yaw or None) from the ground truth."""
    ep = sim.episode
    out = []
    for slot, o in sim.object_poses().items():
        if o['kind'] == 'object' and slot not in ep.objects:
            continue
        yaw = _grasp_yaw(o['quat']) if o['shape'] == 'cube' else None
        out.append((entity_name(ep, slot), np.asarray(o['pos'], float), yaw))
    return out


def tool_state(state, pos, quat, grip):
    """``state`` (a scripted-expert task state) with the tool at (pos, quat) and the gripper
    command ``grip``."""
    s = dict(state)
    s['tool_pos'], s['tool_quat'], s['gripper_command'] = np.asarray(pos), np.asarray(quat), grip
    return s
