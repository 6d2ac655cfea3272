"""Action experts on synthetic, structured data (no demos needed): shapes, learning, precision,
captured == eager, checkpoints, input validation, multimodality, router."""
import json
import os

import pytest
from safetensors.torch import load_file, save_file
import torch

from hybrid_vla_ros.models import (
    CapturedLoop,
    CheckpointError,
    CoarseToFineConfig,
    EncoderConfig,
    ModelConfigError,
    Router,
    RouterConfig,
    TokenHead,
    build_expert,
    expert_names,
    load_checkpoint,
    save_checkpoint,
    train_router,
)
from hybrid_vla_ros.models.reference import ReferenceCoarseToFine

torch.set_num_threads(1)

H, D, S, G = 8, 8, 8, 8
SMALL = {'encoder': {'d_model': 64, 'hidden_dim': 64}, 'hidden_dim': 128}


def small(name, **extra):
    cfg = dict(SMALL)
    if name == 'token':
        cfg.pop('hidden_dim')
    cfg.update(extra)
    return build_expert(name, **cfg)


def smooth_dataset(n=512, seed=0):
    """Chunk = smooth function of the observation: joints ramp from the state towards a
    goal-dependent offset; the gripper target copies the goal's gripper value."""
    g = torch.Generator().manual_seed(seed)
    state = torch.rand(n, S, generator=g) * 2 - 1
    goal = torch.rand(n, G, generator=g) * 2 - 1
    mix = torch.randn(G, 7, generator=torch.Generator().manual_seed(123)) * 0.5
    offset = 0.1 * goal @ mix  # (n, 7), linear so a small net reaches sub-bin precision
    ramp = torch.arange(1, H + 1).float() / H  # (H,)
    joints = state[:, None, :7] + ramp[None, :, None] * offset[:, None, :]
    grip = (goal[:, 7:8] > 0).float()[:, None, :].expand(n, H, 1)
    return {'state': state, 'goal': goal, 'action': torch.cat([joints, grip], dim=-1)}


def bimodal_dataset(n=1024, seed=0):
    """Same observation distribution, but the chunk goes either up or down (50/50)."""
    g = torch.Generator().manual_seed(seed)
    state = torch.rand(n, S, generator=g) * 0.2 - 0.1
    goal = torch.rand(n, G, generator=g) * 0.2 - 0.1
    sign = (torch.rand(n, generator=g) < 0.5).float() * 2 - 1
    ramp = torch.arange(1, H + 1).float() / H
    action = state[:, None, :].expand(n, H, D) + 0.5 * sign[:, None, None] * ramp[None, :, None]
    return {'state': state, 'goal': goal, 'action': action.contiguous()}


