"""Resumable training state without pickles: optimizer tensors in safetensors, scalars in JSON."""
import json
import os
from typing import Any, Dict

from safetensors.torch import load_file, save_file
import torch

STATE_TENSORS = 'train_state.safetensors'
STATE_JSON = 'train_state.json'


def save_train_state(directory: str, optimizer: torch.optim.Optimizer, info: Dict[str, Any]):
    """Write the optimizer's per-parameter tensors and ``info`` (step, losses, rng seed...)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd['state'].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f'{pid}.{k}'] = v.detach().cpu().contiguous()
            else:
                scalars[f'{pid}.{k}'] = v
    save_file(tensors, os.path.join(directory, STATE_TENSORS + '.tmp'))
    os.replace(os.path.join(directory, STATE_TENSORS + '.tmp'),
               os.path.join(directory, STATE_TENSORS))
    meta = {'info': info, 'param_groups': sd['param_groups'], 'scalars': scalars}
    with open(os.path.join(directory, STATE_JSON + '.tmp'), 'w') as f:
        json.dump(meta, f, indent=2)
    os.replace(os.path.join(directory, STATE_JSON + '.tmp'), os.path.join(directory, STATE_JSON))


def load_train_state(directory: str, optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
    """Restore the optimizer; returns ``info``. ``FileNotFoundError`` if nothing to resume."""
    tpath, jpath = (os.path.join(directory, STATE_TENSORS), os.path.join(directory, STATE_JSON))
    if not (os.path.isfile(tpath) and os.path.isfile(jpath)):
        raise FileNotFoundError(f'no training state to resume in {directory}')
    with open(jpath) as f:
        meta = json.load(f)
    tensors = load_file(tpath)
    state: Dict[int, Dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta['scalars'].items()):
        pid, name = key.split('.', 1)
        state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({'state': state, 'param_groups': meta['param_groups']})
    return meta['info']
