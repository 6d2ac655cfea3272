"""Training and held-out evaluation of the strategic heads and the tactical planner.

Data come from the MuJoCo sim and the privileged scripted expert (``sim.scripted_expert``):
- strategic: for each (task, seed) the rendered start image, every *training* phrasing of the
  task's instruction (held-out phrasings are never used here), the expert's sub-goal sequence
  (-> step tokens + role attributes) and the pixel/yaw/height of every object in view;
- tactical: for each expert sub-goal, TCP poses at its start and along/around its path, labelled
  with ``scripted_expert.waypoints`` (incl. the detour via-points).

Training is seeded, shows tqdm progress bars, reports a validation loss, writes safetensors +
JSON checkpoints (weights, optimizer state, history; never pickle) after every epoch and resumes
from them. Frozen-backbone embeddings are computed once per dataset and cached on disk.
"""
from __future__ import annotations

from dataclasses import asdict
import json
import math
from pathlib import Path
import random
import time
import warnings

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..sim.arm_sim import OBJECT_SHAPE, ArmSim
from ..sim.kinematics import quat_to_mat
from ..sim.scripted_expert import plan as expert_plan
from ..sim.scripted_expert import task_state
from ..sim.scripted_expert import waypoints as expert_waypoints
from ..sim.tasks import get_task
from .backbones import MAX_TOKENS, TEXT_DIM, image_to_tensor, shared_text, shared_vision
from .skills import SymbolicStep
from .strategic_planner import (
    COLOR_CLASSES,
    EOS,
    GRID,
    MAX_STEPS,
    N_COLOR_CELL,
    N_KIND_CELL,
    SHAPE_CLASSES,
    TOKEN_INDEX,
    CameraModel,
    DecoderConfig,
    GroundingConfig,
    GroundingHead,
    HeadsBackend,
    StrategicPlanner,
    SubgoalDecoder,
    _save_module,
    entity_classes,
    pixel_to_cell,
)
from .tactical_planner import (
    FEATURE_DIM,
    MAX_WAYPOINTS,
    TacticalConfig,
    TacticalNet,
    TacticalPlanner,
    obstacle_from_objects,
    tactical_features,
    waypoint_targets,
)

STRATEGIC_TASKS = ('reach', 'pick_place', 'stack', 'multimodal', 'detour')
EVAL_SEED_OFFSET = 100_000   # evaluation scenes never overlap the training seeds
DEFAULT_CACHE = Path.home() / '.cache' / 'hybrid_vla_ros' / 'planner_data'


def _cache_dir(cache_dir) -> Path:
    """Dataset cache folder, keyed by a digest of the sim sources (a changed sim, task suite
    or expert never reuses stale data)."""
    import hashlib
    sim_dir = Path(__file__).resolve().parents[1] / 'sim'
    h = hashlib.blake2b(digest_size=6)
    for name in ('arm_sim.py', 'tasks.py', 'scripted_expert.py', 'kinematics.py',
                 'description.py'):
        f = sim_dir / name
        h.update(f.read_bytes() if f.is_file() else b'')
    return (Path(cache_dir) if cache_dir else DEFAULT_CACHE) / f'sim-{h.hexdigest()}'


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# ============================================================================ labels
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


# ============================================================================ datasets
def generate_strategic_data(seeds, tasks=STRATEGIC_TASKS, held_out: bool = False,
                            progress: bool = True) -> dict:
    """Render scenes and collect decoder + grounding labels (see module docstring)."""
    sim = ArmSim()
    images, entities, samples, episodes = [], [], [], []
    cam = None
    jobs = [(t, s) for s in seeds for t in tasks]
    for task_name, seed in tqdm(jobs, desc='scenes', disable=not progress):
        task = get_task(task_name)
        sim.reset(task, seed)
        img = sim.render()
        cam = sim.camera_info()
        camera = CameraModel.from_any(cam)
        sgs = expert_plan(task_state(sim), 0)
        steps, tokens, attrs = expert_symbolic(sim.episode, sgs)
        ents = []
        for name, pos, yaw in scene_entities(sim):
            u, v = camera.project(pos)
            if 0 <= u < 128 and 0 <= v < 128:
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