def train(model, data, steps=100, lr=2e-3, batch=64, seed=0, fit=True):
    """Adam with a one-cycle schedule (the decay matters for sub-bin precision)."""
    torch.manual_seed(seed)
    if fit:
        model.fit_normalization(data)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    n = data['state'].shape[0]
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,))
        loss = model.loss({k: v[idx] for k, v in data.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def obs_of(data, idx=slice(0, 16)):
    return {k: v[idx] for k, v in data.items() if k != 'action'}


@pytest.mark.parametrize('name', expert_names())
def test_sample_shape_and_dtype(name):
    model = small(name)
    data = smooth_dataset(64)
    model.fit_normalization(data)
    for b in (1, 5):
        out = model.eval().sample(obs_of(data, slice(0, b)))
        assert out.shape == (b, H, D) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', expert_names())
def test_loss_falls(name):
    model = small(name)
    losses = train(model, smooth_dataset(), steps=150, lr=5e-3)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.75 * first, (first, last)


def test_token_round_trip_within_half_a_bin():
    model = TokenHead(small('token').config)
    data = smooth_dataset(256)
    model.fit_normalization(data)
    tokens = model.encode(data['action'], data['state'])
    assert tokens.dtype == torch.int64 and tokens.shape == (256, H, D)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < model.config.n_bins
    err = (model.decode(tokens, data['state']) - data['action']).abs()
    assert (err <= model.bin_width() / 2 + 1e-6).all()


def test_token_logits_come_from_one_fused_layer():
    model = small('token', n_bins=64)
    logits = model.logits_from_features(torch.zeros(3, 64))
    assert logits.shape == (3, H * D, 64)
    assert model.logits_proj.out_features == H * D * 64


def test_coarse_to_fine_refines_below_the_coarse_bin():
    """Exercise 1 in miniature: the refined chunk is well below the coarse chunk's error.

    A few distinct situations, so a small CPU budget can fit them to sub-bin precision.
    """
    full = smooth_dataset(1024)
    data = {k: v[torch.arange(1024) % 4] for k, v in full.items()}
    model = small('coarse_to_fine', n_bins=32, steps=5, noise_scale=0.5)
    model.fit_normalization(full)
    train(model, data, steps=300, lr=3e-3, batch=64, fit=False)
    test = {k: v[:4] for k, v in data.items()}
    refined, coarse = model.sample(obs_of(test, slice(None)), return_coarse=True,
                                   generator=torch.Generator().manual_seed(0))
    err_coarse = (coarse - test['action'])[..., :7].abs().mean()
    err_refined = (refined - test['action'])[..., :7].abs().mean()
    assert err_refined < 0.6 * err_coarse, (float(err_coarse), float(err_refined))


def test_diffusion_keeps_both_modes():
    model = small('diffusion', steps=10, train_timesteps=50)
    data = bimodal_dataset()
    train(model, data, steps=1200, lr=3e-3, batch=128)
    obs = {k: v[:1].expand(400, -1) for k, v in obs_of(data).items()}
    out = model.sample(obs, generator=torch.Generator().manual_seed(0))
    # Mean displacement of the last step from the state: +0.5 (up) or -0.5 (down); a
    # mode-averaging head would put the chunks at 0.
    disp = (out[:, -1, :] - obs['state']).mean(-1)
    up, down = (disp > 0.3).float().mean(), (disp < -0.3).float().mean()
    between = (disp.abs() < 0.15).float().mean()
    assert up > 0.2 and down > 0.2 and between < 0.2, (float(up), float(down), float(between))


@pytest.mark.parametrize('name,extra', [('flow', {}), ('flow', {'method': 'midpoint'}),
                                        ('diffusion', {}), ('coarse_to_fine', {})])
@pytest.mark.parametrize('backend', ['fused', 'jit', 'whole'])
def test_captured_matches_eager(name, extra, backend):
    model = small(name, **extra)
    data = smooth_dataset(64)
    train(model, data, steps=5)
    obs = obs_of(data, slice(0, 4))
    noise = torch.randn(4, H * D, generator=torch.Generator().manual_seed(1))
    eager = model.sample(obs, noise=noise)
    model.set_capture(backend)
    captured = model.sample(obs, noise=noise)
    again = model.sample(obs, noise=noise)  # replay of the captured graph
    assert torch.allclose(captured, eager, atol=1e-5, rtol=0)
    assert torch.equal(captured, again)
    other = model.sample(obs_of(data, slice(4, 7)), noise=noise[:3])  # new batch size
    model.set_capture(None)
    assert torch.allclose(other, model.sample(obs_of(data, slice(4, 7)), noise=noise[:3]),
                          atol=1e-5, rtol=0)


@pytest.mark.parametrize('obs_skip', [True, False])
def test_coarse_to_fine_whole_graph_matches_eager_with_images(obs_skip):
    model = build_expert('coarse_to_fine', encoder={'image_feat_dim': 12, 'd_model': 32},
                         hidden_dim=64, refiner_obs_skip=obs_skip)
    data = smooth_dataset(64)
    data['image_feat'] = torch.randn(64, 12)
    train(model, data, steps=5)
    obs, noise = obs_of(data, slice(0, 3)), torch.randn(3, H * D)
    eager, eager_coarse = model.sample(obs, noise=noise, return_coarse=True)
    model.set_capture('whole')
    refined, coarse = model.sample(obs, noise=noise, return_coarse=True)
    assert torch.allclose(refined, eager, atol=1e-5, rtol=0)
    assert torch.allclose(coarse, eager_coarse, atol=1e-6, rtol=0)  # same tokens


def test_whole_graph_still_rejects_nan_observations():
    model = small('coarse_to_fine')
    data = smooth_dataset(16)
    train(model, data, steps=2)
    model.set_capture('whole')
    obs = obs_of(data, slice(0, 4))
    model.sample(obs)  # builds the graph
    for key in ('state', 'goal'):
        bad = dict(obs, **{key: obs[key].clone()})
        bad[key][1, 2] = float('nan')
        with pytest.raises(ValueError, match=f"'{key}' contains NaN/Inf"):
            model.sample(bad)


@pytest.mark.parametrize('extra', [{}, {'trunk_layers': 0, 'refiner_obs_skip': False},
                                   {'trunk_layers': 2, 'n_layers': 1},
                                   {'encoder': {'n_layers': 2, 'd_model': 32, 'hidden_dim': 48},
                                    'n_layers': 3}])
@pytest.mark.parametrize('steps', [1, 5])
def test_coarse_to_fine_cpu_kernel_matches_eager(extra, steps):
    """set_capture('whole') on CPU runs the numpy/BLAS kernel; it matches eager at batch 1
    (its one-hot fast path) and at batch 3, for every encoder / trunk / refiner layout."""
    from hybrid_vla_ros.models.host_kernel import HostCoarseToFine
    model = build_expert('coarse_to_fine', **{**SMALL, **extra})
    data = smooth_dataset(64)
    train(model, data, steps=5)
    model.eval()
    for b in (1, 3):
        obs = obs_of(data, slice(0, b))
        noise = torch.randn(b, H * D, generator=torch.Generator().manual_seed(b))
        model.set_capture(None)
        eager, eager_coarse = model.sample(obs, steps=steps, noise=noise, return_coarse=True)
        model.set_capture('whole')
        refined, coarse = model.sample(obs, steps=steps, noise=noise, return_coarse=True)
        assert isinstance(next(iter(model._whole.values()))[1], HostCoarseToFine)
        assert torch.allclose(refined, eager, atol=1e-5, rtol=0)
        assert torch.allclose(coarse, eager_coarse, atol=1e-6, rtol=0)
        again = model.sample(obs, steps=steps, noise=noise)  # static buffers reused
        assert torch.equal(again, refined) and not again.requires_grad


def test_coarse_to_fine_fast_path_noise_and_nan_at_batch_1():
    """Batch 1 through the CPU kernel: fresh noise per call (the same draws as torch.randn),
    and a NaN/Inf in any observation key or in given noise raises, never returns actions."""
    model = build_expert('coarse_to_fine', encoder={'image_feat_dim': 12, 'd_model': 32},
                         hidden_dim=64)
    data = smooth_dataset(16)
    data['image_feat'] = torch.randn(16, 12)
    train(model, data, steps=2)
    model.set_capture('whole')
    obs = obs_of(data, slice(0, 1))
    torch.manual_seed(7)
    first, second = model.sample(obs), model.sample(obs)
    assert not torch.equal(first, second)  # fresh noise each call
    torch.manual_seed(7)
    assert torch.equal(first, model.sample(obs, noise=torch.randn(1, H * D)))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(obs, generator=g1),
                       model.sample(obs, noise=torch.randn(1, H * D, generator=g2)))
    for key in ('state', 'goal', 'image_feat'):
        for value in (float('nan'), float('inf')):
            bad = dict(obs, **{key: obs[key].clone()})
            bad[key][0, 1] = value
            with pytest.raises(ValueError, match=f"'{key}' contains NaN/Inf"):
                model.sample(bad)
    with pytest.raises(ValueError, match='noise contains NaN/Inf'):
        model.sample(obs, noise=torch.full((1, H * D), float('nan')))
    with torch.enable_grad():  # sample is no-grad whatever the caller's mode
        assert not model.sample(obs).requires_grad


def test_token_whole_graph_matches_eager():
    model = small('token')
    data = smooth_dataset(64)
    train(model, data, steps=5)
    obs = obs_of(data, slice(0, 4))
    eager = model.sample(obs)
    model.set_capture('whole')
    # batch 4: the numpy/BLAS kernel (token pass of HostCoarseToFine); batch 16: the fused
    # traced graph. Both fold the standardisation (float rounding), both pick the same tokens.
    assert torch.allclose(model.sample(obs), eager, atol=1e-5, rtol=0)
    from hybrid_vla_ros.models.host_kernel import HostCoarseToFine
    assert isinstance(next(iter(model._whole.values()))[1].kernel, HostCoarseToFine)
    big = obs_of(data, slice(0, 16))
    model.set_capture(None)
    eager_big = model.sample(big)
    model.set_capture('whole')
    assert torch.allclose(model.sample(big), eager_big, atol=1e-5, rtol=0)
    for key in obs:  # state, goal
        for b in (obs, big):
            bad = dict(b, **{key: b[key].clone()})
            bad[key][-1, 1] = float('nan')
            with pytest.raises(ValueError, match=f"'{key}' contains NaN/Inf"):
                model.sample(bad)


def test_captured_auto_picks_a_matching_backend():
    model = small('coarse_to_fine')
    model.fit_normalization(smooth_dataset(64))
    loop = model.eval().sampler_loop(5)
    x, cond = torch.randn(2, H * D), torch.randn(2, 64 + S + G + H * D)
    captured = CapturedLoop(loop, 'auto')
    out = captured(x, cond)
    assert captured.chosen(x) in ('fused', 'jit')
    assert torch.allclose(out, loop.plain(x, cond), atol=1e-5, rtol=0)


def test_recapture_after_training_uses_new_weights():
    model = small('flow')
    data = smooth_dataset(64)
    train(model, data, steps=2)
    model.set_capture('jit')
    obs, noise = obs_of(data, slice(0, 2)), torch.randn(2, H * D)
    before = model.sample(obs, noise=noise)
    train(model, data, steps=3)  # train() invalidates the captured graphs
    model.set_capture('jit')
    after = model.sample(obs, noise=noise)
    model.set_capture(None)
    assert not torch.equal(before, after)
    assert torch.allclose(after, model.sample(obs, noise=noise), atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_graph_matches_eager():
    model = small('coarse_to_fine').cuda()
    data = {k: v.cuda() for k, v in smooth_dataset(64).items()}
    model.fit_normalization(data)
    model.eval()
    obs, noise = obs_of(data, slice(0, 4)), torch.randn(4, H * D, device='cuda')
    eager = model.sample(obs, noise=noise)
    model.set_capture('cuda_graph')
    for b in (4, 2):  # a new batch size re-captures
        out = model.sample(obs_of(data, slice(0, b)), noise=noise[:b])
        assert torch.allclose(out, eager[:b], atol=1e-5, rtol=0)


@pytest.mark.parametrize('name', expert_names())
def test_checkpoint_round_trip(name, tmp_path):
    model = small(name)
    data = smooth_dataset(64)
    train(model, data, steps=3)
    save_checkpoint(str(tmp_path), model)
    meta = json.loads((tmp_path / 'config.json').read_text())
    assert meta['kind'] == name and meta['config']['encoder']['d_model'] == 64
    loaded = load_checkpoint(str(tmp_path))
    assert type(loaded) is type(model) and loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    obs, noise = obs_of(data, slice(0, 3)), torch.randn(3, H * D)
    kwargs = {} if name == 'token' else {'noise': noise}
    assert torch.equal(model.sample(obs, **kwargs), loaded.sample(obs, **kwargs))


def test_checkpoint_missing_key_is_named(tmp_path):
    model = small('flow')
    save_checkpoint(str(tmp_path), model)
    path = os.path.join(tmp_path, 'model.safetensors')
    tensors = load_file(path)
    del tensors['net.out.weight']
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"missing key 'net.out.weight'.*\(64, 128\)"):
        load_checkpoint(str(tmp_path))


def test_checkpoint_wrong_shape_is_named(tmp_path):
    save_checkpoint(str(tmp_path), small('coarse_to_fine', n_bins=64))
    meta_path = tmp_path / 'config.json'
    meta = json.loads(meta_path.read_text())
    meta['config']['n_bins'] = 128
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError,
                       match=r"'token.logits_proj.weight' has shape \(4096, 64\), "
                             r'expected \(8192, 64\)'):
        load_checkpoint(str(tmp_path))


