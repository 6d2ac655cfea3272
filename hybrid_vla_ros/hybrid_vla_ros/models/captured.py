"""The captured refinement loop, by the names the experts import: three modules, one idea each.

- :mod:`.sampler_loop`: ``SamplerLoop``, the K-step sampler maths (plain and hand-fused);
- :mod:`.capture`: ``CapturedLoop`` and its backends (CUDA graph, TorchScript, compile, ...),
  ``NonFiniteOutputError`` and the finite check of captured outputs;
- :mod:`.host_kernel`: the numpy/BLAS CPU kernels at small batches, ``HostCoarseToFine``
  (token and coarse_to_fine) and ``HostLoopExpert`` (flow and diffusion), built from the
  pieces of :mod:`.host_blocks`.
"""
from .capture import BACKENDS, CapturedLoop, NonFiniteOutputError, _FiniteChecked
from .host_kernel import HOST_KERNEL_MAX_BATCH, HostCoarseToFine
from .sampler_loop import SamplerLoop

__all__ = ['BACKENDS', 'HOST_KERNEL_MAX_BATCH', 'CapturedLoop', 'HostCoarseToFine',
           'NonFiniteOutputError', 'SamplerLoop', '_FiniteChecked']
