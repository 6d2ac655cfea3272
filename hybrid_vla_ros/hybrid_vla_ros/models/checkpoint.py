"""Checkpoints: safetensors weights + JSON config in one directory (never pickle).

``<dir>/model.safetensors`` holds every parameter and persistent buffer (normalisation
statistics included); ``<dir>/config.json`` holds ``{"format": 1, "kind": <expert name or
'router'>, "config": {...}, "robot": {"name", "joint_names", "gripper_joint"} (optional)}``.
Loading rebuilds the module from the config and validates everything before a module is
returned, so a bad checkpoint is a ``CheckpointError`` naming the file at start-up, never a
failure during control: unreadable or truncated files, invalid JSON or config values, a
missing or unexpected key, a wrong shape or dtype, NaN/Inf weights, and (with ``joint_names``)
a motor expert made for another robot (its state/action sizes or recorded joint names).
"""
import json
import os
from typing import Any, Dict, Optional, Sequence, Union

from safetensors.torch import load_file, save_file
import torch
from torch import nn

from .configuration import RouterConfig, config_from_dict, config_to_dict
from .registry import EXPERTS
from .router import Router

FORMAT = 1
WEIGHTS = 'model.safetensors'
CONFIG = 'config.json'


class CheckpointError(ValueError):
    """A checkpoint does not match the module its config describes."""


def _kind_of(module: nn.Module) -> str:
    if isinstance(module, Router):
        return 'router'
    for name, (_, cls) in EXPERTS.items():
        if type(module) is cls:
            return name
    raise CheckpointError(f'cannot checkpoint a {type(module).__name__}: not a registered expert '
                          f'({list(EXPERTS)}) or a Router')


def write_module(weights_path: str, config_path: str, module: nn.Module,
                 meta: Dict[str, Any]) -> None:
    """Write ``module``'s weights (safetensors) and ``meta`` (JSON), each atomically (a temporary
    file renamed over the old one: a crash never leaves a half-written checkpoint)."""
    os.makedirs(os.path.dirname(os.path.abspath(weights_path)), exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, weights_path + '.tmp')
    os.replace(weights_path + '.tmp', weights_path)
    with open(config_path + '.tmp', 'w') as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    os.replace(config_path + '.tmp', config_path)


def read_tensors(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or a CheckpointError naming it."""
    if not os.path.isfile(path):
        raise CheckpointError(f'no checkpoint file {path}')
    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own and OS errors
        raise CheckpointError(f'{path}: not a readable safetensors file, truncated or corrupt '
                              f'({e.__class__.__name__}: {e})') from None


def read_json(path: str) -> Dict[str, Any]:
    """A checkpoint's JSON metadata (a dict), or a CheckpointError naming the file."""
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f'{path}: unreadable or invalid JSON ({e})') from None
    if not isinstance(meta, dict):
        raise CheckpointError(f'{path}: expected a JSON object')
    return meta


def read_module(weights_path: str, config_path: str, build) -> tuple:
    """(module in eval mode, meta): ``build(meta)`` makes the module, whose weights are then
    loaded with every check of :func:`load_state_checked`."""
    meta = read_json(config_path)
    module = build(meta)
    load_state_checked(module, read_tensors(weights_path), source=weights_path)
    return module.eval(), meta


def save_checkpoint(directory: str, module: nn.Module, *,
                    robot: Optional[Dict[str, Any]] = None) -> str:
    """Write ``module`` (an expert or the router) to ``directory``; returns the directory.

    :param robot: ``{'name', 'joint_names', 'gripper_joint'}`` of the robot a motor expert was
        trained for (checked by :func:`load_checkpoint` against the robot that loads it).
    """
    meta = {'format': FORMAT, 'kind': _kind_of(module), 'config': config_to_dict(module.config)}
    if robot is not None:
        meta['robot'] = {'name': str(robot.get('name', '')),
                         'joint_names': [str(j) for j in robot.get('joint_names', [])],
                         'gripper_joint': str(robot.get('gripper_joint', ''))}
    write_module(os.path.join(directory, WEIGHTS), os.path.join(directory, CONFIG), module, meta)
    return directory


