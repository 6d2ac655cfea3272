"""Expert registry: name -> (config class, module class). The router chooses among its keys."""
from typing import Any, Dict, Tuple, Type

from .action_expert import ActionExpert
from .coarse_to_fine import CoarseToFine
from .configuration import (
    CoarseToFineConfig,
    DiffusionConfig,
    ExpertConfig,
    FlowConfig,
    TokenConfig,
    config_from_dict,
)
from .diffusion_head import DiffusionHead
from .flow_head import FlowHead
from .token_head import TokenHead

EXPERTS: Dict[str, Tuple[Type[ExpertConfig], Type[ActionExpert]]] = {
    'token': (TokenConfig, TokenHead),
    'flow': (FlowConfig, FlowHead),
    'diffusion': (DiffusionConfig, DiffusionHead),
    'coarse_to_fine': (CoarseToFineConfig, CoarseToFine),
}


def expert_names() -> Tuple[str, ...]:
    return tuple(EXPERTS)


def make_config(name: str, **cfg: Any) -> ExpertConfig:
    """The config of expert ``name`` from keyword values (``encoder`` may be a dict)."""
    if name not in EXPERTS:
        raise ValueError(f'unknown expert {name!r}: expected one of {list(EXPERTS)}')
    return config_from_dict(EXPERTS[name][0], cfg)


def build_expert(name: str, **cfg: Any) -> ActionExpert:
    """``build_expert('flow', horizon=8, encoder={'d_model': 128})`` -> a FlowHead."""
    config = cfg.pop('config', None) or make_config(name, **cfg)
    return EXPERTS[name][1](config)
