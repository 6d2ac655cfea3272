"""The captured refinement loop, by the names the experts import: three modules, one idea each.

- :mod:`.sampler_loop`: ``SamplerLoop``, the K-step sampler maths (plain and hand-fused);
- :mod:`.capture`: ``CapturedLoop`` and its backends (CUDA graph, TorchScript, compile, ...),
  ``NonFiniteOutputError`` and the finite check of captured outputs;
- :mod:`.host_kernel`: ``HostCoarseToFine``, the numpy/BLAS CPU kernel of the coarse-to-fine
  experts.
"""
from .capture import BACKENDS, CapturedLoop, NonFiniteOutputError, _FiniteChecked
from .host_kernel import HOST_KERNEL_MAX_BATCH, HostCoarseToFine
from .sampler_loop import SamplerLoop

__all__ = ['BACKENDS', 'HOST_KERNEL_MAX_BATCH', 'CapturedLoop', 'HostCoarseToFine',
           'NonFiniteOutputError', 'SamplerLoop', '_FiniteChecked']
