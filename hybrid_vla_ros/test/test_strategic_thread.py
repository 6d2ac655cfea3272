"""The strategic planner plans in a worker thread: the periodic cycle never waits for a plan,
one plan runs at a time, the latest request wins, and a plan started before a newer request or a
reset is discarded when it finishes.

The logic is tested without DDS (:mod:`hybrid_vla_ros.hierarchy.strategic_core`); the last
tests run the real node's executor (in-process rclpy, no other process) with a slow fake
planner.
"""
from dataclasses import dataclass, field
import threading
import time

import numpy as np
import pytest

from hybrid_vla_ros.hierarchy.strategic_core import PlanWorker, StrategicCore


@dataclass
class FakeSubGoal:
    id: str = 'reach'
    skill: str = 'move_to'
    object: str = 'target'
    description: str = 'move to the target'
    position: np.ndarray = field(default_factory=lambda: np.array([0.5, 0.1, 0.1]))
    orientation: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    confidence: float = 0.9
    gripper: float = 0.0


@dataclass
class FakePlan:
    instruction: str
    subgoals: list
    scene: dict = field(default_factory=dict)


class GatedPlanner:
    """plan() blocks until released (per call), records what it was asked."""

    def __init__(self):
        self.calls = []
        self.gates = []
        self.started = threading.Semaphore(0)

    def __call__(self, req):
        gate = threading.Event()
        self.calls.append(req.instruction)
        self.gates.append(gate)
        self.started.release()
        assert gate.wait(10), 'test never released the plan'
        if req.instruction == 'fail':
            raise ValueError('planning error')
        return FakePlan(req.instruction, [FakeSubGoal()])

    def wait_started(self, n_total, timeout=5.0):
        end = time.monotonic() + timeout
        while len(self.calls) < n_total:
            assert time.monotonic() < end, f'plan {n_total} never started'
            time.sleep(0.005)


def wait_results(core, n=1, timeout=5.0, now=None):
    """Collect until ``n`` events came (the worker's results are asynchronous)."""
    events, end = [], time.monotonic() + timeout
    while len(events) < n:
        assert time.monotonic() < end, f'only {events} after {timeout} s'
        events += core.collect(time.monotonic() if now is None else now)
        time.sleep(0.005)
    return events


def ready_core(planner, **kw):
    core = StrategicCore(planner, **kw)
    core.set_camera({'width': 4, 'height': 4, 'K': [1.0] * 9, 'T_base_camera': [0.0] * 16})
    return core


def test_submit_never_waits_for_a_running_plan():
    planner = GatedPlanner()
    core = ready_core(planner)
    core.request('touch the red block', 10.0)
    t0 = time.perf_counter()
    assert core.observe_image(np.zeros((4, 4, 3), np.uint8), 10.0, 10.0)  # submitted
    planner.wait_started(1)
    # the plan is running (blocked): everything the node does periodically returns at once
    assert core.update_progress(10.1, np.zeros(3), 0.0) is None
    assert core.collect(10.1) == []
    core.request('touch the blue block', 10.2)
    core.observe_image(np.zeros((4, 4, 3), np.uint8), 10.3, 10.3)
    assert time.perf_counter() - t0 < 0.5
    for g in planner.gates:
        g.set()
    planner.wait_started(2)
    planner.gates[-1].set()
    events = wait_results(core, 2)
    assert [k for k, _ in events] == ['discarded', 'plan']
    assert core.instruction == 'touch the blue block'
    core.close()


