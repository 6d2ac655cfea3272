"""Domain layer: the vocabulary and data types every level shares, in plain Python + numpy.

Imports nothing else of the package and no mujoco, torch or rclpy (``test/test_layering.py``).

- :mod:`.vocabulary`: skills (``SKILLS``, ``SKILL_ALLOW_LIST``, ``PLACING_SKILLS``), object
  colours, shapes, scene slots and sizes, ``object_kind``, ``object_vocabulary``
- :mod:`.types`: ``SubGoal``, ``Waypoint``, ``subgoal_target``
- :mod:`.skill_rules`: skill -> TCP target pose (``step_target`` and its helpers)
- :mod:`.seeds`: the training/evaluation seed split ``EVAL_SEED_START``
- :mod:`.rotations`: numpy quaternion helpers (``down_quat``, ``quat_to_mat``)
"""
from .rotations import down_quat, mat_to_quat, quat_to_mat, rot_z, yaw_of  # noqa: F401
from .seeds import EVAL_SEED_START, eval_seeds, is_eval_seed  # noqa: F401
from .skill_rules import (  # noqa: F401
    HOVER,
    LIFT_Z,
    PLACE_DROP,
    STACK_XY_TOL,
    TCP_TO_FINGERTIP,
    grasp_quat,
    place_position,
    place_quat,
    stack_surface,
    step_target,
    touch_position,
)
from .types import SubGoal, Waypoint, subgoal_target  # noqa: F401
from .vocabulary import (  # noqa: F401
    COLOR_RGBA,
    CUBE_HALF,
    CYL_HALF,
    CYL_RADIUS,
    GRIPPER_SKILLS,
    OBJECT_COLORS,
    OBJECT_HALF_HEIGHT,
    OBJECT_SHAPE,
    OBJECT_SKILLS,
    OBJECT_SLOTS,
    OBSTACLE_HALF,
    PAD_HALF,
    PAD_SLOTS,
    PLACING_SKILLS,
    SHAPES,
    SKILL_ALLOW_LIST,
    SKILLS,
    SPECIAL_OBJECTS,
    half_height_of,
    object_kind,
    object_vocabulary,
)
