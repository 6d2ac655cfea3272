"""``hybrid-vla collect``: scripted-expert demonstrations into a LeRobot v3 dataset folder.

    hybrid-vla collect --task pick_place --episodes 200 --seed 0 --out data/pick_place

Run ``i`` uses seed ``seed + i`` (so a dataset is reproducible and a resumed run continues
where it stopped: the seeds already stored are skipped); ``--task`` takes a comma-separated
list, cycled over the runs. Runs execute in ``--workers`` processes, each with its own MuJoCo
sim, and are stored in run order whatever the number of workers (failed runs are dropped unless
``--keep-failed``). Every stored episode is one atomic commit (see
:mod:`hybrid_vla_ros.data.atomic_commit`): Ctrl-C or a kill keeps every finished episode.
"""
import argparse
import multiprocessing as mp
import time

from tqdm import tqdm

from hybrid_vla_ros.cli import add_robot_argument
from hybrid_vla_ros.data.dataset_writer import DatasetWriter
from hybrid_vla_ros.data.demonstration import demonstration_features, episode_arrays

_SIM = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--task', required=True,
                        help='task name or comma-separated list (reach,pick_place,...)')
    parser.add_argument('--episodes', type=int, required=True)
    parser.add_argument('--seed', type=int, default=0, help='seed of episode 0 (default 0)')
    parser.add_argument('--out', required=True, help='dataset folder (created or resumed)')
    parser.add_argument('--workers', type=int, default=1, help='processes (default 1)')
    add_robot_argument(parser)
    parser.add_argument('--no-images', action='store_true',
                        help='do not record the camera (no video feature)')
    parser.add_argument('--image-size', type=int, default=128,
                        help='camera width=height in pixels (even; default 128)')
    parser.add_argument('--action-noise', type=float, default=0.0,
                        help='DART noise (rad) on the executed targets of every other episode; '
                             'labels stay the clean expert targets (default 0)')
    parser.add_argument('--recovery', type=int, default=0,
                        help='recovery segments recorded after each precise (servo) episode')
    parser.add_argument('--keep-failed', action='store_true',
                        help='also store episodes the expert failed (flagged success=false)')
    parser.add_argument('--dagger', default=None, metavar='CHECKPOINT',
                        help='DAgger: a motor checkpoint folder drives, the expert labels the '
                             'states near precise targets (see hybrid_vla_ros.data.dagger)')
    parser.add_argument('--dagger-radius', type=float, default=0.02,
                        help='label states within this distance (m) of the target (default 0.02)')


_LEARNER = None  # (MotorPolicy, expert name) when collecting DAgger labels
_SPEC = None


def _worker_init(image_size, robot, dagger=None):
    global _SIM, _LEARNER, _SPEC
    import torch  # noqa: F401  (keep BLAS single-threaded per worker)
    torch.set_num_threads(1)
    from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
    from hybrid_vla_ros.robot import load_robot
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    model = load_robot(robot)
    _SPEC = load_dataset_spec(model)
    _SIM = ArmSim(robot=model, camera_width=image_size, camera_height=image_size)
    if dagger:
        from hybrid_vla_ros.models.checkpoint import load_checkpoint
        from hybrid_vla_ros.motor.policy import MotorPolicy
        expert = load_checkpoint(dagger, joint_names=model.joint_names)
        _LEARNER = (MotorPolicy({expert.name: expert}), expert.name)


def _run_dagger_episode(job):
    from hybrid_vla_ros.data.dagger import dagger_episode

    index, task, seed, radius = job
    policy, name = _LEARNER
    arrays, meta = dagger_episode(_SIM, _SPEC, task, seed, policy, name, policy.horizon,
                                  radius)
    return index, meta, arrays


def _run_episode(job):
    from hybrid_vla_ros.sim.rollout import rollout
    from hybrid_vla_ros.sim.scripted_expert import plan, task_state, waypoints

    index, task, seed, images, noise, recovery = job
    res = rollout(_SIM, task, seed, policy=None, image=images, record=True,
                  action_noise=noise, recovery_segments=recovery)
    arrays = episode_arrays(res['log'], _SPEC, res.get('frames') if images else None)
    # The plan and each sub-goal's waypoints as the expert saw them at the episode start.
    _SIM.reset(task, seed)
    state = task_state(_SIM)
    subgoals = plan(state, res.get('expert_choice', 0))  # the mode the expert executed
    meta = {'task': task, 'seed': seed, 'instruction': res['instruction'], 'action_noise': noise,
            'success': res['success'], 'error_mm': res['error_mm'],
            'subgoals': [sg.to_dict() for sg in subgoals],
            'waypoints': [[w.to_dict() for w in waypoints(sg, state)] for sg in subgoals]}
    return index, meta, arrays


