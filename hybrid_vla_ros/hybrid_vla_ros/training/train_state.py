"""Resumable training state without pickles: optimizer tensors in safetensors, scalars in JSON.

One state per ``name`` in a directory: ``<name>.safetensors`` + ``<name>.json`` (default
``train_state``: the motor trainer's files; the planner trainer keeps one state per head,
``decoder.train`` / ``grounding.train`` / ``tactical.train``). With ``model`` the weights are
stored too (``model.``-prefixed tensors), for loops whose only mid-run copy of the weights is
the training state.
"""
import json
import os
from typing import Any, Dict, Optional

from safetensors.torch import load_file, save_file
import torch

STATE_NAME = 'train_state'
STATE_TENSORS = STATE_NAME + '.safetensors'
STATE_JSON = STATE_NAME + '.json'
MODEL_PREFIX = 'model.'
LEGACY_OPT_PREFIX = 'opt.'   # optimizer keys of the planner's states before this module


def _paths(directory: str, name: str) -> tuple:
    return (os.path.join(directory, name + '.safetensors'),
            os.path.join(directory, name + '.json'))


def save_train_state(directory: str, optimizer: torch.optim.Optimizer, info: Dict[str, Any],
                     model: Optional[torch.nn.Module] = None, name: str = STATE_NAME):
    """Write the optimizer's per-parameter tensors and ``info`` (step, losses, rng seed...);
    with ``model`` its weights as well."""
    os.makedirs(directory, exist_ok=True)
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd['state'].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f'{pid}.{k}'] = v.detach().cpu().contiguous()
            else:
                scalars[f'{pid}.{k}'] = v
    if model is not None:
        tensors.update({MODEL_PREFIX + k: v.detach().cpu().contiguous()
                        for k, v in model.state_dict().items()})
    tpath, jpath = _paths(directory, name)
    save_file(tensors, tpath + '.tmp')
    os.replace(tpath + '.tmp', tpath)
    meta = {'info': info, 'param_groups': sd['param_groups'], 'scalars': scalars}
    with open(jpath + '.tmp', 'w') as f:
        json.dump(meta, f, indent=2)
    os.replace(jpath + '.tmp', jpath)


def load_train_state(directory: str, optimizer: torch.optim.Optimizer,
                     model: Optional[torch.nn.Module] = None,
                     name: str = STATE_NAME) -> Dict[str, Any]:
    """Restore the optimizer (and ``model``'s weights if given); returns ``info``.
    ``FileNotFoundError`` if nothing to resume."""
    tpath, jpath = _paths(directory, name)
    if not (os.path.isfile(tpath) and os.path.isfile(jpath)):
        raise FileNotFoundError(f'no training state to resume in {directory}')
    with open(jpath) as f:
        meta = json.load(f)
    tensors = load_file(tpath)
    if 'info' in meta:
        info, scalars = meta['info'], meta['scalars']
        opt_tensors = {k: v for k, v in tensors.items() if not k.startswith(MODEL_PREFIX)}
    else:   # a planner state written before this module: info at the top, 'opt.' keys
        info = {k: v for k, v in meta.items() if k != 'param_groups'}
        scalars = {}
        opt_tensors = {k[len(LEGACY_OPT_PREFIX):]: v for k, v in tensors.items()
                       if k.startswith(LEGACY_OPT_PREFIX)}
    if model is not None:
        model.load_state_dict({k[len(MODEL_PREFIX):]: v for k, v in tensors.items()
                               if k.startswith(MODEL_PREFIX)})
    state: Dict[int, Dict[str, Any]] = {}
    for key, v in list(opt_tensors.items()) + list(scalars.items()):
        pid, k = key.split('.', 1)
        state.setdefault(int(pid), {})[k] = v
    optimizer.load_state_dict({'state': state, 'param_groups': meta['param_groups']})
    return info
