"""Planner training data from the MuJoCo sim and the privileged scripted expert
(``sim/scripted_expert.py``), and their on-disk cache.

- strategic (``generate_strategic_data``): for each (task, seed) the rendered start image, every
  *training* phrasing of the task's instruction (held-out phrasings are never used here), the
  expert's sub-goal sequence (-> step tokens + role attributes, ``expert_symbolic``) and the
  pixel/yaw/height of every object in view (``scene_entities``); ``augment_samples`` adds
  programmatic paraphrases (``planning/paraphrase.py``) with consistently renamed colours;
- tactical (``generate_tactical_data``): for each expert sub-goal, TCP poses at its start and
  along/around its path, labelled with ``scripted_expert.waypoints`` (incl. the detour
  via-points).

``cached_dataset`` stores a generated dataset as safetensors + JSON under
``dataset_cache_dir`` (keyed by a digest of the sim sources and the robot), so a changed sim,
task suite, expert or robot never reuses stale data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..planning.camera_model import CameraModel
from ..planning.labels import STRATEGIC_TASKS, expert_symbolic, scene_entities, tool_state
from ..planning.tactical_planner import obstacle_from_objects, tactical_features, waypoint_targets
from ..robot import DEFAULT_ROBOT
from ..sim.arm_sim import ArmSim
from ..sim.scripted_expert import plan as expert_plan
from ..sim.scripted_expert import task_state
from ..sim.scripted_expert import waypoints as expert_waypoints
from ..sim.tasks import get_task

DEFAULT_CACHE = Path.home() / '.cache' / 'hybrid_vla_ros' / 'planner_data'


def dataset_cache_dir(cache_dir, robot=None) -> Path:
    """Dataset cache folder, keyed by a digest of the sim and domain sources and the robot's
    URDF + YAML (a changed sim, scene, task suite, expert or robot never reuses stale data)."""
    import hashlib

    from ..robot import load_robot
    package = Path(__file__).resolve().parents[1]
    h = hashlib.blake2b(digest_size=6)
    for f in sorted([*(package / 'sim').glob('*.py'), *(package / 'domain').glob('*.py')]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    r = load_robot() if robot is None else load_robot(robot)
    h.update(r.urdf.encode())
    h.update(open(r.config_file, 'rb').read())
    return (Path(cache_dir) if cache_dir else DEFAULT_CACHE) / f'sim-{h.hexdigest()}'


# ============================================================================ datasets
def generate_strategic_data(seeds, tasks=STRATEGIC_TASKS, held_out: bool = False,
                            progress: bool = True, robot=DEFAULT_ROBOT) -> dict:
    """Render scenes of ``robot`` and collect decoder + grounding labels (module docstring)."""
    sim = ArmSim(robot)
    images, entities, samples, episodes = [], [], [], []
    cam = None
    jobs = [(t, s) for s in seeds for t in tasks]
    for task_name, seed in tqdm(jobs, desc='scenes', disable=not progress):
        task = get_task(task_name, sim.robot)
        sim.reset(task, seed)
        img = sim.render()
        cam = sim.camera_info()
        camera = CameraModel.from_any(cam)
        sgs = expert_plan(task_state(sim), 0)
        steps, tokens, attrs = expert_symbolic(sim.episode, sgs)
        ents = []
        for name, pos, yaw in scene_entities(sim):
            u, v = camera.project(pos)
            if 0 <= u < cam['width'] and 0 <= v < cam['height']:
                ents.append({'name': name, 'pos': pos.tolist(), 'pixel': (float(u), float(v)),
                             'yaw': yaw})
        k = len(images)
        images.append(img)
        entities.append(ents)
        episodes.append({'task': task_name, 'seed': int(seed),
                         'expert': [(s.skill, s.object) for s in steps],
                         'subgoals': [sg.to_dict() for sg in sgs],
                         'steps': [s.__dict__ for s in steps]})
        for text in task.all_instructions(seed, held_out=held_out):
            samples.append({'image': k, 'text': text, 'tokens': tokens, 'attrs': attrs})
    sim.close()
    return {'images': np.stack(images), 'entities': entities, 'samples': samples,
            'episodes': episodes, 'camera': {'K': np.asarray(cam['K']).tolist(),
                                             'T_base_camera': cam['T_base_camera'].tolist(),
                                             'width': cam['width'], 'height': cam['height']}}


def generate_tactical_data(seeds, tasks=STRATEGIC_TASKS, samples_per_subgoal: int = 6,
                           noise: float = 0.01, seed: int = 0, progress: bool = True,
                           robot=DEFAULT_ROBOT) -> dict:
    """(features, target, count) arrays from the expert's waypoints; sample 0 of every sub-goal
    is its start state (``start`` mask), the others lie along its waypoint path +- noise."""
    from ..sim.kinematics import slerp
    rng = np.random.default_rng(seed)
    sim = ArmSim(robot)
    X, Y, C, start = [], [], [], []
    jobs = [(t, s) for s in seeds for t in tasks]
    for task_name, ep_seed in tqdm(jobs, desc='tactical data', disable=not progress):
        sim.reset(task_name, ep_seed)
        state = task_state(sim)
        sgs = expert_plan(state, int(ep_seed) % 2)
        p_prev, q_prev = state['tool_pos'], state['tool_quat']
        g_prev = float(state['gripper_command'])
        for sg in sgs:
            wps0 = expert_waypoints(sg, tool_state(state, p_prev, q_prev, g_prev))
            path = [np.asarray(p_prev)] + [np.asarray(w.pos) for w in wps0]
            for k in range(samples_per_subgoal):
                if k == 0:
                    p, q = np.asarray(p_prev, float), np.asarray(q_prev, float)
                else:
                    seg = int(rng.integers(len(path) - 1))
                    a = rng.uniform(0, 1)
                    p = path[seg] + a * (path[seg + 1] - path[seg]) + rng.normal(0, noise, 3)
                    q = slerp(q_prev, sg.target_quat, float(rng.uniform(0, 1)))
                st = tool_state(state, p, q, g_prev)
                wps = expert_waypoints(sg, st)
                obs = {'tool_pos': p, 'tool_quat': q, 'gripper_command': g_prev,
                       'obstacle': obstacle_from_objects(state['objects'])}
                X.append(tactical_features(sg, obs))
                y, c = waypoint_targets(wps, sg)
                Y.append(y)
                C.append(c)
                start.append(k == 0)
            p_prev, q_prev, g_prev = sg.target_pos, sg.target_quat, sg.gripper
    sim.close()
    return {'x': np.stack(X), 'y': np.stack(Y), 'count': np.array(C, np.int64),
            'start': np.array(start)}


def cached_dataset(path: Path, build, progress=True):
    """Cache a dict of numpy arrays + JSON-able lists as safetensors + JSON."""
    from safetensors.numpy import load_file, save_file
    f, j = path.with_suffix('.safetensors'), path.with_suffix('.json')
    if f.is_file() and j.is_file():
        data = dict(load_file(str(f)))
        data.update(json.loads(j.read_text()))
        return data
    data = build()
    arrays = {k: np.ascontiguousarray(v) for k, v in data.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in data.items() if not isinstance(v, np.ndarray)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(f))
    j.write_text(json.dumps(rest, default=float))
    return data


def _recolor(fields: dict, attrs: dict, perm: dict) -> tuple:
    """Phrase fields and role attributes with every colour renamed by ``perm``."""
    def name(v):
        words = v.split()
        return ' '.join([perm.get(words[0], words[0])] + words[1:])
    return ({k: name(v) for k, v in fields.items()},
            {k: (perm.get(v, v) if k.endswith('_color') else v) for k, v in attrs.items()})


def augment_samples(data: dict, per_image: int, seed: int = 0,
                    recolor: float = 0.75) -> list:
    """Decoder samples of ``data`` plus ``per_image`` programmatic paraphrases of each scene's
    instruction (``paraphrase.paraphrases``: never a held-out phrasing or held-out-only word)
    with the scene's labels (a third as many for tasks whose instruction names no object
    colour: reach, detour, multimodal). In a share ``recolor`` of the paraphrases that name
    colours, the colours are consistently renamed in the text *and* the role labels (a random
    permutation): the colours of a slot must then be read from the words, not recalled from the
    image, and every sentence shape meets every colour combination. Returns a new list."""
    from ..planning.paraphrase import paraphrases
    from ..planning.skills import COLORS
    samples = list(data['samples'])
    if per_image <= 0:
        return samples
    labels = {}
    for s in samples:
        labels.setdefault(s['image'], (s['tokens'], s['attrs']))
    for k, ep in enumerate(data['episodes']):
        if k not in labels:
            continue
        task = get_task(ep['task'])
        fields = task.phrase_fields(task.sample(ep['seed']))
        tokens, attrs = labels[k]
        rng = np.random.default_rng([seed, ep['seed'], sum(map(ord, ep['task'])), 17])
        # scenes whose instruction names colours (pick_place, stack) are where slot binding
        # is learnt: they get the full count, the others (fixed wording) a third of it
        n = per_image if fields else max(1, per_image // 3)
        for j in range(n):
            f, a = fields, attrs
            if fields and rng.uniform() < recolor:
                perm = dict(zip(COLORS, (str(c) for c in rng.permutation(COLORS))))
                f, a = _recolor(fields, attrs, perm)
            seed_j = (seed * 1_000_003 + ep['seed']) * 64 + j
            for text in paraphrases(ep['task'], f, 1, seed_j):
                samples.append({'image': k, 'text': text, 'tokens': tokens, 'attrs': a})
    return samples
