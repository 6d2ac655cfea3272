"""A node for test_clean_shutdown.py: it signals itself SIGINT once spinning and again (twice)
inside ``destroy_node``, and has a worker thread that ``destroy_node`` must stop first.

Prints ``worker stopped`` and ``destroyed`` when its shutdown ran to the end. With the argument
``quiet`` it signals nothing itself (the test sends the signal) and prints ``spinning`` once it
spins.
"""
import os
import signal
import sys
import threading
import time

from rclpy.node import Node

from hybrid_vla_ros.nodes.node_main import run_node

QUIET = 'quiet' in sys.argv[1:]


class ShutdownProbeNode(Node):
    def __init__(self):
        super().__init__('shutdown_probe')
        self.stop = threading.Event()
        self.worker = threading.Thread(target=self.stop.wait, name='probe_worker')
        self.worker.start()
        self.create_timer(0.05, self.on_tick)

    def on_tick(self):
        if QUIET:
            print('spinning', flush=True)
            return
        os.kill(os.getpid(), signal.SIGINT)   # the first Ctrl-C, while spinning

    def destroy_node(self):
        for _ in range(0 if QUIET else 2):   # the terminal's and the launcher's Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # Python runs the handler between these bytecodes
        self.stop.set()
        self.worker.join()
        print('worker stopped', flush=True)
        super().destroy_node()
        print('destroyed', flush=True)


if __name__ == '__main__':
    run_node(ShutdownProbeNode)