def _tool_state(state, pos, quat, grip):
    s = dict(state)
    s['tool_pos'], s['tool_quat'], s['gripper_command'] = np.asarray(pos), np.asarray(quat), grip
    return s


def generate_tactical_data(seeds, tasks=STRATEGIC_TASKS, samples_per_subgoal: int = 6,
                           noise: float = 0.01, seed: int = 0, progress: bool = True) -> dict:
    """(features, target, count) arrays from the expert's waypoints; sample 0 of every sub-goal
    is its start state (``start`` mask), the others lie along its waypoint path +- noise."""
    from ..sim.kinematics import slerp
    rng = np.random.default_rng(seed)
    sim = ArmSim()
    X, Y, C, start = [], [], [], []
    jobs = [(t, s) for s in seeds for t in tasks]
    for task_name, ep_seed in tqdm(jobs, desc='tactical data', disable=not progress):
        sim.reset(task_name, ep_seed)
        state = task_state(sim)
        sgs = expert_plan(state, int(ep_seed) % 2)
        p_prev, q_prev = state['tool_pos'], state['tool_quat']
        g_prev = float(state['gripper_command'])
        for sg in sgs:
            wps0 = expert_waypoints(sg, _tool_state(state, p_prev, q_prev, g_prev))
            path = [np.asarray(p_prev)] + [np.asarray(w.pos) for w in wps0]
            for k in range(samples_per_subgoal):
                if k == 0:
                    p, q = np.asarray(p_prev, float), np.asarray(q_prev, float)
                else:
                    seg = int(rng.integers(len(path) - 1))
                    a = rng.uniform(0, 1)
                    p = path[seg] + a * (path[seg + 1] - path[seg]) + rng.normal(0, noise, 3)
                    q = slerp(q_prev, sg.target_quat, float(rng.uniform(0, 1)))
                st = _tool_state(state, p, q, g_prev)
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


# ============================================================================ checkpoints
def _optimizer_tensors(opt) -> tuple:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd['state'].items():
        for k, v in st.items():
            tensors[f'opt.{pid}.{k}'] = (v if torch.is_tensor(v) else torch.tensor(v)).clone()
    return tensors, sd['param_groups']


def _restore_optimizer(opt, tensors: dict, groups) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if not key.startswith('opt.'):
            continue
        _, pid, k = key.split('.', 2)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({'state': state, 'param_groups': groups})


def save_training_state(path: Path, name: str, model: nn.Module, opt, meta: dict) -> None:
    """``<name>.train.safetensors`` (weights + optimizer) and ``<name>.train.json``."""
    from safetensors.torch import save_file
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f'model.{k}': v.detach().contiguous() for k, v in model.state_dict().items()}
    opt_t, groups = _optimizer_tensors(opt)
    tensors.update({k: v.contiguous() for k, v in opt_t.items()})
    tmp = path / f'{name}.train.safetensors.tmp'
    save_file(tensors, str(tmp))
    tmp.replace(path / f'{name}.train.safetensors')
    (path / f'{name}.train.json').write_text(json.dumps({**meta, 'param_groups': groups},
                                                        indent=2))


def load_training_state(path: Path, name: str, model: nn.Module, opt) -> dict | None:
    from safetensors.torch import load_file
    f, j = path / f'{name}.train.safetensors', path / f'{name}.train.json'
    if not (f.is_file() and j.is_file()):
        return None
    tensors = load_file(str(f))
    meta = json.loads(j.read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith('model.')})
    _restore_optimizer(opt, tensors, meta.pop('param_groups'))
    return meta


def _cached(path: Path, build, progress=True):
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


