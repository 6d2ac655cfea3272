"""The motor policy object: checkpoints -> action chunks. Used by the node, eval and benches.

Transport-free (openpi's split): the ROS node, the sim evaluation and the benchmarks all call
:meth:`MotorPolicy.act` with the same inputs.
"""
import math
import os
import time
from typing import Dict, Optional

import numpy as np
import torch

from hybrid_vla_ros.models.checkpoint import load_checkpoint
from hybrid_vla_ros.motor.features import goal_features, log_error_for
from hybrid_vla_ros.shipped_checkpoints import checkpoint_root


def default_checkpoint_dir() -> str:
    """Checkpoints shipped with the package (see :mod:`hybrid_vla_ros.shipped_checkpoints`)."""
    return checkpoint_root()


def shipped_motor_dir(robot=None) -> str:
    """The shipped motor suite of ``robot`` (a model, name or YAML; None = the default robot):
    ``checkpoints/<robot>/motor`` (experts, their bin variants, ``router/``)."""
    from hybrid_vla_ros.robot import load_robot
    name = robot.name if hasattr(robot, 'name') else \
        (load_robot() if robot is None else load_robot(robot)).name
    return os.path.join(default_checkpoint_dir(), name, 'motor')


def motor_checkpoint(name: str, bins: Optional[int] = None, root: Optional[str] = None,
                     robot=None) -> str:
    """Folder of the checkpoint of expert ``name`` in ``root`` (default: ``robot``'s shipped
    suite; ``--bins`` picks a variant)."""
    root = root or shipped_motor_dir(robot)
    sub = name if bins is None else f'{name}_b{bins}'
    path = os.path.join(root, sub)
    if not os.path.isfile(os.path.join(path, 'config.json')):
        have = sorted(d for d in os.listdir(root)
                      if os.path.isfile(os.path.join(root, d, 'config.json'))) \
            if os.path.isdir(root) else []
        raise FileNotFoundError(f'no checkpoint {path} (available in {root}: {have}); train one '
                                f'with `hybrid-vla train motor --expert {name} ...`')
    return path


