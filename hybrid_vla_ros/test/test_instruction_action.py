"""The ExecuteInstruction action of the strategic planner over real DDS: sim_arm (camera,
joint states) and strategic_planner as processes, an action client in the test.

Accept / reject / abort-with-reason / cancel / preempt here; the feedback order through a whole
pick-and-place (every level running) is in test_graph_e2e.py.
"""
import math

from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
import pytest
from rclpy.action import ActionClient
from ros_harness import RosProbe
from std_msgs.msg import String

from hybrid_vla_msgs.action import ExecuteInstruction
from hybrid_vla_msgs.msg import SubGoalList
from hybrid_vla_ros.bringup.graph import arm_graph
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED

PICK = 'put the red cube on the blue pad'
OTHER = 'pick up the red cube'


class Client:
    """A probe with an ExecuteInstruction client: send, follow feedback, cancel, results."""

    def __init__(self, probe):
        self.probe = probe
        self.action = ActionClient(probe.node, ExecuteInstruction, 'execute_instruction')
        self.diag = {}
        probe.subscribe(SubGoalList, 'subgoals', LATCHED)
        probe.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)
        self.topic = probe.node.create_publisher(String, 'instruction', COMMAND)

    def _on_diag(self, msg):
        for st in msg.status:
            if st.name == 'strategic_planner':
                self.diag = {kv.key: kv.value for kv in st.values}

    def send(self, text):
        feedback = []
        fut = self.action.send_goal_async(ExecuteInstruction.Goal(instruction=text),
                                          feedback_callback=lambda m: feedback.append(
                                              m.feedback))
        self.probe.wait_for(fut.done, 30, f'the goal response for {text!r}')
        handle = fut.result()
        handle.feedback = feedback
        return handle

    def result(self, handle, timeout=60):
        fut = handle.get_result_async()
        self.probe.wait_for(fut.done, timeout, 'the goal result')
        return fut.result().status, fut.result().result

    def wait_executing(self, handle, timeout=60):
        self.probe.wait_for(lambda: any(f.state == 'executing' for f in handle.feedback),
                            timeout, 'the goal executing a plan')


@pytest.fixture(scope='module')
def client(tmp_path_factory):
    log = open(tmp_path_factory.mktemp('action') / 'graph.log', 'w')
    specs = [s for s in arm_graph(hardware='sim') if s.name in ('sim_arm', 'strategic_planner')]
    procs = GraphProcesses(specs, overrides={'sim_arm': {'task': 'pick_place',
                                                         'seed': 1000029}},
                           log=lambda m: log.write(m + '\n'), stdout=log, stderr=log)
    procs.start()
    probe = RosProbe('action_test_probe')
    c = Client(probe)
    try:
        probe.wait_for(c.action.server_is_ready, 120, 'the action server')
        yield c
    finally:
        probe.close()
        procs.stop()
        log.close()


@pytest.mark.parametrize('text,reason', [
    ('', 'empty instruction'), ('   ', 'empty instruction'),
    ('\x1b[31mput the red cube on the blue pad', 'instruction contains control characters'),
    ('put the red cube ' * 30, 'instruction of'),
])
def test_an_invalid_instruction_is_rejected_with_the_reason(client, text, reason):
    rejected = int(client.diag.get('goals_rejected', 0))
    handle = client.send(text)
    assert not handle.accepted
    client.probe.wait_for(lambda: int(client.diag.get('goals_rejected', 0)) > rejected, 10,
                          'the rejection in /diagnostics')
    assert client.diag['last_rejection'].startswith(reason)


def test_an_instruction_that_cannot_be_planned_is_aborted_with_the_reason(client):
    handle = client.send('fly to the moon')
    assert handle.accepted
    status, result = client.result(handle)
    assert status == GoalStatus.STATUS_ABORTED
    assert not result.success and result.message.startswith('planning failed: ')
    assert 'decoded no such object' in result.message
    assert result.subgoals_total == 0 and math.isnan(result.error_mm)


def test_accept_feedback_and_cancel_drops_the_plan_and_holds(client):
    handle = client.send(PICK)
    assert handle.accepted
    client.wait_executing(handle)
    states = [f.state for f in handle.feedback]
    # planning first, then the plan: never the other way round
    assert states[-1] == 'executing' and set(states[:-1]) <= {'waiting_for_image', 'planning'}
    fb = handle.feedback[-1]
    assert fb.plan.instruction == PICK and len(fb.plan.subgoals) == 8
    assert fb.active_index == 0 and fb.active_subgoal.skill == fb.plan.subgoals[0].skill
    client.probe.wait_for(lambda: client.probe.latest['subgoals'].instruction == PICK, 10,
                          'the plan on subgoals')
    cancel = handle.cancel_goal_async()
    client.probe.wait_for(cancel.done, 10, 'the cancel response')
    assert len(cancel.result().goals_canceling) == 1
    status, result = client.result(handle)
    assert status == GoalStatus.STATUS_CANCELED
    assert result.message.startswith('canceled') and not result.success
    assert result.subgoals_total == 8 and result.subgoals_done == 0
    assert math.isfinite(result.error_mm)
    # the plan is dropped: an empty plan on subgoals, so the levels below stop and the arm holds
    client.probe.wait_for(lambda: not client.probe.latest['subgoals'].subgoals, 10,
                          'the empty plan')


def test_a_new_goal_preempts_the_running_one(client):
    first = client.send(PICK)
    assert first.accepted
    client.wait_executing(first)
    second = client.send(OTHER)
    assert second.accepted
    status, result = client.result(first)
    assert status == GoalStatus.STATUS_ABORTED and result.message == 'preempted by a new goal'
    client.wait_executing(second)
    assert second.feedback[-1].plan.instruction == OTHER
    client.probe.wait_for(lambda: client.probe.latest['subgoals'].instruction == OTHER, 10,
                          'the new plan on subgoals')
    # an instruction on the topic (ros2 topic pub) preempts a goal too
    client.topic.publish(String(data=PICK))
    status, result = client.result(second)
    assert status == GoalStatus.STATUS_ABORTED
    assert result.message == 'preempted by an instruction on the topic'
