"""The task scene's objects: slots, shapes, sizes and colours (shared by the simulator and
the task suite). Defined in :mod:`hybrid_vla_ros.domain.vocabulary`; re-exported here."""
from ..domain.vocabulary import (  # noqa: F401
    COLOR_RGBA,
    CUBE_HALF,
    CYL_HALF,
    CYL_RADIUS,
    OBJECT_HALF_HEIGHT,
    OBJECT_SHAPE,
    OBJECT_SLOTS,
    OBSTACLE_HALF,
    PAD_HALF,
    PAD_SLOTS,
)

COLORS = COLOR_RGBA   # colour name -> RGBA
