"""ROS 2 interfaces by type name, without a ROS install: message classes, ``.msg`` files and
rosbag2's ``ros2msg`` schema text (what :mod:`hybrid_vla_ros.data.mcap_recorder` stores).

Nothing of ROS is imported with this module: a message package is imported when its class is
asked for, ``rosidl_runtime_py`` is used when installed.
"""
import functools
import importlib
import os
import sys

__all__ = [
    'find_interface_file',
    'get_message',
    'message_definition',
    'message_type_name',
    'split_type_name',
]

SEPARATOR = '=' * 80
_PRIMITIVES = frozenset((
    'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16', 'int32',
    'uint32', 'int64', 'uint64', 'string', 'wstring',
))


# --------------------------------------------------------------------------- message types

def message_type_name(msg_or_cls):
    """``'pkg/msg/Type'`` of a generated message instance or class."""
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    parts = cls.__module__.split('.')
    if len(parts) < 2 or not hasattr(cls, '_TYPE_SUPPORT'):
        raise TypeError(f'{cls.__module__}.{cls.__name__} is not a generated ROS 2 message')
    return f'{parts[0]}/{parts[1]}/{cls.__name__}'


def split_type_name(type_name):
    """``(pkg, kind, Type)`` of ``'pkg/msg/Type'``, or of ``'pkg/Type'`` with kind ``msg``."""
    parts = type_name.strip('/').split('/')
    if len(parts) == 2:
        return parts[0], 'msg', parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError(f'invalid ROS type name {type_name!r}: expected pkg/msg/Type or pkg/Type')


@functools.lru_cache(maxsize=None)
def get_message(type_name):
    """Message class for ``'pkg/msg/Type'`` (or ``'pkg/Type'``).

    Uses ``rosidl_runtime_py.utilities.get_message`` when installed (a ROS install), else
    imports ``pkg.msg`` (the pip wheels ship no rosidl_runtime_py).
    """
    pkg, kind, name = split_type_name(type_name)
    try:
        from rosidl_runtime_py.utilities import get_message as _ros_get_message
    except ImportError:
        _ros_get_message = None
    if _ros_get_message is not None:
        try:
            return _ros_get_message(f'{pkg}/{kind}/{name}')
        except (AttributeError, ModuleNotFoundError, ValueError):
            pass
    try:
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f'message type {type_name!r} is not importable: {exc}') from exc


# ----------------------------------------------------------------------- schema definitions

def _prefixes(pkg):
    """Install prefixes to search for ``share/<pkg>``: the ament index first (the one lookup of
    :mod:`hybrid_vla_ros.resources`), then this venv (message packages installed by pip)."""
    from hybrid_vla_ros.resources import ament_prefixes
    seen = ament_prefixes(pkg)
    for prefix in (sys.prefix, sys.base_prefix):
        if prefix not in seen:
            seen.append(prefix)
    try:  # the prefix the package's Python module lives in (<prefix>/lib/pythonX.Y/site-packages)
        module = importlib.import_module(pkg)
        path = os.path.dirname(os.path.abspath(module.__file__))
        prefix = os.path.abspath(os.path.join(path, '..', '..', '..', '..'))
        if prefix not in seen:
            seen.append(prefix)
    except (ImportError, TypeError):
        pass
    return seen


@functools.lru_cache(maxsize=None)
def find_interface_file(type_name, ext='msg'):
    """Path of ``share/<pkg>/<kind>/<Type>.<ext>`` (ament index lookup, venv fallback)."""
    pkg, kind, name = split_type_name(type_name)
    tried = []
    for prefix in _prefixes(pkg):
        path = os.path.join(prefix, 'share', pkg, kind, f'{name}.{ext}')
        if os.path.isfile(path):
            return path
        tried.append(path)
    raise FileNotFoundError(f'no {ext} definition for {type_name!r}; tried: {", ".join(tried)}')


def _field_types(text, pkg):
    """Non-primitive field types (``pkg/Type``) of a .msg text, in order of appearance."""
    types = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        field_type = line.split()[0]
        base = field_type.split('[', 1)[0].split('<=', 1)[0]
        if base in _PRIMITIVES:
            continue
        parts = base.split('/')
        if len(parts) == 1:
            dep = 'std_msgs/Header' if base == 'Header' else f'{pkg}/{base}'
        elif len(parts) == 2:
            dep = base
        else:
            dep = f'{parts[0]}/{parts[-1]}'
        if dep not in types:
            types.append(dep)
    return types


def _read_msg(type_name):
    with open(find_interface_file(type_name), encoding='utf-8') as stream:
        return stream.read().rstrip()


@functools.lru_cache(maxsize=None)
def message_definition(type_name):
    """rosbag2-style ``ros2msg`` schema text: the type's .msg then all dependencies.

    Each dependency (recursively, each once) follows a line of 80 ``=`` and ``MSG: pkg/Type``.
    """
    pkg, _, name = split_type_name(type_name)
    root = f'{pkg}/{name}'
    text = _read_msg(root)
    parts = [text]
    done = {root}
    stack = list(reversed(_field_types(text, pkg)))
    while stack:  # depth-first pre-order
        dep = stack.pop()
        if dep in done:
            continue
        done.add(dep)
        dep_text = _read_msg(dep)
        parts.append(f'{SEPARATOR}\nMSG: {dep}\n{dep_text}')
        stack.extend(reversed(_field_types(dep_text, dep.split('/')[0])))
    return '\n'.join(parts) + '\n'
