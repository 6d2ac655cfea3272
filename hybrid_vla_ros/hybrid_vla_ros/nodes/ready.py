"""``~/ready`` (std_msgs/Bool, transient local): a node says whether it can do its job.

Start-up by state instead of guessing from the topic graph: ``motor_policy`` is ready once every
expert is loaded and warmed up (its first chunk is then on time), ``chunk_executor`` once it has
a valid joint state to hold and command from. Latched, so a launcher or a session that
subscribes late still gets the current value.
"""
from std_msgs.msg import Bool

from hybrid_vla_ros.nodes.qos import LATCHED

TOPIC = 'ready'            # in the node's private namespace: /<ns>/<node>/ready
READY_NODES = ('motor_policy', 'chunk_executor')   # what must be ready before the plant moves


class ReadyStatus:
    """Publishes the node's readiness on ``~/ready`` when it changes (logged)."""

    def __init__(self, node):
        self.node = node
        self.pub = node.create_publisher(Bool, f'~/{TOPIC}', LATCHED)
        self.ready = None

    def set(self, ready: bool, why: str) -> None:
        if ready == self.ready:
            return
        self.ready = bool(ready)
        self.pub.publish(Bool(data=self.ready))
        self.node.get_logger().info(f"{'ready' if ready else 'not ready'}: {why}")
