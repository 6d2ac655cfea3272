"""Parameter descriptors for the nodes' ``declare_parameter`` calls."""
from rcl_interfaces.msg import ParameterDescriptor


def describe(text: str) -> ParameterDescriptor:
    """A descriptor whose description ``ros2 param describe`` shows."""
    return ParameterDescriptor(description=text)
