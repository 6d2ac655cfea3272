"""Action experts (pure PyTorch, no rclpy): one config + one module each, behind
``loss(batch)`` / ``sample(obs)``, registered by name; plus the router, the captured sampler
loop, checkpoints and the lesson's reference model.
"""
from .action_expert import ActionExpert
from .captured import CapturedLoop, SamplerLoop
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .coarse_to_fine import CoarseToFine
from .configuration import (
                            CoarseToFineConfig,
                            DiffusionConfig,
                            EncoderConfig,
                            FlowConfig,
                            ModelConfigError,
                            RouterConfig,
                            TokenConfig,
)
from .diffusion_head import DiffusionHead
from .flow_head import FlowHead
from .observation_encoder import ObservationEncoder, validate_observation
from .registry import EXPERTS, build_expert, expert_names, make_config
from .router import Router, train_router
from .token_head import TokenHead

__all__ = [
    'ActionExpert', 'CapturedLoop', 'SamplerLoop', 'CheckpointError', 'load_checkpoint',
    'save_checkpoint', 'CoarseToFine', 'CoarseToFineConfig', 'DiffusionConfig', 'EncoderConfig',
    'FlowConfig', 'ModelConfigError', 'RouterConfig', 'TokenConfig', 'DiffusionHead',
    'FlowHead', 'ObservationEncoder', 'validate_observation', 'build_expert', 'EXPERTS',
    'expert_names', 'make_config', 'Router', 'train_router', 'TokenHead',
]