# ============================================================================ strategic
def _text_arrays(texts) -> tuple:
    tb = shared_text()
    feats = tb.encode_many(list(texts))
    tok = torch.stack([f.tokens for f in feats]).half()
    mask = torch.stack([f.mask for f in feats])
    sent = torch.stack([f.sentence for f in feats])
    return tok, mask, sent


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
    from .paraphrase import paraphrases
    from .skills import COLORS
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


def _strategic_tensors(data: dict) -> dict:
    """Frozen features + label tensors for a strategic dataset."""
    vb = shared_vision()
    imgs = data['images']
    feats = vb.encode_batch(list(imgs))
    samples = data['samples']
    texts = sorted({s['text'] for s in samples})
    tix = {t: i for i, t in enumerate(texts)}
    tok, mask, sent = _text_arrays(texts)
    steps = torch.full((len(samples), MAX_STEPS + 1), TOKEN_INDEX[EOS], dtype=torch.long)
    colors = torch.zeros(len(samples), 3, dtype=torch.long)
    shapes = torch.zeros(len(samples), 2, dtype=torch.long)
    for i, s in enumerate(samples):
        for k, t in enumerate(s['tokens']):
            steps[i, k] = TOKEN_INDEX[tuple(t)]
        a = s['attrs']
        colors[i] = torch.tensor([COLOR_CLASSES.index(a[k]) for k in
                                  ('A_color', 'B_color', 'P_color')])
        shapes[i] = torch.tensor([SHAPE_CLASSES.index(a[k]) for k in ('A_shape', 'B_shape')])
    # grounding: referent names (one phrase embedding each) and per-image label maps
    return {'x': torch.cat([image_to_tensor(im) for im in imgs]),
            'stride4': feats.stride4, 'pooled': feats.pooled,
            'tok': tok, 'mask': mask, 'sent': sent,
            'text_index': torch.tensor([tix[s['text']] for s in samples]),
            'image_index': torch.tensor([s['image'] for s in samples]),
            'steps': steps, 'colors': colors, 'shapes': shapes}


def _grounding_targets(entities, sigma: float = 0.8) -> list:
    """Per image: soft per-cell colour (8, G, G) and kind (6, G, G) class targets (a Gaussian
    splat of each object centre over the background class) and regression maps."""
    ys, xs = np.mgrid[0:GRID, 0:GRID]
    out = []
    for ents in entities:
        color_t = np.zeros((N_COLOR_CELL, GRID, GRID), np.float32)
        kind_t = np.zeros((N_KIND_CELL, GRID, GRID), np.float32)
        best = np.zeros((GRID, GRID), np.float32)
        off = np.zeros((2, GRID, GRID), np.float32)
        yaw4 = np.zeros((2, GRID, GRID), np.float32)
        height = np.zeros((GRID, GRID), np.float32)
        m_off = np.zeros((GRID, GRID), np.float32)
        m_yaw = np.zeros((GRID, GRID), np.float32)
        for e in ents:
            u, v = e['pixel']
            row, col, ou, ov = pixel_to_cell(u, v)
            cu, cv = (u + 0.5) / 4 - 0.5, (v + 0.5) / 4 - 0.5
            g = np.exp(-((xs - cu) ** 2 + (ys - cv) ** 2) / (2 * sigma ** 2)).astype(np.float32)
            c, k = entity_classes(e['name'])
            take = g > best
            color_t[:, take] = 0.0
            kind_t[:, take] = 0.0
            color_t[c][take] = g[take]
            kind_t[k][take] = g[take]
            best = np.maximum(best, g)
            off[:, row, col] = (ou, ov)
            height[row, col] = e['pos'][2]
            m_off[row, col] = 1.0
            if e['yaw'] is not None:
                yaw4[:, row, col] = (math.cos(4 * e['yaw']), math.sin(4 * e['yaw']))
                m_yaw[row, col] = 1.0
        color_t[0] = 1.0 - best
        kind_t[0] = 1.0 - best
        weight = 0.05 + best      # background cells count less than object centres
        out.append(tuple(torch.from_numpy(a) for a in
                         (color_t, kind_t, weight, off, yaw4, height, m_off, m_yaw)))
    return out


