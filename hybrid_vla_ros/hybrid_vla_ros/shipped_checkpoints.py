"""Where the shipped checkpoints are: ``$HYBRID_VLA_CHECKPOINTS``, the installed
``share/hybrid_vla_ros/checkpoints`` (setup.py installs them there) or the source tree — the one
lookup of :mod:`hybrid_vla_ros.resources`."""
import os

from hybrid_vla_ros.resources import candidates, find

ENV_VAR = 'HYBRID_VLA_CHECKPOINTS'


def checkpoint_root() -> str:
    """The checkpoints folder (``<robot>/motor/``, ``planner/``)."""
    if os.environ.get(ENV_VAR):   # the user's choice, even before it exists (errors name it)
        return os.environ[ENV_VAR]
    try:
        return find('hybrid_vla_ros', 'checkpoints', ENV_VAR)
    except FileNotFoundError:  # nothing shipped anywhere: name the first place in errors
        first = next(iter(candidates('hybrid_vla_ros', 'checkpoints', ENV_VAR)), None)
        return first or os.path.join(os.getcwd(), 'checkpoints')
