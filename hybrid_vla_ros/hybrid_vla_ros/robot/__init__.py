"""The robot model: one URDF + one YAML describe an arm for every level (see :mod:`.model`)."""
from .model import DEFAULT_ROBOT, RobotModel, build_robot, load_robot  # noqa: F401
