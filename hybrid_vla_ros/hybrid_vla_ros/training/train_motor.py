"""``hybrid-vla train motor``: train one action expert on demonstrations.

    hybrid-vla train motor --expert coarse_to_fine --data data/mixed --out ckpt/c2f --steps 4000

Seeded; a progress bar shows the loss; validation loss on held-out episodes every
``--val-every`` steps; the checkpoint (safetensors + JSON config, plus the optimizer state for
``--resume``) is written at each validation and at the end. Under ``torchrun --nproc_per_node N``
it trains data-parallel (DDP, gloo backend) and rank 0 writes.
"""
import argparse
import json
import math
import os
import time

import torch
from torch import nn
from tqdm import tqdm

from hybrid_vla_ros.cli import add_robot_argument
from hybrid_vla_ros.models.checkpoint import load_checkpoint, save_checkpoint
from hybrid_vla_ros.models.registry import build_expert, expert_names
from hybrid_vla_ros.motor.features import GOAL_DIM, GOAL_DIM_LOG, log_error_for
from hybrid_vla_ros.training.motor_data import load_motor_samples
from hybrid_vla_ros.training.train_state import load_train_state, save_train_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--expert', required=True, choices=expert_names())
    parser.add_argument('--data', required=True,
                        help='LeRobot v3 dataset folder(s), comma-separated')
    add_robot_argument(parser)  # its joints size the expert; its dataset section names
    parser.add_argument('--out', required=True, help='checkpoint folder')
    parser.add_argument('--tasks', default=None, help='only these tasks (comma-separated)')
    parser.add_argument('--steps', type=int, default=4000)
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--weight-decay', type=float, default=1e-4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--horizon', type=int, default=8)
    parser.add_argument('--d-model', type=int, default=256)
    parser.add_argument('--bins', type=int, default=None, help='token bins (token, c2f)')
    parser.add_argument('--refine-steps', type=int, default=None,
                        help='K sampler steps (flow, diffusion, c2f)')
    parser.add_argument('--log-error', action='store_true',
                        help='precision features: also the tool error on a log scale')
    parser.add_argument('--mu-law', type=float, default=0.0,
                        help='mu-law companded action bins (fine near zero motion); 0 = uniform')
    parser.add_argument('--ensemble', type=int, default=1,
                        help="run-time setting stored in the checkpoint: ACT's temporal "
                             'ensemble of the last M chunks the motor policy runs it with')
    parser.add_argument('--temperature', type=float, default=None,
                        help='run-time setting stored in the checkpoint (coarse_to_fine): the '
                             "refiner's start-noise scale at inference (default 1)")
    parser.add_argument('--balance-tasks', action='store_true',
                        help='draw every task equally often (with replacement), whatever its '
                             'share of the samples')
    parser.add_argument('--val-every', type=int, default=500)
    parser.add_argument('--resume', action='store_true', help='continue from --out')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0 = default)')


class _LossModule(nn.Module):
    """DDP wraps ``forward``; an expert trains through ``loss``."""

    def __init__(self, expert):
        super().__init__()
        self.expert = expert

    def forward(self, batch):
        return self.expert.loss(batch)


def expert_config(args, robot=None) -> dict:
    """The expert's config: sizes from the robot (n arm joints + gripper), the rest from
    ``args``."""
    from hybrid_vla_ros.robot import load_robot
    robot = load_robot(robot if robot is not None else args.robot)
    cfg = {'horizon': args.horizon, 'action_dim': robot.action_dim,
           'delta_dims': robot.n_joints,
           'encoder': {'state_dim': robot.state_dim,
                       'goal_dim': GOAL_DIM_LOG if args.log_error else GOAL_DIM,
                       'd_model': args.d_model, 'hidden_dim': args.d_model}}
    if args.mu_law:
        cfg['mu_law'] = args.mu_law
    if args.bins is not None:
        if args.expert not in ('token', 'coarse_to_fine'):
            raise ValueError(f'--bins applies to token and coarse_to_fine, not {args.expert}')
        cfg['n_bins'] = args.bins
    if getattr(args, 'ensemble', 1) != 1:
        cfg['ensemble'] = args.ensemble
    if getattr(args, 'temperature', None) is not None:
        if args.expert != 'coarse_to_fine':
            raise ValueError(f'--temperature applies to coarse_to_fine, not {args.expert}')
        cfg['temperature'] = args.temperature
    if args.refine_steps is not None:
        if args.expert == 'token':
            raise ValueError('--refine-steps does not apply to the token expert')
        cfg['steps'] = args.refine_steps
    return cfg