class MotorPolicy:
    """Runs the selected action expert on (joint state, active waypoint, tool pose).

    :param experts: name -> loaded expert module.
    :param device: torch device; on CUDA the sampler loops run as CUDA graphs.
    :param capture: capture backend of the K-step loops ('auto' picks the fastest that matches
        eager on CPU; 'whole' traces the entire inference as one graph; None = plain eager).
    :param temperature: the refiner's start-noise scale for every coarse_to_fine expert
        (None = each checkpoint's ``temperature``, its run-time setting).

    Each expert's run-time settings come from its checkpoint's config (``ensemble``, and
    ``temperature`` for coarse_to_fine): the node and the ROS-free loops read the same ones.
    """

    def __init__(self, experts: Dict[str, torch.nn.Module], *, device: str = 'cpu',
                 capture: Optional[str] = 'whole', temperature: Optional[float] = None):
        if not experts:
            raise ValueError('MotorPolicy needs at least one expert')
        if temperature is not None:
            if not (math.isfinite(temperature) and 0.0 <= temperature <= 10.0):
                raise ValueError(f'temperature must be in [0, 10], got {temperature}')
            if not any(hasattr(e, 'temperature') for e in experts.values()):
                raise ValueError('temperature applies to the coarse_to_fine expert, which is '
                                 f'not loaded ({sorted(experts)})')
        self.device = torch.device(device)
        self.experts = {}
        for name, e in experts.items():
            e = e.to(self.device).eval()
            if capture is not None:
                e.set_capture(capture)
            if temperature is not None and hasattr(e, 'temperature'):
                e.temperature = float(temperature)
            self.experts[name] = e
        self._log_error = {name: log_error_for(e.config.encoder.goal_dim)
                           for name, e in self.experts.items()}
        first = next(iter(self.experts.values()))
        self.horizon = first.config.horizon
        # the robot's state size (n arm joints + gripper), from the checkpoints
        dims = {name: e.config.encoder.state_dim for name, e in self.experts.items()}
        if len(set(dims.values())) != 1:
            raise ValueError(f'the experts disagree on the state size (robots): {dims}')
        self.state_dim = next(iter(dims.values()))

    @classmethod
    def from_checkpoints(cls, paths: Dict[str, str], *, joint_names=None, **kw) -> 'MotorPolicy':
        """Load each expert; with ``joint_names`` an expert for another robot is refused."""
        return cls({name: load_checkpoint(path, joint_names=joint_names)
                     for name, path in paths.items()}, **kw)

    def ensemble_size(self, name: str, override: Optional[int] = None) -> int:
        """The temporal ensemble ``name`` runs with: ``override`` (> 0) if given, else its
        checkpoint's ``ensemble``, at most the horizon."""
        m = override or self._expert(name).config.ensemble
        return max(1, min(int(m), self.horizon))

    def runtime(self, ensemble: Optional[int] = None) -> Dict[str, Dict[str, float]]:
        """Each expert's run-time settings in effect (``ensemble``: the override, as in
        :meth:`ensemble_size`): ensemble [, temperature]."""
        return {name: {'ensemble': self.ensemble_size(name, ensemble),
                       **({'temperature': float(e.temperature)}
                          if hasattr(e, 'temperature') else {})}
                for name, e in self.experts.items()}

    def _expert(self, name: str):
        if name not in self.experts:
            raise ValueError(f'unknown expert {name!r}: loaded are {sorted(self.experts)}')
        return self.experts[name]

    def warmup(self, state=None, steps: Optional[int] = None) -> Dict[str, float]:
        """Run every expert once (batch 1) so each builds and checks its captured path (the CPU
        kernel's comparison with eager, the trace, a CUDA graph) now and not on the first
        real chunk, where it costs tens of ms. Returns the first call's time per expert (ms).
        """
        s = np.zeros(self.state_dim, np.float32) if state is None \
            else np.asarray(state, np.float32)
        wp = np.array([0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0, 0.0], np.float32)
        tool = (np.array([0.4, 0.0, 0.35]), np.array([1.0, 0.0, 0.0, 0.0]))
        out = {}
        for name in self.experts:
            t0 = time.perf_counter()
            self.act(name, s, wp, *tool, steps=steps)
            out[name] = (time.perf_counter() - t0) * 1e3
        return out

    @torch.no_grad()
    def act(self, expert: str, state, waypoint, tool_pos, tool_quat, *,
            steps: Optional[int] = None, generator: Optional[torch.Generator] = None):
        """One chunk: returns (positions (H, n+1) absolute joint targets + gripper,
        coarse (H, n+1) or None, inference time in ms); n+1 = :attr:`state_dim`.

        Raises ValueError on NaN/Inf or wrong sizes (nothing is produced then).
        """
        e = self._expert(expert)
        s = np.asarray(state, np.float32).reshape(-1)
        if s.shape[0] != self.state_dim or not np.all(np.isfinite(s)):
            raise ValueError(f'motor state must be {self.state_dim} finite values (the arm '
                             f'joints + gripper), got {s.tolist()}')
        g = goal_features(waypoint, tool_pos, tool_quat, self._log_error[expert])
        obs = {'state': torch.from_numpy(s)[None].to(self.device),
               'goal': torch.from_numpy(g)[None].to(self.device)}
        t0 = time.perf_counter()
        kwargs = {}
        if generator is not None and expert != 'token':
            kwargs['generator'] = generator
        coarse = None
        if expert == 'coarse_to_fine':
            chunk, coarse = e.sample(obs, steps=steps, return_coarse=True, **kwargs)
            coarse = coarse[0].cpu().numpy()
        elif expert in ('flow', 'diffusion'):
            chunk = e.sample(obs, steps=steps, **kwargs)
        else:
            chunk = e.sample(obs)
        if self.device.type == 'cuda':
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3
        out = chunk[0].cpu().numpy().astype(np.float64)
        if not np.all(np.isfinite(out)):
            raise ValueError(f'expert {expert} produced NaN/Inf')
        return out, coarse, ms
