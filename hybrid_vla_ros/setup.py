"""ament_python package of the hybrid VLA stack."""
from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'hybrid_vla_ros'

# Node executables (one console script each) and the `hybrid-vla` command line.
NODES = [
    'strategic_planner',
    'tactical_planner',
    'expert_router',
    'motor_policy',
    'chunk_executor',
    'sim_arm',
    'scene_camera',
]


# Executables of the graph that are not nodes/ modules: (name, module); the launchers start
# them by these names (`ros2 launch`) or modules (the pip-only launcher).
TOOLS = [
    ('bag_recorder', 'hybrid_vla_ros.nodes.topic_recorder'),   # `--bag`: records the graph
    ('rerun_viewer', 'hybrid_vla_ros.viewer.live_viewer'),    # `--view`: the rerun viewer
    # arm.launch.py's start-up gate: exits once motor and executor report ~/ready
    ('wait_ready', 'hybrid_vla_ros.bringup.wait_ready'),
]


def _checkpoint_files():
    """(share/... dir, [files]) for every folder under checkpoints/ (shipped weights)."""
    out = []
    for root, _, files in os.walk('checkpoints'):
        keep = [os.path.join(root, f) for f in files if f.endswith(('.safetensors', '.json',
                                                                     '.md'))]
        if keep:
            out.append((os.path.join('share', package_name, root), keep))
    return out


def _node_entry_points():
    """Console scripts for the nodes whose module exists (the graph grows issue by issue)."""
    here = os.path.dirname(os.path.abspath(__file__))
    entries = []
    for node in NODES:
        if os.path.exists(os.path.join(here, package_name, 'nodes', f'{node}.py')):
            entries.append(f'{node} = {package_name}.nodes.{node}:main')
    return entries


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ] + _checkpoint_files(),
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='hybrid_vla_ros developers',
    maintainer_email='dev@hybrid-vla.invalid',
    description='Hierarchical hybrid VLA control for robot arms on ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': _node_entry_points() + [
            'hybrid-vla = hybrid_vla_ros.cli:main',
        ] + [f'{name} = {module}:main' for name, module in TOOLS],
    },
)
