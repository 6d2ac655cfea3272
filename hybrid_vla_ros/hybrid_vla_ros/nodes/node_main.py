"""``main()`` shared by every node executable: init, spin, clean shutdown on SIGINT/SIGTERM.

Written for rclpy 7.x (Jazzy) and 9.x (Kilted): no ``with rclpy.init()``.
"""
import rclpy
from rclpy.executors import ExternalShutdownException


def run_node(node_class, args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGTERM shuts the context down under a running callback (its publish then fails):
        # that is a clean stop. Anything raised while the context is still valid is a bug.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
