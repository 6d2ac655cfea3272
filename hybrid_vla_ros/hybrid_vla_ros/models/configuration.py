"""Typed, frozen configurations of the action experts, the shared encoder and the router.

Every config validates itself on construction and converts to / from plain dicts (the JSON
stored next to a checkpoint). Errors name the key, the value and what was expected.
"""
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Dict, Tuple, Type, TypeVar

C = TypeVar('C')


class ModelConfigError(ValueError):
    """A model configuration value is missing, unknown or out of range."""


def _check(cls_name: str, key: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ModelConfigError(f'{cls_name}.{key} = {value!r}: expected {expected}')


def _positive_ints(cfg: Any, *keys: str) -> None:
    for key in keys:
        value = getattr(cfg, key)
        _check(type(cfg).__name__, key, value, isinstance(value, int) and value > 0,
               'a positive integer')


@dataclass(frozen=True)
class EncoderConfig:
    """Observation features -> ``d_model`` MLP shared by the experts.

    ``state_dim`` = the robot's n arm joints + gripper (``RobotModel.state_dim``; ``hybrid-vla
    train motor`` sets it, with ``action_dim`` and ``delta_dims``, from ``--robot``; the
    defaults here are the sizes of the default arm, 7 joints); ``goal_dim`` = target tool pose
    (xyz + quat xyzw) + gripper, times the number of waypoints concatenated;
    ``image_feat_dim`` = 0 means no image.
    """

    state_dim: int = 8
    goal_dim: int = 8
    image_feat_dim: int = 0
    d_model: int = 256
    hidden_dim: int = 256
    n_layers: int = 2

    def __post_init__(self) -> None:
        _positive_ints(self, 'state_dim', 'goal_dim', 'd_model', 'hidden_dim', 'n_layers')
        _check('EncoderConfig', 'image_feat_dim', self.image_feat_dim,
               isinstance(self.image_feat_dim, int) and self.image_feat_dim >= 0,
               'an integer >= 0')

    @property
    def obs_dim(self) -> int:
        return self.state_dim + self.goal_dim + self.image_feat_dim


@dataclass(frozen=True)
class ExpertConfig:
    """Fields every action expert shares: the chunk shape and its representation.

    ``delta_actions``: the first ``delta_dims`` action dims are predicted relative to the same
    state dims (joint targets minus current joints); the rest (gripper) stay absolute.
    ``bin_margin``: the normalisation range is the data's min/max widened by this fraction.
    ``mu_law``: > 0 compands the delta dims around zero motion before they are binned / modelled
    (y = sign(x) log(1 + mu |x|) / log(1 + mu), x = delta / max |delta|), so bins and flow
    residuals are fine where the arm settles and coarse for fast motion; 0 = uniform.
    ``ensemble``: a run-time setting, not trained: the size m of ACT's temporal ensemble the
    motor policy runs this expert with (``motor/driver.MotorCore``; 1 = the latest chunk), in
    the ``motor_policy`` node and the ROS-free evaluations alike; their ``ensemble`` parameter /
    ``--ensemble`` flag overrides it.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    horizon: int = 8
    action_dim: int = 8
    delta_actions: bool = True
    delta_dims: int = 7
    bin_margin: float = 0.02
    mu_law: float = 0.0
    ensemble: int = 1

    def __post_init__(self) -> None:
        name = type(self).__name__
        if isinstance(self.encoder, dict):  # from JSON
            object.__setattr__(self, 'encoder', config_from_dict(EncoderConfig, self.encoder))
        _check(name, 'encoder', self.encoder, isinstance(self.encoder, EncoderConfig),
               'an EncoderConfig')
        _positive_ints(self, 'horizon', 'action_dim', 'ensemble')
        _check(name, 'ensemble', self.ensemble, self.ensemble <= self.horizon,
               f'<= horizon ({self.horizon}): older chunks predict nothing of the next step')
        if self.delta_actions:
            limit = min(self.action_dim, self.encoder.state_dim)
            _check(name, 'delta_dims', self.delta_dims,
                   isinstance(self.delta_dims, int) and 0 < self.delta_dims <= limit,
                   f'an integer in 1..{limit} (min of action_dim and encoder.state_dim)')
        _check(name, 'bin_margin', self.bin_margin, 0.0 <= self.bin_margin < 1.0,
               'a fraction in [0, 1)')
        _check(name, 'mu_law', self.mu_law, isinstance(self.mu_law, (int, float))
               and 0.0 <= self.mu_law <= 1e4 and (self.mu_law == 0 or self.delta_actions),
               'a number in [0, 1e4] (> 0 only with delta_actions)')

    @property
    def chunk_size(self) -> int:
        return self.horizon * self.action_dim


@dataclass(frozen=True)
class TokenConfig(ExpertConfig):
    """Per-dimension uniform bins, all H x D tokens decoded in one fused pass."""

    n_bins: int = 128
    trunk_layers: int = 1
    label_smoothing: float = 0.0
    decode: str = 'argmax'  # 'argmax' (mode) or 'expectation' (softmax-weighted bin centres)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check('TokenConfig', 'n_bins', self.n_bins,
               isinstance(self.n_bins, int) and self.n_bins >= 2, 'an integer >= 2')
        _check('TokenConfig', 'trunk_layers', self.trunk_layers,
               isinstance(self.trunk_layers, int) and self.trunk_layers >= 0, 'an integer >= 0')
        _check('TokenConfig', 'decode', self.decode, self.decode in ('argmax', 'expectation'),
               "'argmax' or 'expectation'")


@dataclass(frozen=True)
class FlowConfig(ExpertConfig):
    """Conditional flow matching of the whole chunk from Gaussian noise."""

    hidden_dim: int = 256
    n_layers: int = 3
    time_dim: int = 32
    steps: int = 10
    method: str = 'euler'  # 'euler' or 'midpoint'

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_ints(self, 'hidden_dim', 'n_layers', 'time_dim', 'steps')
        _check('FlowConfig', 'method', self.method, self.method in ('euler', 'midpoint'),
               "'euler' or 'midpoint'")


@dataclass(frozen=True)
class DiffusionConfig(ExpertConfig):
    """DDPM training (epsilon prediction), DDIM sampling (eta = 0) with ``steps`` steps."""

    hidden_dim: int = 256
    n_layers: int = 3
    time_dim: int = 32
    train_timesteps: int = 100
    schedule: str = 'cosine'  # 'cosine' or 'linear'
    steps: int = 10
    clip_sample: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_ints(self, 'hidden_dim', 'n_layers', 'time_dim', 'train_timesteps', 'steps')
        _check('DiffusionConfig', 'schedule', self.schedule,
               self.schedule in ('cosine', 'linear'), "'cosine' or 'linear'")
        _check('DiffusionConfig', 'steps', self.steps, self.steps <= self.train_timesteps,
               f'<= train_timesteps ({self.train_timesteps})')


@dataclass(frozen=True)
class CoarseToFineConfig(ExpertConfig):
    """Token head for the coarse chunk + flow-matching refiner conditioned on it.

    The refiner starts at ``coarse + noise_scale * bin_width * N(0, 1)`` and integrates
    ``steps`` Euler steps. ``teacher_forcing`` = probability that a training sample's coarse
    chunk is the quantised target instead of the token head's (detached) prediction.
    ``temperature``: a run-time setting, not trained: the scale of the refiner's start noise at
    inference (1 = the training distribution, 0 = start at the coarse chunk: deterministic),
    applied by the node and the ROS-free evaluations alike; their ``temperature`` parameter /
    ``--temperature`` flag overrides it.
    """

    n_bins: int = 64
    trunk_layers: int = 1
    label_smoothing: float = 0.0
    hidden_dim: int = 256
    n_layers: int = 3
    time_dim: int = 32
    steps: int = 5
    noise_scale: float = 1.0
    teacher_forcing: float = 0.5
    token_loss_weight: float = 1.0
    refiner_obs_skip: bool = True  # refiner also sees the standardised raw observation
    temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check('CoarseToFineConfig', 'temperature', self.temperature,
               isinstance(self.temperature, (int, float)) and 0.0 <= self.temperature <= 10.0,
               'a number in [0, 10]')
        _check('CoarseToFineConfig', 'n_bins', self.n_bins,
               isinstance(self.n_bins, int) and self.n_bins >= 2, 'an integer >= 2')
        _positive_ints(self, 'hidden_dim', 'n_layers', 'time_dim', 'steps')
        _check('CoarseToFineConfig', 'noise_scale', self.noise_scale, self.noise_scale >= 0,
               'a number >= 0')
        _check('CoarseToFineConfig', 'teacher_forcing', self.teacher_forcing,
               0.0 <= self.teacher_forcing <= 1.0, 'a probability in [0, 1]')

    def token_config(self) -> TokenConfig:
        """The config of the coarse token head inside this expert."""
        return TokenConfig(encoder=self.encoder, horizon=self.horizon,
                           action_dim=self.action_dim, delta_actions=self.delta_actions,
                           delta_dims=self.delta_dims, bin_margin=self.bin_margin,
                           n_bins=self.n_bins, trunk_layers=self.trunk_layers,
                           label_smoothing=self.label_smoothing, mu_law=self.mu_law,
                           decode='argmax')


@dataclass(frozen=True)
class RouterConfig:
    """(task / sub-goal embedding, state) -> probabilities over the expert names."""

    experts: Tuple[str, ...] = ('token', 'flow', 'diffusion', 'coarse_to_fine')
    task_dim: int = 384  # all-MiniLM-L6-v2 sentence embedding
    state_dim: int = 8
    hidden_dim: int = 128
    n_layers: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.experts, list):
            object.__setattr__(self, 'experts', tuple(self.experts))
        _check('RouterConfig', 'experts', self.experts,
               len(self.experts) >= 1 and len(set(self.experts)) == len(self.experts),
               'a non-empty tuple of distinct expert names')
        _positive_ints(self, 'task_dim', 'state_dim', 'hidden_dim', 'n_layers')


def config_to_dict(config: Any) -> Dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    out = asdict(config)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = list(value)
    return out


def config_from_dict(cls: Type[C], data: Dict[str, Any]) -> C:
    """Build ``cls`` from a dict, rejecting unknown keys by name."""
    if is_dataclass(data):
        return data  # already a config
    if not isinstance(data, dict):
        raise ModelConfigError(f'{cls.__name__}: expected a mapping, got {type(data).__name__}')
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelConfigError(f'{cls.__name__}: unknown key(s) {unknown}; '
                               f'expected some of {sorted(known)}')
    return cls(**data)
