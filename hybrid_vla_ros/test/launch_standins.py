"""Minimal stand-ins for launch / launch_ros (not installable here) to run arm.launch.py's own
code: every action is recorded with its arguments. On a ROS 2 install test_launch_graph.py also
loads the file with the real packages."""
import importlib.util
import os
import sys
import types

LAUNCH_FILE = os.path.join(os.path.dirname(__file__), '..', 'launch', 'arm.launch.py')


class Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class Node(Recorder):
    """launch_ros.actions.Node; ``created`` counts the Node actions built."""

    created = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Node.created += 1
        self.name = kwargs.get('name')


class LaunchConfiguration(Recorder):
    def perform(self, context):
        return context[self.args[0]]


def load_arm_launch(monkeypatch, has_package=lambda name: True):
    """arm.launch.py with the stand-ins; ``has_package`` answers its package look-ups."""
    mods = {name: types.ModuleType(name) for name in (
        'launch', 'launch.actions', 'launch.event_handlers', 'launch.substitutions',
        'launch_ros', 'launch_ros.actions', 'launch_ros.parameter_descriptions')}
    mods['launch'].LaunchDescription = Recorder
    for name in ('DeclareLaunchArgument', 'OpaqueFunction', 'LogInfo', 'RegisterEventHandler'):
        setattr(mods['launch.actions'], name, type(name, (Recorder,), {}))
    mods['launch.event_handlers'].OnProcessExit = type('OnProcessExit', (Recorder,), {})
    mods['launch.substitutions'].Command = Recorder
    mods['launch.substitutions'].FindExecutable = Recorder
    mods['launch.substitutions'].LaunchConfiguration = LaunchConfiguration
    mods['launch_ros.actions'].Node = Node
    mods['launch_ros.parameter_descriptions'].ParameterValue = Recorder
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location('arm_launch_under_test', LAUNCH_FILE)
    launch_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_file)
    monkeypatch.setattr(launch_file, '_has_package', has_package)
    Node.created = 0
    return launch_file


def launch_actions(launch_file, **arguments):
    """The actions arm.launch.py's OpaqueFunction returns for these launch arguments."""
    ld = launch_file.generate_launch_description()
    opaque = ld.args[0][-1]
    context = {'robot': 'arm7', 'hardware': 'sim', 'device': 'cpu', 'rviz': 'false',
               'namespace': '', **arguments}
    return ld, opaque.kwargs['function'](context)
