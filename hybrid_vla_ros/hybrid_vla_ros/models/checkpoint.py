"""Checkpoints: safetensors weights + JSON config in one directory (never pickle).

``<dir>/model.safetensors`` holds every parameter and persistent buffer (normalisation
statistics included); ``<dir>/config.json`` holds ``{"format": 1, "kind": <expert name or
'router'>, "config": {...}}``. Loading rebuilds the module from the config and validates the
weights: a missing or unexpected key or a wrong shape is a ``CheckpointError`` naming the key.
"""
import json
import os
from typing import Any, Dict, Union

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


def save_checkpoint(directory: str, module: nn.Module) -> str:
    """Write ``module`` (an expert or the router) to ``directory``; returns the directory."""
    os.makedirs(directory, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, os.path.join(directory, WEIGHTS))
    meta = {'format': FORMAT, 'kind': _kind_of(module), 'config': config_to_dict(module.config)}
    with open(os.path.join(directory, CONFIG), 'w') as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    return directory


def read_config(directory: str) -> Dict[str, Any]:
    path = os.path.join(directory, CONFIG)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint {directory}: no {CONFIG}')
    with open(path) as f:
        meta = json.load(f)
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
    return module_cls(config_from_dict(config_cls, meta['config']))


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
    module.load_state_dict(tensors, strict=True)


def load_checkpoint(directory: str, device: Union[str, torch.device] = 'cpu') -> nn.Module:
    """Rebuild the expert / router saved in ``directory``, in eval mode on ``device``."""
    meta = read_config(directory)
    module = build_from_config(meta)
    path = os.path.join(directory, WEIGHTS)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint {directory}: no {WEIGHTS}')
    load_state_checked(module, load_file(path), source=path)
    return module.to(device).eval()
