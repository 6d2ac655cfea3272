"""Lesson exercise 4: per-component latency of the motor-level experts and the 50 ms budget.

Sizes are the lesson's reference sizes: observation features 512 (state 8 + goal 8 + image
496) -> d_model 256, 64 bins, chunk H = 8, 7 action dims, refinement MLP 256 wide, 5 steps.
Ours and the lesson's eager reference run in the same process. The headline rows (full
forwards, ours vs reference) are timed in alternating blocks of 25 calls, so a load change on
this shared machine hits both alike; component rows are timed one after the other. Every number is
a median over ``--iters`` calls after warm-up (CPU; no GPU here, so no CUDA-graph numbers).
"Ours" is the public ``CoarseToFine.sample`` (validation, fresh noise, NaN/Inf check); on CPU
``set_capture('whole')`` runs it as the hand-fused numpy/BLAS kernel up to batch 8 (single
thread: numpy's BLAS pinned to 1 thread) and as the traced TorchScript graph above that (the
B=32 columns); the traced graph at every batch size is the row below it.

    PYTHONPATH=. python bench/bench_latency.py [--iters 300] [--threads 1 2] [--batch 1 32]
"""
import argparse
import statistics
import time
from typing import Callable, Dict, List

import numpy as np
import torch

from hybrid_vla_ros.models import CapturedLoop, build_expert
from hybrid_vla_ros.models.reference import ReferenceCoarseToFine

H, D, BINS, STEPS, DDIM_STEPS = 8, 7, 64, 5, 10
ENCODER = {'state_dim': 8, 'goal_dim': 8, 'image_feat_dim': 496, 'd_model': 256,
           'hidden_dim': 256, 'n_layers': 1}
BUDGET_MS = 50.0
REF_FULL = 'reference: full forward (coarse + 5 refine steps)'
OURS_FULL = 'ours: full sample, whole (validated, fresh noise; numpy/BLAS kernel up to B=8)'
OURS_FULL_10 = 'ours: full sample, whole, 10 refinement steps'
OURS_JIT = 'ours: full sample, whole as one traced + frozen TorchScript graph (validated)'
OURS_EAGER = 'ours: full sample, eager (validated)'


def median_ms(fn: Callable[[], object], iters: int, warmup: int = 20) -> float:
    return paired_median_ms({'x': fn}, iters, warmup)['x']


def paired_median_ms(fns: Dict[str, Callable[[], object]], iters: int,
                     warmup: int = 20, block: int = 25) -> Dict[str, float]:
    """Median ms of each function, timed in alternating blocks of ``block`` calls.

    Alternating blocks expose every function to the same load drift on this shared machine,
    while each block still runs with its own weights warm in cache, as a policy node does.
    """
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        done = 0
        while done < iters:
            n = min(block, iters - done)
            for name, fn in fns.items():
                fn()  # re-warm this function's weights after the other block
                for _ in range(n):
                    start = time.perf_counter()
                    fn()
                    samples[name].append(time.perf_counter() - start)
            done += n
    return {name: statistics.median(s) * 1e3 for name, s in samples.items()}


def build_models():
    torch.manual_seed(0)
    c2f = build_expert('coarse_to_fine', encoder=ENCODER, horizon=H, action_dim=D, delta_dims=D,
                       n_bins=BINS, trunk_layers=0, hidden_dim=256, n_layers=2, steps=STEPS,
                       refiner_obs_skip=False)  # the reference's refiner sees (coarse, feat, t)
    diff = build_expert('diffusion', encoder=ENCODER, horizon=H, action_dim=D, delta_dims=D,
                        hidden_dim=256, n_layers=2, steps=DDIM_STEPS)
    ref = ReferenceCoarseToFine(obs_dim=512, d_model=256, n_bins=BINS, horizon=H,
                                action_dim=D, refine_hidden=256, steps=STEPS, noise=0.1)
    return c2f.eval(), diff.eval(), ref.eval()


def obs_batch(b: int) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(b)
    return {'state': torch.randn(b, 8, generator=g), 'goal': torch.randn(b, 8, generator=g),
            'image_feat': torch.randn(b, 496, generator=g)}


