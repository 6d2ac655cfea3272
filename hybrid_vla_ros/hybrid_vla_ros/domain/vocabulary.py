"""Skill and object vocabulary shared by every level (planners, expert, simulator, nodes).

Object names are descriptive, as a user says them: ``"<colour> cube"``, ``"<colour> cylinder"``,
``"<colour> pad"``, ``"target"`` (the reach/detour marker) and ``"obstacle"``.
"""

# every skill a sub-goal may name (the strategic planner's allow-list, in this order: the
# tactical planner's one-hot feature follows it)
SKILLS = ('move_above', 'descend', 'grasp', 'lift', 'place', 'release', 'retreat', 'touch',
          'move_to')
SKILL_ALLOW_LIST: tuple = SKILLS
# skills whose step names a place reference (where the carried object goes)
PLACING_SKILLS = ('place',)
# skills that act on a graspable object
OBJECT_SKILLS = ('grasp', 'lift', 'place', 'descend')
# skills that only change the gripper (the TCP holds its pose)
GRIPPER_SKILLS = ('grasp', 'release')
# motion skills whose target pose is the point of the step (where the tool grasps, places or
# touches), not a way-station: their completion waits for the tool to converge
PRECISION_SKILLS = ('descend', 'place', 'touch', 'move_to')

# colour name -> RGBA used by the simulator (order = ``OBJECT_COLORS``)
COLOR_RGBA = {
    'red': (0.85, 0.10, 0.10, 1.0),
    'green': (0.10, 0.65, 0.20, 1.0),
    'blue': (0.10, 0.30, 0.90, 1.0),
    'yellow': (0.95, 0.85, 0.10, 1.0),
    'purple': (0.55, 0.20, 0.75, 1.0),
    'orange': (1.00, 0.50, 0.00, 1.0),
}
OBJECT_COLORS = tuple(COLOR_RGBA)
SHAPES: tuple = ('cube', 'cylinder')
SPECIAL_OBJECTS: tuple = ('target', 'obstacle')

# scene slots and sizes (m)
CUBE_HALF = 0.02          # 40 mm cubes
CYL_RADIUS, CYL_HALF = 0.02, 0.02
OBJECT_SLOTS = ('cube_0', 'cube_1', 'cube_2', 'cube_3', 'cyl_0')
OBJECT_SHAPE = {'cube_0': 'cube', 'cube_1': 'cube', 'cube_2': 'cube', 'cube_3': 'cube',
                'cyl_0': 'cylinder'}
OBJECT_HALF_HEIGHT = {'cube': CUBE_HALF, 'cylinder': CYL_HALF}
PAD_SLOTS = ('pad_0', 'pad_1')
PAD_HALF = (0.045, 0.045, 0.0015)
OBSTACLE_HALF = (0.02, 0.12, 0.11)  # wall: thickness, width, half height (top at 0.22 m)


def object_kind(name: str) -> str:
    """'object' (graspable), 'pad', 'target' or 'obstacle' for a canonical name."""
    if name in SPECIAL_OBJECTS:
        return name
    return 'pad' if name.endswith(' pad') else 'object'


def object_vocabulary() -> tuple:
    """All object names a plan may use (scene-independent)."""
    names = [f'{c} {s}' for c in OBJECT_COLORS for s in SHAPES]
    names += [f'{c} pad' for c in OBJECT_COLORS]
    return tuple(names) + SPECIAL_OBJECTS


def half_height_of(name: str) -> float:
    """Half height (m) of a graspable object by canonical name; 0 for anything else."""
    return OBJECT_HALF_HEIGHT[name.split()[-1]] if object_kind(name) == 'object' else 0.0