def grounding_loss(head: GroundingHead, T: dict, targets: list, idx) -> tuple:
    """Weighted soft cross-entropy of the per-cell colour/kind classes + offset/yaw/height
    regression at object centres, on a batch of images ``idx``."""
    dense = head.dense(T['x'][idx], T['stride4'][idx].float())
    reg = head.regressions(dense)
    cl, kl = head.class_logits(dense)
    tg = [torch.stack([targets[int(i)][j] for i in idx]) for j in range(8)]
    color_t, kind_t, weight, off, yaw4, height, m_off, m_yaw = tg
    wsum = weight.sum()
    ce = (-(color_t * cl.log_softmax(1)).sum(1) * weight).sum() / wsum + \
        (-(kind_t * kl.log_softmax(1)).sum(1) * weight).sum() / wsum
    mo = m_off.sum().clamp(min=1)
    l_off = (((reg['offset'] - off) ** 2).sum(1) * m_off).sum() / mo
    l_h = ((((reg['height'] - height) * 10.0) ** 2) * m_off).sum() / mo
    l_yaw = (((reg['yaw4'] - yaw4) ** 2).sum(1) * m_yaw).sum() / m_yaw.sum().clamp(min=1)
    total = ce + 4.0 * l_off + l_h + 0.5 * l_yaw
    return total, {'ce': ce.item(), 'off': l_off.item(), 'h': l_h.item(), 'yaw': l_yaw.item()}


def decoder_loss(dec: SubgoalDecoder, T: dict, idx, train: bool = False,
                 token_dropout: float = 0.3) -> tuple:
    """CE on step tokens + role attributes. In training, a random ``token_dropout`` share of the
    instruction's tokens is hidden from the decoder (robustness to unseen wording; 0.3 beat
    0.15 and 0 in a leave-two-training-templates-out validation, the official held-out
    phrasings were not used for that choice)."""
    ti, ii = T['text_index'][idx], T['image_index'][idx]
    n_tok = int(T['mask'][ti].sum(1).max())       # trim the padding the whole batch shares
    mask = T['mask'][ti, :n_tok]
    if train and token_dropout > 0:
        keep = torch.rand(mask.shape) >= token_dropout
        keep[:, 0] = True   # always keep [CLS]
        mask = mask & keep
    out = dec(T['tok'][ti, :n_tok].float(), mask, T['sent'][ti], T['pooled'][ii])
    ce = nn.functional.cross_entropy
    l_steps = ce(out['steps'].flatten(0, 1), T['steps'][idx].flatten())
    l_attr = ce(out['colors'].flatten(0, 1), T['colors'][idx].flatten()) + \
        ce(out['shapes'].flatten(0, 1), T['shapes'][idx].flatten())
    return l_steps + l_attr, {'steps': l_steps.item(), 'attrs': l_attr.item()}


