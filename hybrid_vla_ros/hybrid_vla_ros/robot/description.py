"""Locate the ``hybrid_vla_description`` package and expand a xacro to a URDF string."""
from __future__ import annotations

from functools import lru_cache
import os

PACKAGE = 'hybrid_vla_description'
ENV_VAR = 'HYBRID_VLA_DESCRIPTION_DIR'


def description_dir() -> str:
    """Description package dir: $HYBRID_VLA_DESCRIPTION_DIR, the installed share/, or the source
    tree (:mod:`hybrid_vla_ros.resources`)."""
    from ..resources import find
    return find(PACKAGE, '', ENV_VAR).rstrip(os.sep)


def xacro_path(name: str) -> str:
    """A file of the description package (e.g. ``urdf/<robot>.urdf.xacro``)."""
    return os.path.join(description_dir(), name)


@lru_cache(maxsize=8)
def _expand(path: str, mappings: tuple) -> str:
    import xacro  # pip package `xacro`
    doc = xacro.process_file(path, mappings=dict(mappings))
    return doc.toprettyxml(indent='  ')


def expand_xacro(path: str, **mappings) -> str:
    """URDF XML of the xacro (or plain URDF) ``path``; ``mappings`` are xacro args."""
    return _expand(os.path.abspath(path), tuple(sorted((k, str(v)) for k, v in mappings.items())))