def test_router_checkpoint_round_trip(tmp_path):
    router = Router(RouterConfig(task_dim=4, state_dim=S, experts=('token', 'diffusion')))
    save_checkpoint(str(tmp_path), router)
    loaded = load_checkpoint(str(tmp_path))
    assert isinstance(loaded, Router) and loaded.config.experts == ('token', 'diffusion')


@pytest.mark.parametrize('name', expert_names())
def test_bad_observation_raises(name):
    model = small(name).eval()
    obs = obs_of(smooth_dataset(8))
    bad = dict(obs, state=obs['state'].clone())
    bad['state'][2, 3] = float('nan')
    with pytest.raises(ValueError, match="'state' contains NaN/Inf"):
        model.sample(bad)
    bad = dict(obs, goal=obs['goal'].clone())
    bad['goal'][0, 0] = float('inf')
    with pytest.raises(ValueError, match="'goal' contains NaN/Inf"):
        model.sample(bad)
    with pytest.raises(ValueError, match=r"'goal' has shape \(8, 5\), expected \(8, 8\)"):
        model.sample(dict(obs, goal=obs['goal'][:, :5]))
    with pytest.raises(ValueError, match="missing 'goal'"):
        model.sample({'state': obs['state']})
    with pytest.raises(ValueError, match=r"'action' has shape"):
        model.loss(dict(obs, action=torch.zeros(8, H - 1, D)))