def test_latest_request_wins_and_one_plan_runs_at_a_time():
    planner = GatedPlanner()
    core = ready_core(planner)
    img = np.zeros((4, 4, 3), np.uint8)
    core.request('a', 1.0)
    core.observe_image(img, 1.0, 1.0)
    planner.wait_started(1)
    core.request('b', 1.1)
    core.observe_image(img, 1.1, 1.1)    # queued behind 'a'
    core.request('c', 1.2)
    core.observe_image(img, 1.2, 1.2)    # replaces 'b' before it started
    assert core.worker.replaced == 1
    time.sleep(0.05)
    assert planner.calls == ['a'], 'a second plan started while one was running'
    planner.gates[0].set()
    planner.wait_started(2)
    assert planner.calls == ['a', 'c']
    planner.gates[1].set()
    events = wait_results(core, 2)
    assert [(k, r.request.instruction) for k, r in events] == [('discarded', 'a'), ('plan', 'c')]
    assert core.plan.instruction == 'c' and core.discarded == 1
    core.close()


def test_a_plan_started_before_a_reset_is_discarded():
    planner = GatedPlanner()
    core = ready_core(planner)
    core.request('go around the wall', 5.0)
    core.observe_image(np.zeros((4, 4, 3), np.uint8), 5.0, 5.0)
    planner.wait_started(1)
    core.reset(5.5)                      # the scene was reset while it planned
    planner.gates[0].set()
    events = wait_results(core, 1)
    assert events[0][0] == 'discarded'
    assert core.plan is None and core.instruction == '' and not core.planning
    core.close()


def test_planning_errors_become_an_empty_plan_and_never_kill_the_worker():
    planner = GatedPlanner()
    core = ready_core(planner)
    img = np.zeros((4, 4, 3), np.uint8)
    core.request('fail', 1.0)
    core.observe_image(img, 1.0, 1.0)
    planner.wait_started(1)
    planner.gates[0].set()
    (kind, r), = wait_results(core, 1)
    assert kind == 'error' and 'planning error' in r.error
    assert core.plan is None and core.instruction == 'fail' and core.errors == 1
    core.request('ok', 2.0)              # the worker still plans
    core.observe_image(img, 2.0, 2.0)
    planner.wait_started(2)
    planner.gates[1].set()
    assert wait_results(core, 1)[0][0] == 'plan'
    core.close()


def test_no_plan_from_a_frame_older_than_the_request():
    planner = GatedPlanner()
    core = ready_core(planner)
    img = np.zeros((4, 4, 3), np.uint8)
    core.observe_image(img, 9.9, 9.9)    # a frame from before the instruction
    core.request('reach the target', 10.0)
    assert planner.calls == [] and core.pending == 'reach the target'
    assert not core.observe_image(img, 9.95, 10.01)   # still older (queued callback)
    assert core.observe_image(img, 10.05, 10.06)
    planner.wait_started(1)
    planner.gates[0].set()
    wait_results(core, 1)
    core.close()


def test_stale_subgoal_requests_one_replan_and_keeps_the_plan_until_it_is_replaced():
    planner = GatedPlanner()
    core = ready_core(planner, subgoal_timeout=2.0)
    img = np.zeros((4, 4, 3), np.uint8)
    core.request('reach', 0.0)
    core.observe_image(img, 0.0, 0.0)
    planner.wait_started(1)
    planner.gates[0].set()
    wait_results(core, 1, now=0.2)
    stamp = core.stamp
    far = np.array([0.0, 0.0, 0.5])
    assert core.update_progress(1.0, far, 0.0) is None
    # no progress (the tool no closer, the gripper still) for subgoal_timeout after that
    assert core.update_progress(2.5, far, 0.0) is None
    assert core.update_progress(3.5, far, 0.0) == 'replan'
    assert core.replans == 1 and core.pending == 'reach'
    for t in (3.6, 3.7, 3.8):            # once: no new request while it waits / runs
        assert core.update_progress(t, far, 0.0) is None
    assert core.running and core.stamp == stamp   # the old plan runs until replaced
    core.observe_image(img, 3.9, 3.9)
    planner.wait_started(2)
    planner.gates[1].set()
    (kind, _), = wait_results(core, 1, now=4.0)
    assert kind == 'plan' and core.stamp != stamp and core.active == 0
    core.close()