def run(args) -> int:
    from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
    from hybrid_vla_ros.sim.tasks import CONTROL_DT, get_task

    tasks = [t.strip() for t in args.task.split(',') if t.strip()]
    for t in tasks:
        get_task(t)  # raises with the list of known tasks
    if args.episodes <= 0 or args.workers <= 0:
        raise SystemExit('--episodes and --workers must be > 0')
    if args.image_size < 32 or args.image_size % 2:
        raise SystemExit(f'--image-size must be an even number >= 32, got {args.image_size}')
    from hybrid_vla_ros.robot import load_robot
    robot = load_robot(args.robot)
    spec = load_dataset_spec(robot)
    images = not args.no_images
    horizon = None
    if args.dagger:
        if args.action_noise or args.recovery or images:
            raise SystemExit('--dagger records the learner with the expert\'s labels: use it '
                             'with --no-images and without --action-noise/--recovery')
        if args.dagger_radius <= 0:
            raise SystemExit('--dagger-radius must be > 0')
        from hybrid_vla_ros.models.checkpoint import load_checkpoint
        horizon = load_checkpoint(args.dagger, joint_names=robot.joint_names).config.horizon
    fps = 1.0 / CONTROL_DT
    writer = DatasetWriter(args.out, fps=int(round(fps)), robot_type=spec.robot,
                           features=demonstration_features(
                               spec, (args.image_size, args.image_size) if images else None,
                               chunk_horizon=horizon))
    done = {m['run'] for m in writer.metas if 'run' in m}
    if args.dagger:
        jobs = [(i, tasks[i % len(tasks)], args.seed + i, args.dagger_radius)
                for i in range(args.episodes) if i not in done]
        run_episode = _run_dagger_episode
    else:
        jobs = [(i, tasks[i % len(tasks)], args.seed + i, images,
                 args.action_noise if i % 2 else 0.0, args.recovery)
                for i in range(args.episodes) if i not in done]
        run_episode = _run_episode
    skipped = args.episodes - len(jobs)
    if skipped:
        print(f'collect: resuming, {skipped} episodes already in {args.out}')
    ok = failed = 0
    t0 = time.monotonic()
    bar = tqdm(total=args.episodes, initial=skipped, unit='ep', desc='collect')
    ctx = mp.get_context('spawn' if args.workers > 1 else 'fork')
    # workers get the YAML path (a spawned process loads the same robot from it)
    init = (args.image_size, robot.config_file, args.dagger)
    pool = ctx.Pool(args.workers, initializer=_worker_init,
                    initargs=init) if args.workers > 1 else None
    try:
        if pool is None:
            _worker_init(*init)
            results = map(run_episode, jobs)
        else:
            results = pool.imap(run_episode, jobs)  # in run order: a reproducible dataset
        for index, meta, arrays in results:
            # arrays is None: a DAgger learner that never came near a precise target
            if arrays is not None and (meta['success'] or args.keep_failed):
                writer.add_episode(arrays, meta['instruction'], dict(meta, run=index))
            won = meta.get('learner_success', meta['success'])
            ok += int(won)
            failed += int(not won)
            bar.update(1)
            bar.set_postfix(success=f'{ok}/{ok + failed}')
    except KeyboardInterrupt:
        print(f'\ncollect: interrupted; {len(writer.episodes)} finished episodes kept in '
              f'{args.out} (run the same command again to resume)')
        return 130
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    minutes = (time.monotonic() - t0) / 60.0
    rate = len(jobs) / minutes if minutes > 0 else float('nan')
    print(f'collect: {ok} succeeded, {failed} failed, {len(writer.episodes)} episodes in '
          f'{args.out} ({rate:.1f} episodes/min with {args.workers} worker(s))')
    return 0