def _train_loop(name: str, model: nn.Module, loss_fn, n_train: int, n_val: int, out: Path,
                epochs: int, batch_size: int, lr: float, seed: int, meta: dict,
                progress: bool = True, weight_decay: float = 1e-4) -> dict:
    """Seeded, resumable AdamW loop; ``loss_fn(idx, train: bool) -> (loss, parts)``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    state = load_training_state(out, name, model, opt)
    history = state['history'] if state else []
    start = state['epoch'] if state else 0
    if state and state.get('config') != meta.get('config'):
        raise ValueError(f'{out}/{name}.train.json was made with config {state.get("config")}, '
                         f'not {meta.get("config")}: use another --out or delete it')
    total_steps = max(1, epochs * math.ceil(n_train / batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps))))
    with warnings.catch_warnings():   # fast-forward the schedule of a resumed run
        warnings.simplefilter('ignore')
        for _ in range(start * math.ceil(n_train / batch_size)):
            sched.step()
    for epoch in range(start, epochs):
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        perm = torch.randperm(n_train, generator=g)
        model.train()
        run, nb = 0.0, 0
        bar = tqdm(range(0, n_train, batch_size), desc=f'{name} {epoch + 1}/{epochs}',
                   disable=not progress, leave=False)
        for b in bar:
            idx = perm[b:b + batch_size]
            loss, parts = loss_fn(idx, True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            run += loss.item()
            nb += 1
            bar.set_postfix(loss=f'{run / nb:.4f}')
        model.eval()
        with torch.no_grad():
            vl, vparts, vn = 0.0, {}, 0
            for b in range(0, n_val, batch_size):
                idx = torch.arange(n_train + b, n_train + min(n_val, b + batch_size))
                loss, parts = loss_fn(idx, False)
                vl += float(loss) * len(idx)
                for k, v in parts.items():
                    vparts[k] = vparts.get(k, 0.0) + v * len(idx)
                vn += len(idx)
        rec = {'epoch': epoch + 1, 'train_loss': run / max(nb, 1),
               'val_loss': vl / max(vn, 1), **{f'val_{k}': v / max(vn, 1)
                                                for k, v in vparts.items()}}
        history.append(rec)
        if progress:
            tqdm.write(f'{name} epoch {epoch + 1}: train {rec["train_loss"]:.4f} '
                       f'val {rec["val_loss"]:.4f}')
        save_training_state(out, name, model, opt, {**meta, 'epoch': epoch + 1,
                                                    'history': history})
    return {'history': history}


def _split_images(n_images: int, val_fraction: float, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_images, generator=g)
    n_val = max(1, int(round(n_images * val_fraction)))
    return perm[n_val:], perm[:n_val]


def train_strategic(out_dir, episodes: int = 60, seed: int = 0, epochs_decoder: int = 12,
                    epochs_grounding: int = 35, batch_size: int = 64,
                    grounding_batch: int = 8, lr: float = 1e-3, grounding_lr: float = 2e-3,
                    val_fraction: float = 0.1, cache_dir=None, token_dropout: float = 0.3,
                    tasks=STRATEGIC_TASKS, progress: bool = True, paraphrases: int = 12,
                    decoder_config: DecoderConfig | None = None,
                    grounding_config: GroundingConfig | None = None) -> dict:
    """Train the sub-goal decoder and the grounding head on ``episodes`` scenes per task
    (seeds ``seed*10000 + [0, episodes)``, training phrasings only, plus ``paraphrases``
    programmatic paraphrases per scene for the decoder, see ``augment_samples``). Writes
    ``decoder.{safetensors,json}`` and ``grounding.{safetensors,json}`` into ``out_dir``."""
    decoder_config = decoder_config or DecoderConfig()
    grounding_config = grounding_config or GroundingConfig()
    seed_everything(seed)
    out = Path(out_dir)
    seeds = [seed * 10_000 + i for i in range(episodes)]
    t0 = time.perf_counter()
    data = _cached(_cache_dir(cache_dir) / f'strategic_s{seed}_n{episodes}_{"-".join(tasks)}',
                   lambda: generate_strategic_data(seeds, tasks, progress=progress))
    data = {**data, 'samples': augment_samples(data, paraphrases, seed)}
    T = _strategic_tensors(data)
    t_data = time.perf_counter() - t0
    n_img = len(data['images'])
    tr_img, va_img = _split_images(n_img, val_fraction, seed)
    # order samples so that validation samples (whole images) come last
    img_of = T['image_index']
    va_set = set(va_img.tolist())
    order = torch.tensor([i for i in range(len(img_of)) if int(img_of[i]) not in va_set] +
                         [i for i in range(len(img_of)) if int(img_of[i]) in va_set])
    n_val_s = sum(int(i) in va_set for i in img_of)
    for k in ('text_index', 'image_index', 'steps', 'colors', 'shapes'):
        T[k] = T[k][order]
    seed_everything(seed)
    dec = SubgoalDecoder(decoder_config)
    meta_d = {'kind': 'decoder', 'config': asdict(decoder_config), 'episodes': episodes,
              'seed': seed, 'tasks': list(tasks), 'token_dropout': token_dropout,
              'paraphrases': paraphrases}
    res_d = _train_loop('decoder', dec,
                        lambda idx, tr: decoder_loss(dec, T, idx, tr, token_dropout),
                        len(order) - n_val_s, n_val_s, out, epochs_decoder, batch_size, lr,
                        seed, meta_d, progress)
    _save_module(dec, decoder_config, out, 'decoder', {k: v for k, v in meta_d.items()
                                                      if k not in ('kind', 'config')}
                 | {'history': res_d['history']})
    # grounding: per-image batches; validation images last
    img_order = torch.cat([tr_img, va_img])
    targets_all = _grounding_targets(data['entities'])
    Tg = {'x': T['x'][img_order], 'stride4': T['stride4'][img_order]}
    targets = [targets_all[int(i)] for i in img_order]
    seed_everything(seed)
    head = GroundingHead(grounding_config)
    meta_g = {'kind': 'grounding', 'config': asdict(grounding_config), 'episodes': episodes,
              'seed': seed, 'tasks': list(tasks)}
    res_g = _train_loop('grounding', head,
                        lambda idx, tr: grounding_loss(head, Tg, targets, idx),
                        len(tr_img), len(va_img), out, epochs_grounding, grounding_batch,
                        grounding_lr, seed, meta_g, progress)
    _save_module(head, grounding_config, out, 'grounding',
                 {k: v for k, v in meta_g.items() if k not in ('kind', 'config')}
                 | {'history': res_g['history']})
    return {'decoder': res_d['history'], 'grounding': res_g['history'],
            'data_seconds': t_data, 'seconds': time.perf_counter() - t0, 'out': str(out)}


# ============================================================================ tactical
def train_tactical(out_dir, episodes: int = 100, seed: int = 0, epochs: int = 150,
                   batch_size: int = 256, lr: float = 2e-3, samples_per_subgoal: int = 8,
                   val_fraction: float = 0.1, tasks=STRATEGIC_TASKS, progress: bool = True,
                   config: TacticalConfig | None = None, cache_dir=None) -> dict:
    """Train the tactical waypoint network on the expert's waypoints; writes
    ``tactical.{safetensors,json}`` into ``out_dir``."""
    config = config or TacticalConfig()
    seed_everything(seed)
    out = Path(out_dir)
    t0 = time.perf_counter()
    n_val_ep = max(1, int(round(episodes * val_fraction)))
    seeds = [seed * 10_000 + 5_000 + i for i in range(episodes)]
    cache = _cache_dir(cache_dir)
    tag = f'f{FEATURE_DIM}_s{seed}_n{episodes}_k{samples_per_subgoal}'
    data = _cached(cache / f'tactical_{tag}',
                   lambda: generate_tactical_data(seeds[:-n_val_ep], tasks, samples_per_subgoal,
                                                  seed=seed, progress=progress))
    vdata = _cached(cache / f'tactical_val_{tag}',
                    lambda: generate_tactical_data(seeds[-n_val_ep:], tasks,
                                                   samples_per_subgoal, seed=seed + 1,
                                                   progress=progress))
    x = torch.from_numpy(np.concatenate([data['x'], vdata['x']]))
    y = torch.from_numpy(np.concatenate([data['y'], vdata['y']]))
    c = torch.from_numpy(np.concatenate([data['count'], vdata['count']]))
    n_tr = len(data['x'])
    seed_everything(seed)
    net = TacticalNet(config)
    meta = {'kind': 'tactical', 'config': asdict(config), 'episodes': episodes, 'seed': seed,
            'samples_per_subgoal': samples_per_subgoal, 'tasks': list(tasks)}
    res = _train_loop('tactical', net, lambda idx, tr: net.loss(x[idx], y[idx], c[idx]),
                      n_tr, len(x) - n_tr, out, epochs, batch_size, lr, seed, meta, progress)
    TacticalPlanner(net).save(out, {k: v for k, v in meta.items()
                                    if k not in ('kind', 'config')} | {'history': res['history']})
    return {'tactical': res['history'], 'seconds': time.perf_counter() - t0, 'out': str(out)}


# ============================================================================ evaluation
def evaluate_planner(checkpoint_dir, episodes: int = 20, seed: int = 0, tasks=STRATEGIC_TASKS,
                     held_out: bool = True, progress: bool = True) -> dict:
    """Held-out evaluation on new scenes (unseen seeds: new positions, colour combinations) and
    held-out phrasings: sub-goal sequence exact-match, grounding error (3-D, mm) of the objects
    the expert's plan names (table objects; the floating target separately, from RGB alone and
    with the depth image) and tactical waypoint error (mm, at the start of each expert
    sub-goal, when the waypoint count matches; the count accuracy is reported too)."""
    from .skills import PlanningError
    ckpt = Path(checkpoint_dir)
    planner = StrategicPlanner.from_checkpoint(ckpt)
    tactical = TacticalPlanner.from_checkpoint(ckpt) \
        if (ckpt / 'tactical.safetensors').is_file() else None
    sim = ArmSim()
    per_task: dict = {}
    seeds = [EVAL_SEED_OFFSET + seed * 1000 + i for i in range(episodes)]
    jobs = [(t, s) for t in tasks for s in seeds]
    for task_name, ep_seed in tqdm(jobs, desc='eval', disable=not progress):
        r = per_task.setdefault(task_name, {'n': 0, 'exact': 0, 'errors': 0, 'ground_mm': [],
                                            'target_mm': [], 'target_depth_mm': [],
                                            'pose_mm': [], 'rot_deg': [],
                                            'tactical_mm': [], 'tactical_count_ok': 0,
                                            'tactical_n': 0, 'plan_ms': []})
        task = get_task(task_name)
        sim.reset(task, ep_seed)
        img, cam = sim.render(), sim.camera_info()
        state = task_state(sim)
        sgs = expert_plan(state, 0)
        steps, _, _ = expert_symbolic(sim.episode, sgs)
        text = task.instruction(ep_seed, held_out=held_out)
        r['n'] += 1
        try:
            p = planner.plan(text, img, cam)
        except PlanningError:
            r['errors'] += 1
            p = None
        if p is not None:
            r['plan_ms'].append(p.timing_ms['total'])
            if p.symbolic() == [(s.skill, s.object) for s in steps]:
                r['exact'] += 1
                ref_sgs = sgs
                if task_name == 'multimodal':   # either red block is right: nearest mode
                    ref_sgs = min((expert_plan(state, c) for c in (0, 1)), key=lambda g: float(
                        np.linalg.norm(g[0].target_pos - p.subgoals[0].position)))
                for a, b in zip(p.subgoals, ref_sgs):   # target poses vs the expert's
                    if a.object == 'target':
                        continue   # floating marker: reported separately (needs depth)
                    r['pose_mm'].append(1000.0 * float(np.linalg.norm(a.position
                                                                      - b.target_pos)))
                    dot = abs(float(np.dot(a.orientation, b.target_quat)))
                    r['rot_deg'].append(float(np.degrees(2 * np.arccos(min(1.0, dot)))))
        # grounding error for the referents of the expert plan (ground truth names)
        names = {s.object for s in steps} | {s.reference for s in steps if s.reference}
        truth = {}
        for name, pos, _ in scene_entities(sim):
            truth.setdefault(name, []).append(pos)
        scene = planner.ground(sorted(names), img, cam)
        for n in names:
            err = min(np.linalg.norm(scene[n]['pos'] - t) for t in truth[n])
            r['target_mm' if n == 'target' else 'ground_mm'].append(1000.0 * float(err))
        if 'target' in names:   # the marker floats: its height needs depth (monocular RGB)
            sd = planner.ground(['target'], img, cam, depth=sim.render_depth())
            r['target_depth_mm'].append(1000.0 * float(np.linalg.norm(
                sd['target']['pos'] - truth['target'][0])))
        if tactical is not None:
            p_prev, q_prev, g_prev = state['tool_pos'], state['tool_quat'], 0.0
            for sg in sgs:
                st = _tool_state(state, p_prev, q_prev, g_prev)
                ref = expert_waypoints(sg, st)
                obs = {'tool_pos': p_prev, 'tool_quat': q_prev, 'gripper_command': g_prev,
                       'obstacle': obstacle_from_objects(state['objects'])}
                pred = tactical.waypoints(sg, obs)
                r['tactical_n'] += 1
                if len(pred) == len(ref):
                    r['tactical_count_ok'] += 1
                    r['tactical_mm'] += [1000.0 * float(np.linalg.norm(a.pos - b.pos))
                                         for a, b in zip(pred, ref)]
                p_prev, q_prev, g_prev = sg.target_pos, sg.target_quat, sg.gripper
    sim.close()
    summary = {}
    all_g, all_t, n_all, ex_all = [], [], 0, 0

    def med(v, q=50):
        return float(np.percentile(v, q)) if v else None

    for t, r in per_task.items():
        summary[t] = {
            'episodes': r['n'], 'subgoal_exact_match': r['exact'] / r['n'],
            'planning_errors': r['errors'],
            'grounding_mm_median': med(r['ground_mm']),
            'grounding_mm_p90': med(r['ground_mm'], 90),
            'subgoal_pose_mm_median': med(r['pose_mm']),
            'subgoal_pose_mm_p90': med(r['pose_mm'], 90),
            'subgoal_rot_deg_median': med(r['rot_deg']),
            'subgoal_rot_deg_p90': med(r['rot_deg'], 90),
            'target_rgb_mm_median': med(r['target_mm']),
            'target_depth_mm_median': med(r['target_depth_mm']),
            'target_depth_mm_p90': med(r['target_depth_mm'], 90),
            'tactical_mm_median': float(np.median(r['tactical_mm'])) if r['tactical_mm']
            else None,
            'tactical_mm_p90': float(np.percentile(r['tactical_mm'], 90)) if r['tactical_mm']
            else None,
            'tactical_count_acc': r['tactical_count_ok'] / max(1, r['tactical_n']),
            'plan_ms_median': float(np.median(r['plan_ms'])) if r['plan_ms'] else None}
        all_g += r['ground_mm']
        all_t += r['tactical_mm']
        n_all += r['n']
        ex_all += r['exact']
    summary['all'] = {'episodes': n_all, 'subgoal_exact_match': ex_all / max(1, n_all),
                      'grounding_mm_median': med(all_g), 'grounding_mm_p90': med(all_g, 90),
                      'tactical_mm_median': float(np.median(all_t)) if all_t else None,
                      'tactical_mm_p90': float(np.percentile(all_t, 90)) if all_t else None,
                      'held_out_phrasings': held_out, 'seed': seed}
    return summary


__all__ = ['train_strategic', 'train_tactical', 'evaluate_planner', 'generate_strategic_data',
           'generate_tactical_data', 'expert_symbolic', 'HeadsBackend', 'MAX_WAYPOINTS',
           'MAX_TOKENS', 'TEXT_DIM']