def test_image_features_are_used_when_configured():
    model = build_expert('token', encoder={'image_feat_dim': 16, 'd_model': 32})
    obs = obs_of(smooth_dataset(4))
    with pytest.raises(ValueError, match="missing 'image_feat'"):
        model.sample(obs)
    assert model.eval().sample(dict(obs, image_feat=torch.randn(4, 16))).shape == (4, H, D)


def test_config_errors_name_the_key():
    with pytest.raises(ModelConfigError, match=r'CoarseToFineConfig.steps = 0'):
        CoarseToFineConfig(steps=0)
    with pytest.raises(ModelConfigError, match=r"unknown key\(s\) \['n_binz'\]"):
        build_expert('token', n_binz=64)
    with pytest.raises(ModelConfigError, match='delta_dims'):
        build_expert('flow', encoder=EncoderConfig(state_dim=4), delta_dims=7)


def test_router_learns_which_expert_is_best():
    g = torch.Generator().manual_seed(0)
    task, state = torch.randn(600, 16, generator=g), torch.randn(600, S, generator=g)
    # Precise tasks (task[:, 0] > 0) were done best by coarse_to_fine, the rest by token.
    labels = ['coarse_to_fine' if x > 0 else 'token' for x in task[:, 0].tolist()]
    router = Router(RouterConfig(task_dim=16, state_dim=S, hidden_dim=32))
    stats = train_router(router, task, state, labels, steps=200)
    assert stats['accuracy'] > 0.9
    probs = router.probabilities(task[:4], state[:4])
    assert probs.shape == (4, 4) and torch.allclose(probs.sum(-1), torch.ones(4))
    assert router.select(task[:2], state[:2]) == labels[:2]


def test_reference_model_runs():
    ref = ReferenceCoarseToFine()
    refined, coarse = ref(torch.randn(2, 512))
    assert refined.shape == coarse.shape == (2, 8, 7)
    assert torch.isfinite(ref.loss(torch.randn(2, 512), torch.zeros(2, 8, 7)))