def measure(threads: int, b: int, iters: int, c2f, diff, ref) -> Dict[str, float]:
    torch.set_num_threads(threads)
    obs = obs_batch(b)
    flat = torch.cat([obs['state'], obs['goal'], obs['image_feat']], dim=-1)
    rows: Dict[str, float] = {}
    with torch.no_grad():
        # Headline: full forwards, interleaved.
        whole5 = build_expert('coarse_to_fine', config=c2f.config)
        whole5.load_state_dict(c2f.state_dict())
        whole5.eval().set_capture('whole')
        whole10 = build_expert('coarse_to_fine', config=c2f.config)
        whole10.load_state_dict(c2f.state_dict())
        whole10.eval().set_capture('whole')
        jit5 = build_expert('coarse_to_fine', config=c2f.config)
        jit5.load_state_dict(c2f.state_dict())
        jit5.host_kernel = False  # the traced + frozen graph instead of the numpy kernel
        jit5.eval().set_capture('whole')
        c2f.set_capture(None)
        r0 = torch.randn(b, H * D)
        # Ours draws fresh noise per call, as the reference does (torch.randn_like).
        rows.update(paired_median_ms({
            REF_FULL: lambda: ref(flat),
            OURS_FULL: lambda: whole5.sample(obs),
            OURS_FULL_10: lambda: whole10.sample(obs, steps=10),
            OURS_JIT: lambda: jit5.sample(obs),
            OURS_EAGER: lambda: c2f.sample(obs),
        }, iters))
        keys, kernel = next(iter(whole5._whole.values()))
        args = [obs[k] for k in keys] + [r0]
        rows['ours: whole call only (no validation, given noise)'] = median_ms(
            lambda: kernel(*args), iters)

        # Components of ours.
        feat, raw = c2f._features(obs)
        coarse = c2f.token.coarse_from_features(feat)
        cond = c2f._cond(feat, raw, coarse)
        loop = c2f.sampler_loop(STEPS)
        t0 = torch.zeros(b)
        rows['ours: encoder'] = median_ms(lambda: c2f.encoder(obs), iters)
        rows['ours: coarse pass (one fused head + argmax)'] = median_ms(
            lambda: c2f.token.coarse_from_features(feat), iters)
        rows['ours: one refinement step (eager)'] = median_ms(
            lambda: c2f.refiner(r0, t0, cond), iters)
        rows[f'ours: {STEPS} refinement steps, eager loop'] = median_ms(
            lambda: loop.plain(r0, cond), iters)
        for backend in ('fused', 'jit'):
            cap = CapturedLoop(loop, backend)
            rows[f'ours: {STEPS} refinement steps, captured {backend}'] = median_ms(
                lambda cap=cap: cap(r0, cond), iters)

        # DDIM (diffusion head at the same sizes).
        dloop = diff.sampler_loop(DDIM_STEPS)
        dcond = diff.encoder(obs)
        rows['diffusion: one DDIM step (eager net call)'] = median_ms(
            lambda: diff.net(r0, t0, dcond), iters)
        rows[f'diffusion: {DDIM_STEPS} DDIM steps, eager loop'] = median_ms(
            lambda: dloop.plain(r0, dcond), iters)
        dcap = CapturedLoop(dloop, 'jit')
        rows[f'diffusion: {DDIM_STEPS} DDIM steps, captured jit'] = median_ms(
            lambda: dcap(r0, dcond), iters)

        # Components of the reference.
        rfeat = ref.encoder(flat)
        rcoarse = ref.coarse(rfeat)
        rows['reference: encoder'] = median_ms(lambda: ref.encoder(flat), iters)
        rows['reference: coarse pass (7 heads looped)'] = median_ms(
            lambda: ref.coarse(rfeat), iters)
        rows['reference: one refinement step'] = median_ms(
            lambda: ref.refine_step(rcoarse.flatten(1), rfeat, 0.0), iters)
        rows[f'reference: {STEPS} refinement steps'] = median_ms(
            lambda: ref.refine(rfeat, rcoarse), iters)
    return rows


def budget_line(rows: Dict[str, float], b: int, threads: int) -> str:
    """Refinement steps that fit in the budget, from the paired K=5 / K=10 whole-graph runs."""
    per_step = max((rows[OURS_FULL_10] - rows[OURS_FULL]) / 5, 1e-6)
    fixed = max(rows[OURS_FULL] - STEPS * per_step, 0.0)
    k_max = int((BUDGET_MS - fixed) / per_step)
    return (f'| B={b}, {threads} thr | {fixed:.3f} | {per_step:.4f} | {rows[OURS_FULL]:.3f} '
            f'({100 * rows[OURS_FULL] / BUDGET_MS:.1f}%) | {k_max} |')


def blas_note() -> str:
    """numpy's BLAS (the kernel's matmuls), as threadpoolctl reports it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f'numpy {np.__version__}'
    libs = [f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()
            if i.get('user_api') == 'blas' and 'numpy' in i.get('filepath', '')]
    return f"numpy {np.__version__} BLAS {', '.join(libs) or '?'} (kernel: 1 thread)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 32])
    args = parser.parse_args()
    c2f, diff, ref = build_models()
    results = {}
    for threads in args.threads:
        for b in args.batch:
            results[(threads, b)] = measure(threads, b, args.iters, c2f, diff, ref)
    cols = list(results)
    print(f'torch {torch.__version__}, CPU, median of {args.iters} calls after warm-up (ms); '
          f'{blas_note()}\n')
    print('| component | ' + ' | '.join(f'B={b}, {t} thr' for t, b in cols) + ' |')
    print('|---|' + '---:|' * len(cols))
    for name in results[cols[0]]:
        print(f'| {name} | ' + ' | '.join(f'{results[c][name]:.3f}' for c in cols) + ' |')
    ratio = ['**ratio: reference full forward / ours full sample (same blocks)**']
    for col in cols:
        ratio.append(f'**{results[col][REF_FULL] / results[col][OURS_FULL]:.2f}x**')
    print('| ' + ' | '.join(ratio) + ' |')
    print(f'\nBudget split of {BUDGET_MS:.0f} ms (20 Hz), ours, whole graph:\n')
    print('| setting | fixed: validate + encoder + coarse (ms) | per refinement step (ms) | '
          f'{STEPS}-step sample (ms, % of budget) | max refinement steps in budget |')
    print('|---|---:|---:|---:|---:|')
    for (threads, b), rows in results.items():
        print(budget_line(rows, b, threads))


if __name__ == '__main__':
    main()
