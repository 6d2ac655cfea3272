"""Where the shipped checkpoints are: ``$HYBRID_VLA_CHECKPOINTS``, the source tree, or the
installed ``share/hybrid_vla_ros/checkpoints`` (setup.py installs them there)."""
import os

ENV_VAR = 'HYBRID_VLA_CHECKPOINTS'


def checkpoint_root() -> str:
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    # realpath: a colcon --symlink-install build links the package back to the source tree
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))),
                       'checkpoints')
    if os.path.isdir(src):
        return src
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory('hybrid_vla_ros'), 'checkpoints')
    except Exception:  # no ament index: report the source location in errors
        return src