def _batches(data, batch_size, generator, rank=0, world=1, weights=None):
    """Endless batches: epochs of a random permutation, or, with per-sample ``weights``,
    epochs of as many draws with replacement in proportion to them."""
    n = len(data['state'])
    batch_size = min(batch_size, n // world)
    if batch_size < 1:
        raise ValueError(f'{n} training samples cannot fill a batch on {world} processes')
    while True:
        if weights is None:
            perm = torch.randperm(n, generator=generator)[rank::world]
        else:
            perm = torch.multinomial(weights, n, replacement=True,
                                     generator=generator)[rank::world]
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            yield {k: v[idx] for k, v in data.items()}


@torch.no_grad()
def validation_loss(expert, val, batch_size=1024, seed=0) -> float:
    if val is None:
        return float('nan')
    expert.eval()
    torch.manual_seed(seed)  # the stochastic objectives sample t/noise: same draw each time
    total, n = 0.0, len(val['state'])
    for i in range(0, n, batch_size):
        b = {k: v[i:i + batch_size] for k, v in val.items()}
        total += float(expert.loss(b)) * len(b['state'])
    expert.train()
    return total / n


def args_dict(args) -> dict:
    """The command-line options as plain JSON values (argparse bookkeeping dropped)."""
    return {k: v for k, v in vars(args).items()
            if not k.startswith('_') and k not in ('command', 'target')}


def command_line(args) -> str:
    opts = ' '.join(f"--{k.replace('_', '-')}" + ('' if v is True else f' {v}')
                    for k, v in args_dict(args).items()
                    if v is not None and v is not False)  # 0 / 0.0 are values: kept
    return f'hybrid-vla train {args.target} {opts}'


def run(args) -> int:
    world = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    if world > 1:
        torch.distributed.init_process_group('gloo')
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    roots = [r for r in args.data.split(',') if r]
    tasks = args.tasks.split(',') if args.tasks else None
    log_error = args.log_error
    if args.resume:  # the features follow the checkpoint being continued
        with open(os.path.join(args.out, 'config.json')) as f:
            log_error = log_error_for(json.load(f)['config']['encoder']['goal_dim'])
    from hybrid_vla_ros.robot import load_robot
    robot = load_robot(args.robot)
    train, val = load_motor_samples(roots, args.horizon, seed=args.seed, tasks=tasks,
                                    log_error=log_error, robot=robot,
                                    balance_tasks=args.balance_tasks)
    weights = train.pop('sample_weight', None)
    log = print if rank == 0 else (lambda *a, **k: None)
    log(f'train motor/{args.expert}: {len(train["state"])} training samples, '
        f'{0 if val is None else len(val["state"])} validation samples from {roots} '
        f'(robot {robot.name}: {robot.n_joints} joints + gripper)')

    if args.resume:
        expert = load_checkpoint(args.out, joint_names=robot.joint_names)
    else:
        expert = build_expert(args.expert, **expert_config(args, robot))
        expert.fit_normalization(train)
    model = _LossModule(expert)
    if world > 1:  # rank 0's initial weights and statistics are broadcast to every rank
        model = torch.nn.parallel.DistributedDataParallel(model)
        torch.manual_seed(args.seed * 1009 + rank)  # distinct noise draws per rank
        log(f'DDP: {world} processes (gloo), {args.batch_size} samples per process per step '
            f'(global batch {args.batch_size * world}), disjoint shards of the data')
    robot_meta = {'name': robot.name, 'joint_names': list(robot.joint_names),
                  'gripper_joint': robot.gripper_joint}
    opt = torch.optim.AdamW(expert.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    start, history = 0, []
    if args.resume:
        info = load_train_state(args.out, opt)
        start, history = info['step'], info['history']
        log(f'resuming at step {start}')
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, args.steps)))),
        last_epoch=start - 1)
    gen = torch.Generator().manual_seed(args.seed * 1000 + start)
    batches = _batches(train, args.batch_size, gen, rank, world, weights)
    t0 = time.monotonic()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, unit='step',
               desc=f'train {args.expert}', disable=rank != 0, mininterval=1.0)
    expert.train()
    ema = None
    for step in bar:
        loss = model(next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(expert.parameters(), 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        bar.set_postfix(loss=f'{ema:.4f}')
        last = step + 1 == args.steps
        if rank == 0 and ((step + 1) % args.val_every == 0 or last):
            v = validation_loss(expert, val)
            history.append({'step': step + 1, 'train_loss': ema, 'val_loss': v})
            save_checkpoint(args.out, expert, robot=robot_meta)
            save_train_state(args.out, opt, {'step': step + 1, 'history': history,
                                             'args': args_dict(args)})
            bar.write(f'step {step + 1}: train {ema:.4f}  val {v:.4f}')
    if rank == 0:
        minutes = (time.monotonic() - t0) / 60
        with open(os.path.join(args.out, 'training.json'), 'w') as f:
            json.dump({'expert': args.expert, 'data': roots, 'steps': args.steps,
                       'minutes': round(minutes, 2), 'history': history,
                       'command': command_line(args)}, f, indent=2)
        log(f'train motor/{args.expert}: done in {minutes:.1f} min -> {args.out}')
    if world > 1:
        # Every rank must end with the same weights: compare a checksum across processes.
        total = torch.stack([p.detach().double().sum() for p in expert.parameters()]).sum()
        sums = [torch.zeros_like(total) for _ in range(world)]
        torch.distributed.all_gather(sums, total)
        spread = float(max(sums) - min(sums))
        log(f'DDP: parameter checksums of the {world} processes differ by {spread:.3g}')
        torch.distributed.destroy_process_group()
        if spread > 1e-6 * max(1.0, abs(float(total))):
            raise RuntimeError(f'DDP processes diverged (checksum spread {spread})')
    return 0
