"""A robot no code was written for: a 5-joint arm with renamed everything, generated in a test.

``write_arm(folder)`` writes ``five.urdf`` and the minimal robot YAML ``five.yaml`` (the ``/**``
section only, the URDF path relative to it) and returns the YAML's path. The arm: a base
column, pan (z) - lift (y) - elbow (y) - wrist pitch (y) - wrist roll (z), a parallel gripper
(prismatic ``grip_a`` + ``grip_b`` mimicking it) and a tool frame ``tip`` between the pads, z out
of the gripper, the pads opening along its y. Its ``<ros2_control>`` block's initial values put
the tool pointing down at (0.40, 0, 0.30) m with the elbow up (solved here in closed form).
"""
import math
import os

import numpy as np

BASE_H, UPPER, FORE, WRIST, HAND = 0.14, 0.36, 0.34, 0.07, 0.09   # m
JOINTS = ('pan', 'lift', 'elbow', 'pitch', 'roll')
LINKS = ('column', 'turret', 'upper', 'fore', 'wristlink', 'flange')
EFFORT = (120.0, 120.0, 80.0, 25.0, 15.0)
VELOCITY = (1.8, 1.8, 2.2, 2.6, 3.0)
RADIUS = (0.055, 0.05, 0.045, 0.04, 0.035)
FINGER_OPEN = 0.035


def home(tool=(0.40, 0.0, 0.30)):
    """Joint positions with the tool pointing down at ``tool`` (elbow up)."""
    x, y, z = tool
    pan = math.atan2(y, x)
    r = math.hypot(x, y)
    # the wrist pitch axis sits WRIST + HAND above the tool when it points down
    wz = z + WRIST + HAND - BASE_H
    d = math.hypot(r, wz)
    cos_b = (d * d - UPPER ** 2 - FORE ** 2) / (2 * UPPER * FORE)
    b = math.acos(max(-1.0, min(1.0, cos_b)))               # elbow bend (> 0: elbow up)
    a = math.atan2(r, wz) - math.atan2(FORE * math.sin(b), UPPER + FORE * math.cos(b))
    c = math.pi - a - b                                      # pitch sum pi: pointing down
    return np.array([pan, a, b, c, -pan])


def _link(name, radius, length, mass):
    izz = mass * radius ** 2 / 2
    ixx = mass * (3 * radius ** 2 + length ** 2) / 12
    return f'''
  <link name="{name}">
    <inertial><origin xyz="0 0 {length / 2}"/><mass value="{mass}"/>
      <inertia ixx="{ixx}" ixy="0" ixz="0" iyy="{ixx}" iyz="0" izz="{izz}"/></inertial>
    <visual><origin xyz="0 0 {length / 2}"/>
      <geometry><cylinder radius="{radius}" length="{length}"/></geometry></visual>
    <collision><origin xyz="0 0 {length / 2}"/>
      <geometry><cylinder radius="{radius}" length="{length}"/></geometry></collision>
  </link>'''


def urdf(name='five'):
    lengths = (BASE_H, 0.0001, UPPER, FORE, WRIST, 0.02)
    parts = [f'<?xml version="1.0"?>\n<robot name="{name}">']
    parts.append(_link(LINKS[0], 0.07, BASE_H, 3.0))
    for i, (link, r) in enumerate(zip(LINKS[1:], RADIUS)):
        parts.append(_link(link, r, max(lengths[i + 1], 0.01), 1.5 - 0.25 * i))
    offsets = (BASE_H, 0.0, UPPER, FORE, WRIST)
    axes = ('0 0 1', '0 1 0', '0 1 0', '0 1 0', '0 0 1')
    limits = ((-2.8, 2.8), (-1.8, 1.8), (-2.6, 2.6), (-2.6, 2.6), (-3.0, 3.0))
    for i, j in enumerate(JOINTS):
        lo, hi = limits[i]
        parts.append(f'''
  <joint name="{j}" type="revolute">
    <parent link="{LINKS[i]}"/><child link="{LINKS[i + 1]}"/>
    <origin xyz="0 0 {offsets[i]}"/><axis xyz="{axes[i]}"/>
    <limit lower="{lo}" upper="{hi}" velocity="{VELOCITY[i]}" effort="{EFFORT[i]}"/>
    <dynamics damping="0.3"/>
  </joint>''')
    parts.append('''
  <link name="palm">
    <inertial><origin xyz="0 0 0.015"/><mass value="0.4"/>
      <inertia ixx="0.0008" ixy="0" ixz="0" iyy="0.0002" iyz="0" izz="0.0008"/></inertial>
    <visual><origin xyz="0 0 0.015"/><geometry><box size="0.04 0.14 0.03"/></geometry></visual>
    <collision><origin xyz="0 0 0.015"/>
      <geometry><box size="0.04 0.14 0.03"/></geometry></collision>
  </link>
  <joint name="palm_mount" type="fixed">
    <parent link="flange"/><child link="palm"/><origin xyz="0 0 0.02"/>
  </joint>''')
    for side, sign, joint in (('pad_a', 1, 'grip_a'), ('pad_b', -1, 'grip_b')):
        mimic = '<mimic joint="grip_a" multiplier="1" offset="0"/>' if joint == 'grip_b' else ''
        parts.append(f'''
  <link name="{side}">
    <inertial><origin xyz="0 {sign * 0.008} 0.025"/><mass value="0.04"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="3e-6"/></inertial>
    <visual><origin xyz="0 {sign * 0.008} 0.025"/>
      <geometry><box size="0.02 0.016 0.05"/></geometry></visual>
    <collision><origin xyz="0 {sign * 0.008} 0.025"/>
      <geometry><box size="0.02 0.016 0.05"/></geometry></collision>
  </link>
  <joint name="{joint}" type="prismatic">
    <parent link="palm"/><child link="{side}"/><origin xyz="0 0 0.03"/>
    <axis xyz="0 {sign} 0"/>
    <limit lower="0" upper="{FINGER_OPEN}" velocity="0.2" effort="40"/>{mimic}
  </joint>''')
    parts.append(f'''
  <link name="tip"/>
  <joint name="tip_joint" type="fixed">
    <parent link="flange"/><child link="tip"/><origin xyz="0 0 {HAND}"/>
  </joint>''')
    q = home()
    parts.append('\n  <ros2_control name="five_system" type="system">\n'
                 '    <hardware><plugin>mock_components/GenericSystem</plugin></hardware>')
    for j, v in zip(JOINTS, q):
        parts.append(f'''    <joint name="{j}"><command_interface name="position"/>
      <state_interface name="position">
        <param name="initial_value">{v:.6f}</param></state_interface>
      <state_interface name="velocity"/></joint>''')
    parts.append(f'''    <joint name="grip_a"><command_interface name="position"/>
      <state_interface name="position">
        <param name="initial_value">{FINGER_OPEN}</param></state_interface>
      <state_interface name="velocity"/></joint>
  </ros2_control>
</robot>
''')
    return '\n'.join(parts)


YAML = """/**:
  ros__parameters:
    robot: {name}
    urdf: {name}.urdf
    joint_names: [pan, lift, elbow, pitch, roll]
    gripper_joint: grip_a
    base_frame: column
    tool_frame: tip
"""


def write_arm(folder, name='five', extra_yaml=''):
    """Write ``<name>.urdf`` and ``<name>.yaml`` into ``folder``; returns the YAML path."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f'{name}.urdf'), 'w') as f:
        f.write(urdf(name))
    path = os.path.join(folder, f'{name}.yaml')
    with open(path, 'w') as f:
        f.write(YAML.format(name=name) + extra_yaml)
    return path
