"""Every executable the graph starts is installed by setup.py (``ros2 launch`` finds nodes by
executable name in lib/hybrid_vla_ros; the pip-only launcher runs the same module)."""
import importlib
import os
import runpy
from unittest import mock

import pytest

from hybrid_vla_ros.bringup.graph import HARDWARE, arm_graph, recorder_spec
from hybrid_vla_ros.bringup.launch_command import viewer_spec

SETUP = os.path.join(os.path.dirname(__file__), '..', 'setup.py')


def console_scripts():
    with mock.patch('setuptools.setup') as setup:
        cwd = os.getcwd()
        os.chdir(os.path.dirname(SETUP))
        try:
            runpy.run_path(SETUP, run_name='setup')
        finally:
            os.chdir(cwd)
    scripts = setup.call_args.kwargs['entry_points']['console_scripts']
    return dict(tuple(part.strip() for part in s.split('=')) for s in scripts)


def graph_specs():
    specs = [s for hw in HARDWARE for s in arm_graph(hardware=hw, rviz=True)]
    specs += [recorder_spec('x.mcap'), viewer_spec('web', robot='arm7')]
    return [s for s in specs if s.package == 'hybrid_vla_ros']


@pytest.mark.parametrize('spec', graph_specs(), ids=lambda s: f'{s.name}')
def test_every_graph_executable_is_a_console_script(spec):
    scripts = console_scripts()
    assert spec.executable in scripts, f'{spec.executable} is started but not installed'
    assert scripts[spec.executable] == f'{spec.module}:main'
    assert callable(importlib.import_module(spec.module).main)
