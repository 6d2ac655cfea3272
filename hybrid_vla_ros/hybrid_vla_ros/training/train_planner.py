"""Training of the strategic heads (sub-goal decoder + grounding head) and the tactical planner,
beside the motor training (``train_motor.py``).

``train_strategic`` / ``train_tactical`` take their data from ``planner_data`` (generated in
the sim once and cached on disk); the frozen-backbone embeddings of a dataset are computed once
per run (``planning/backbones.py`` memoises them). The losses: ``decoder_loss`` (step tokens +
role attributes, with token dropout) and ``grounding_loss`` (per-cell classes + regressions
against ``_grounding_targets``). Training is seeded, shows tqdm progress bars, reports a
validation loss, writes safetensors + JSON checkpoints (weights, optimizer state, history; never
pickle, ``train_state.py``) after every epoch and resumes from them.
"""
from __future__ import annotations

from dataclasses import asdict
import math
from pathlib import Path
import random
import time
import warnings

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..planning.backbones import image_to_tensor, shared_text, shared_vision
from ..planning.grounding import (
    GRID,
    N_COLOR_CELL,
    N_KIND_CELL,
    GroundingConfig,
    GroundingHead,
    entity_classes,
    pixel_to_cell,
)
from ..planning.labels import STRATEGIC_TASKS
from ..planning.strategic_planner import save_module
from ..planning.subgoal_decoder import (
    COLOR_CLASSES,
    EOS,
    MAX_STEPS,
    SHAPE_CLASSES,
    TOKEN_INDEX,
    DecoderConfig,
    SubgoalDecoder,
)
from ..planning.tactical_planner import FEATURE_DIM, TacticalConfig, TacticalNet, TacticalPlanner
from ..robot import DEFAULT_ROBOT
from .planner_data import (
    augment_samples,
    cached_dataset,
    dataset_cache_dir,
    generate_strategic_data,
    generate_tactical_data,
)
from .train_state import load_train_state, save_train_state


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _text_arrays(texts) -> tuple:
    tb = shared_text()
    feats = tb.encode_many(list(texts))
    tok = torch.stack([f.tokens for f in feats]).half()
    mask = torch.stack([f.mask for f in feats])
    sent = torch.stack([f.sentence for f in feats])
    return tok, mask, sent


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
    try:
        state = load_train_state(str(out), opt, model, name=f'{name}.train')
    except FileNotFoundError:
        state = None
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
        save_train_state(str(out), opt, {**meta, 'epoch': epoch + 1, 'history': history},
                         model, name=f'{name}.train')
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
                    grounding_config: GroundingConfig | None = None,
                    robot=DEFAULT_ROBOT) -> dict:
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
    data = cached_dataset(dataset_cache_dir(cache_dir, robot) / f'strategic_s{seed}_n{episodes}_'
                   f'{"-".join(tasks)}',
                   lambda: generate_strategic_data(seeds, tasks, progress=progress, robot=robot))
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
    save_module(dec, decoder_config, out, 'decoder', {k: v for k, v in meta_d.items()
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
    save_module(head, grounding_config, out, 'grounding',
                 {k: v for k, v in meta_g.items() if k not in ('kind', 'config')}
                 | {'history': res_g['history']})
    return {'decoder': res_d['history'], 'grounding': res_g['history'],
            'data_seconds': t_data, 'seconds': time.perf_counter() - t0, 'out': str(out)}


# ============================================================================ tactical
def train_tactical(out_dir, episodes: int = 100, seed: int = 0, epochs: int = 150,
                   batch_size: int = 256, lr: float = 2e-3, samples_per_subgoal: int = 8,
                   val_fraction: float = 0.1, tasks=STRATEGIC_TASKS, progress: bool = True,
                   config: TacticalConfig | None = None, cache_dir=None,
                   robot=DEFAULT_ROBOT) -> dict:
    """Train the tactical waypoint network on the expert's waypoints; writes
    ``tactical.{safetensors,json}`` into ``out_dir``."""
    config = config or TacticalConfig()
    seed_everything(seed)
    out = Path(out_dir)
    t0 = time.perf_counter()
    n_val_ep = max(1, int(round(episodes * val_fraction)))
    seeds = [seed * 10_000 + 5_000 + i for i in range(episodes)]
    cache = dataset_cache_dir(cache_dir, robot)
    tag = f'f{FEATURE_DIM}_s{seed}_n{episodes}_k{samples_per_subgoal}'
    data = cached_dataset(cache / f'tactical_{tag}',
                   lambda: generate_tactical_data(seeds[:-n_val_ep], tasks, samples_per_subgoal,
                                                  seed=seed, progress=progress, robot=robot))
    vdata = cached_dataset(cache / f'tactical_val_{tag}',
                    lambda: generate_tactical_data(seeds[-n_val_ep:], tasks,
                                                   samples_per_subgoal, seed=seed + 1,
                                                   progress=progress, robot=robot))
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
