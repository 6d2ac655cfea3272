"""One lookup for the files of this package suite (config, description, checkpoints, messages).

Order, the same for every resource:

1. an environment override, if the caller has one (e.g. ``$HYBRID_VLA_DESCRIPTION_DIR``);
2. the installed ``share/<package>`` of an ament prefix: ``ament_index_python`` on a ROS
   install, else the prefixes of ``$AMENT_PREFIX_PATH`` that register the package in their
   resource index (a pip-only colcon workspace);
3. the source tree (this repository checked out, nothing built), for a file that exists there.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Optional

# the repository root of a source checkout: hybrid_vla_ros/hybrid_vla_ros/resources.py -> ../..
# (realpath: a colcon --symlink-install build links the package back to the source tree)
_SOURCE_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(__file__)),
                                             '..', '..'))
# where each package's share/ content lives in the source tree
_SOURCE = {'hybrid_vla_ros': os.path.join(_SOURCE_ROOT, 'hybrid_vla_ros'),
           'hybrid_vla_description': os.path.join(_SOURCE_ROOT, 'hybrid_vla_description'),
           'hybrid_vla_msgs': os.path.join(_SOURCE_ROOT, 'hybrid_vla_msgs')}


def ament_prefixes(package: str) -> List[str]:
    """Install prefixes whose ament resource index registers ``package``, in search order."""
    out = []
    try:  # a real ROS install
        from ament_index_python.packages import get_package_prefix
        out.append(get_package_prefix(package))
    except Exception:  # not installed, or no ament_index_python
        pass
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        marker = os.path.join(prefix, 'share', 'ament_index', 'resource_index', 'packages',
                              package)
        if prefix and os.path.exists(marker) and prefix not in out:
            out.append(prefix)
    return out


def share_dir(package: str) -> Optional[str]:
    """The installed ``share/<package>`` (None if the package is not installed)."""
    for prefix in ament_prefixes(package):
        share = os.path.join(prefix, 'share', package)
        if os.path.isdir(share):
            return share
    return None


def source_dir(package: str) -> Optional[str]:
    """The package's folder in a source checkout (None if not running from one)."""
    d = _SOURCE.get(package)
    return d if d and os.path.isdir(d) else None


def candidates(package: str, relative: str, env: Optional[str] = None) -> Iterable[str]:
    """Where ``relative`` (a path inside the package's share/) may be, in lookup order."""
    if env and os.environ.get(env):
        yield os.environ[env]
    for root in (share_dir(package), source_dir(package)):
        if root:
            yield os.path.join(root, relative)


def find(package: str, relative: str, env: Optional[str] = None) -> str:
    """The first existing ``relative`` of ``package`` (module docstring); FileNotFoundError
    naming every place tried."""
    tried = []
    for path in candidates(package, relative, env):
        if os.path.exists(path):
            return path
        tried.append(path)
    hint = f'set {env}, ' if env else ''
    raise FileNotFoundError(f"cannot find {relative!r} of {package}: {hint}source a workspace "
                            f"that installs it, or run from the source tree (tried: "
                            f"{', '.join(tried) or 'nothing'})")