def test_the_outcome_of_an_instruction_goal():
    """What the ExecuteInstruction goal of a task reports: running while planned/executed,
    succeeded when every sub-goal is done, aborted on a planning error or once a newer
    instruction or a reset took over; a goal's instruction is planned afresh even when it is
    the sentence already running."""
    planner = GatedPlanner()
    core = ready_core(planner)
    img = np.zeros((4, 4, 3), np.uint8)
    assert core.request('touch the red block', 1.0)
    task = core.task
    assert core.outcome(task) is None                       # waiting for a camera frame
    core.observe_image(img, 1.0, 1.0)
    planner.wait_started(1)
    assert core.outcome(task) is None                       # planning
    planner.gates[-1].set()
    wait_results(core, 1, now=2.0)
    assert core.outcome(task) is None and core.running     # executing
    assert not core.request('touch the red block', 2.1)     # a re-send: the same task
    assert core.request('touch the red block', 2.2, fresh=True) and core.task == task + 1
    assert core.outcome(task)[0] == 'aborted'               # superseded
    task = core.task
    core.observe_image(img, 2.3, 2.3)
    planner.wait_started(2)
    planner.gates[-1].set()
    wait_results(core, 1, now=3.0)
    core.active = len(core.plan.subgoals)                   # every sub-goal done
    assert core.outcome(task) == ('succeeded', 'all 1 sub-goals done')
    assert core.request('fail', 4.0)
    task = core.task
    core.observe_image(img, 4.0, 4.0)
    planner.wait_started(3)
    planner.gates[-1].set()
    wait_results(core, 1, now=5.0)
    assert core.outcome(task) == ('aborted', 'planning failed: planning error')
    core.reset(6.0)
    assert core.outcome(task)[0] == 'aborted'
    core.close()


def test_worker_close_does_not_hang_on_a_running_plan():
    gate = threading.Event()
    w = PlanWorker(lambda req: gate.wait(5))
    from hybrid_vla_ros.hierarchy.strategic_core import PlanRequest
    w.submit(PlanRequest(1, 'x', None, {}))
    time.sleep(0.05)
    assert w.busy
    t0 = time.monotonic()
    w.close(timeout=0.2)
    assert time.monotonic() - t0 < 1.0
    gate.set()
    with pytest.raises(RuntimeError):
        w.submit(PlanRequest(2, 'y', None, {}))


def test_worker_close_waits_for_a_running_plan_and_never_reports_it():
    """Shutdown: the node is destroyed only after the thread has ended, and a plan finishing
    during the shutdown never calls back into it."""
    from hybrid_vla_ros.hierarchy.strategic_core import PlanRequest
    gate, started, done_calls = threading.Event(), threading.Event(), []

    def plan(req):
        started.set()
        gate.wait(5)
        return 'plan'
    w = PlanWorker(plan, on_done=lambda: done_calls.append(1))
    w.submit(PlanRequest(1, 'x', None, {}))
    assert started.wait(5)
    threading.Timer(0.3, gate.set).start()   # the plan ends while close() waits
    assert w.close(timeout=5.0) is True
    assert not w._thread.is_alive() and done_calls == []


# ---------------------------------------------------------------------- the node (in-process)
EXTRINSICS = [0.0, 0.848559, -0.529101, 1.0, 1.0, 0.0, 0.0, 0.0,
              0.0, -0.529101, -0.848559, 0.85, 0.0, 0.0, 0.0, 1.0]


class SlowPlanner:
    """The planner's interface; sleeps ``delay`` s (a slow model / a loaded machine)."""

    def __init__(self):
        self.delay = 0.0
        self.calls = []

    def plan(self, text, image, camera, depth=None):
        self.calls.append(text)
        time.sleep(self.delay)
        return FakePlan(text, [FakeSubGoal()])