def read_config(directory: str) -> Dict[str, Any]:
    path = os.path.join(directory, CONFIG)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint {directory}: no {CONFIG}')
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f'checkpoint {path}: unreadable ({e.__class__.__name__}: {e})') \
            from None
    if not isinstance(meta, dict):
        raise CheckpointError(f'checkpoint {path}: expected a JSON object, got '
                              f'{type(meta).__name__}')
    for key in ('format', 'kind', 'config'):
        if key not in meta:
            raise CheckpointError(f"checkpoint {path}: missing '{key}'")
    if meta['format'] != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {meta['format']!r}, expected {FORMAT}")
    return meta


def build_from_config(meta: Dict[str, Any]) -> nn.Module:
    kind = meta['kind']
    if kind == 'router':
        return Router(config_from_dict(RouterConfig, meta['config']))
    if kind not in EXPERTS:
        raise CheckpointError(f"checkpoint kind {kind!r}: expected 'router' or one of "
                              f'{list(EXPERTS)}')
    config_cls, module_cls = EXPERTS[kind]
    try:
        return module_cls(config_from_dict(config_cls, meta['config']))
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f'checkpoint config of kind {kind!r} is invalid: {e}') from None


def check_robot(meta: Dict[str, Any], joint_names: Sequence[str], source: str) -> None:
    """Raise :class:`CheckpointError` if the motor expert (or router) of ``meta`` was not made
    for an arm with ``joint_names`` (+ one gripper): sizes always, joint names when recorded."""
    n = len(joint_names)
    cfg = meta['config']
    if not isinstance(cfg, dict):
        cfg = {}
    if meta['kind'] == 'router':  # its situation features hold the joint state
        checks = (('state_dim', cfg.get('state_dim'), n + 1),)
    else:
        enc = cfg.get('encoder', {}) if isinstance(cfg.get('encoder'), dict) else {}
        checks = (('encoder.state_dim', enc.get('state_dim'), n + 1),
                  ('action_dim', cfg.get('action_dim'), n + 1),
                  ('delta_dims', cfg.get('delta_dims', n), n))
    for key, value, want in checks:
        if value is not None and value != want:
            raise CheckpointError(
                f'{source}: {key} = {value}, but this robot has {n} arm joints + a gripper '
                f'({want} expected): a checkpoint for another robot')
    robot = meta.get('robot')
    if robot and robot.get('joint_names') and list(robot['joint_names']) != list(joint_names):
        raise CheckpointError(
            f"{source}: trained for robot {robot.get('name') or '?'} with joints "
            f"{robot['joint_names']}, loaded for joints {list(joint_names)}")


def load_state_checked(module: nn.Module, tensors: Dict[str, torch.Tensor],
                       source: str = 'checkpoint') -> None:
    """Copy ``tensors`` into ``module`` after checking keys and shapes exactly."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    if missing:
        k = missing[0]
        raise CheckpointError(f"{source}: missing key '{k}' (expected shape "
                              f'{tuple(expected[k].shape)}); {len(missing)} missing in all')
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key '{unexpected[0]}' with shape "
                              f'{tuple(tensors[unexpected[0]].shape)}; the config describes a '
                              'different model')
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(tensors[k].shape)}, "
                                  f'expected {tuple(v.shape)}')
        if tensors[k].dtype != v.dtype:
            raise CheckpointError(f"{source}: key '{k}' has dtype {tensors[k].dtype}, "
                                  f'expected {v.dtype}')
        if v.is_floating_point() and not bool(torch.isfinite(tensors[k]).all()):
            raise CheckpointError(f"{source}: key '{k}' contains NaN/Inf")
    module.load_state_dict(tensors, strict=True)


def load_checkpoint(directory: str, device: Union[str, torch.device] = 'cpu', *,
                    joint_names: Optional[Sequence[str]] = None) -> nn.Module:
    """Rebuild the expert / router saved in ``directory``, in eval mode on ``device``.

    :param joint_names: the arm joints of the robot that will run it: a motor expert for another
        robot is refused here, at load.
    """
    meta = read_config(directory)
    source = os.path.join(directory, CONFIG)
    if joint_names is not None:
        check_robot(meta, joint_names, source)
    module = build_from_config(meta)
    path = os.path.join(directory, WEIGHTS)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint {directory}: no {WEIGHTS}')
    load_state_checked(module, read_tensors(path), source=path)
    return module.to(device).eval()