@pytest.fixture
def node_env():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from hybrid_vla_ros.nodes.strategic_planner import StrategicPlannerNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    planner = SlowPlanner()
    node = StrategicPlannerNode(planner=planner, context=ctx, parameter_overrides=[
        Parameter('camera_extrinsics', value=EXTRINSICS)])
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    published = []
    real_publish = node.pub.publish

    def publish(msg):
        published.append((time.monotonic(), msg.instruction, len(msg.subgoals),
                          msg.header.stamp.sec, msg.header.stamp.nanosec))
        real_publish(msg)
    node.pub.publish = publish
    yield node, ex, planner, published
    ex.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def feed(node, text=None):
    """Camera info + a frame stamped now (+ an instruction first, if given), as callbacks."""
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String
    if text is not None:
        node.on_instruction(String(data=text))
    node.on_info(CameraInfo(width=8, height=8, k=[4.0, 0, 3.5, 0, 4.0, 3.5, 0, 0, 1.0]))
    img = Image(height=8, width=8, encoding='rgb8', step=24, data=bytes(8 * 8 * 3))
    img.header.stamp = node.get_clock().now().to_msg()
    node.on_image(img)


def in_executor(node, fn):
    """Run ``fn`` once from the node's executor thread (like a subscription callback)."""
    box = []

    def once():
        box[0].cancel()
        fn()
    box.append(node.create_timer(0.001, once))


def spin_until(ex, predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.01)
        if predicate():
            return True
    return False


def test_a_slow_plan_does_not_delay_the_periodic_cycle(node_env):
    node, ex, planner, published = node_env
    feed(node, 'first instruction')
    assert spin_until(ex, lambda: node.msg is not None and node.msg.subgoals, 5.0)
    planner.delay = 2.5                      # the next plan takes 2.5 s
    ticks = []
    node.create_timer(0.05, lambda: ticks.append(time.monotonic()))   # a 20 Hz probe
    spin_until(ex, lambda: False, 0.3)
    missed0 = node.monitor.missed
    t0 = time.monotonic()
    in_executor(node, lambda: feed(node, 'second instruction'))   # as its subscriptions do
    assert spin_until(ex, lambda: node.msg.instruction == 'second instruction', 6.0)
    assert time.monotonic() - t0 > 2.0, 'the slow plan did not run'
    spin_until(ex, lambda: False, 1.2)
    gaps = np.diff(ticks)
    assert gaps.max() < 0.5, f'the executor was blocked {gaps.max():.2f} s while planning'
    assert len(ticks) > 50
    republished = [t for t, text, *_ in published if text == 'first instruction']
    assert len(republished) >= 3, 'the old plan was not re-published while the new one planned'
    assert np.diff(republished).max() < 1.5
    assert node.monitor.missed == missed0, 'the 1 Hz re-publish missed a deadline'


def test_reset_drops_the_plan_and_discards_the_plan_in_flight(node_env):
    from std_srvs.srv import Trigger
    node, ex, planner, published = node_env
    planner.delay = 1.0
    feed(node, 'reach the green marker')
    assert spin_until(ex, lambda: planner.calls, 2.0)
    node.on_reset(Trigger.Request(), Trigger.Response())      # while it plans
    assert node.msg.instruction == '' and not node.msg.subgoals
    spin_until(ex, lambda: node.core.discarded == 1, 3.0)
    assert node.core.discarded == 1 and node.msg.instruction == '', \
        'a plan made before the reset was applied'
    # after the reset the same sentence is a new request, planned from a new frame
    planner.delay = 0.0
    feed(node, 'reach the green marker')
    assert spin_until(ex, lambda: node.msg.instruction == 'reach the green marker', 3.0)
    assert planner.calls == ['reach the green marker'] * 2


def test_republishing_keeps_the_plan_stamp(node_env):
    node, ex, planner, published = node_env
    feed(node, 'touch the red block')
    assert spin_until(ex, lambda: node.msg is not None and node.msg.subgoals, 3.0)
    spin_until(ex, lambda: False, 2.2)
    stamps = {(s, ns) for _, text, _, s, ns in published if text == 'touch the red block'}
    assert len([p for p in published if p[1] == 'touch the red block']) >= 3
    assert len(stamps) == 1, 'the plan stamp changed on re-publication'
