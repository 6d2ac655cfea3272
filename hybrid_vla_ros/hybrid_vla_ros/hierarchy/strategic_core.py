"""ROS-free logic of the ``strategic_planner`` node: when to plan, planning in a worker thread,
which plan result counts, and the progress of the active sub-goal.

Planning (the model call: tens of ms with the default heads, seconds with an LLM/VLM backend, and
much longer on a loaded machine) runs in :class:`PlanWorker`'s thread, so the node's periodic
cycle (plan re-publish at ``rate`` Hz, progress at 10 Hz) never waits for it. One plan runs at a
time; a request submitted while one runs replaces any request still waiting (the latest wins).

Every request carries the core's *generation*. A new instruction, a re-plan or a :meth:`reset`
(the scene was reset, e.g. between evaluation episodes) starts a new generation, so a plan that
finishes after any of them is discarded when it is collected, never applied. Results are applied
by :meth:`StrategicCore.collect`, in the caller's thread (the node calls it from its executor,
woken by the worker through a guard condition); nothing but the worker's queue is shared between
the threads.

Each applied plan gets a ``stamp`` (the time it was applied): its identity. The node publishes
it as the ``SubGoalList`` header stamp and keeps it when re-publishing, so the levels below can
tell a new plan (re-plan, next episode) from a re-publication of the same one even when the
instruction and the sub-goal ids are the same.
"""
from dataclasses import dataclass
import threading
import time
from typing import Any, Callable, List, Optional

from hybrid_vla_ros.hierarchy.subgoal_progress import SubgoalProgress

# How long closing waits for a running plan (s): below ros2 launch's 5 s from SIGINT to SIGTERM.
CLOSE_TIMEOUT_S = 4.0
MAX_INSTRUCTION = 300


def check_instruction(text: str) -> str:
    """The instruction, stripped; ValueError (the reason) for empty, over-long or non-printable
    text (control characters, escape sequences)."""
    t = (text or '').strip()
    if not t:
        raise ValueError('empty instruction')
    if len(t) > MAX_INSTRUCTION:
        raise ValueError(f'instruction of {len(t)} characters (max {MAX_INSTRUCTION})')
    if not t.isprintable():
        raise ValueError('instruction contains control characters')
    return t


@dataclass
class PlanRequest:
    generation: int
    instruction: str
    image: Any
    camera: dict
    depth: Any = None
    requested_at: float = 0.0   # when the instruction / re-plan asked for it (node clock, s)
    reason: str = 'instruction'  # or 'replan'


@dataclass
class PlanResult:
    request: PlanRequest
    plan: Any = None
    error: Optional[str] = None
    ms: float = 0.0


def run_plan(plan_fn: Callable[[PlanRequest], Any], req: PlanRequest) -> PlanResult:
    """``plan_fn(req)`` as a :class:`PlanResult`: its plan or, for any exception, its error (a
    planning error is never fatal), and how long it took."""
    t0 = time.perf_counter()
    result = PlanResult(req)
    try:
        result.plan = plan_fn(req)
    except Exception as e:  # noqa: BLE001 - reported as the result's error
        kind = '' if isinstance(e, ValueError) else f'{e.__class__.__name__}: '
        result.error = f'{kind}{e}' or e.__class__.__name__
    result.ms = (time.perf_counter() - t0) * 1e3
    return result


class InlineWorker:
    """:class:`PlanWorker`'s interface, planning in the caller's thread when a request is
    submitted: the deterministic ROS-free evaluation drives :class:`StrategicCore` with it."""

    def __init__(self, plan_fn: Callable[[PlanRequest], Any]):
        self.plan_fn = plan_fn
        self._results: List[PlanResult] = []

    def submit(self, request: PlanRequest) -> None:
        self._results.append(run_plan(self.plan_fn, request))

    def take(self) -> List[PlanResult]:
        out, self._results = self._results, []
        return out

    def close(self, timeout: float = 0.0) -> bool:
        return True


class PlanWorker:
    """Runs ``plan_fn(request)`` in a daemon thread, one request at a time, latest wins.

    ``on_done()`` is called from the worker thread after each result is queued (the node
    triggers a guard condition with it); :meth:`take` hands the finished results over. Any
    exception of ``plan_fn`` becomes the result's ``error`` (a planning error is never fatal).
    """

    def __init__(self, plan_fn: Callable[[PlanRequest], Any],
                 on_done: Optional[Callable[[], None]] = None, name: str = 'planner'):
        self.plan_fn, self.on_done, self.name = plan_fn, on_done, name
        self._cv = threading.Condition()
        self._next: Optional[PlanRequest] = None
        self._running: Optional[PlanRequest] = None
        self._results: List[PlanResult] = []
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self.replaced = 0   # requests dropped before they started (a newer one came)

    def submit(self, request: PlanRequest) -> None:
        """Queue ``request``; one still waiting is replaced. Never blocks on a running plan."""
        with self._cv:
            if self._stop:
                raise RuntimeError('plan worker is closed')
            if self._next is not None:
                self.replaced += 1
            self._next = request
            if self._thread is None:  # started lazily: it inherits the node's scheduling
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cv.notify()

    def take(self) -> List[PlanResult]:
        with self._cv:
            out, self._results = self._results, []
        return out

    @property
    def busy(self) -> bool:
        """A request is running or waiting."""
        with self._cv:
            return self._running is not None or self._next is not None

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Stop the thread: a waiting request is dropped, a running plan is waited for (at most
        ``timeout`` s) and never reported (``on_done`` is not called once this returns). True if
        the thread has ended (the node may then be destroyed under it)."""
        with self._cv:
            self._stop = True
            self._next = None
            self.on_done = None
            self._cv.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._next is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                req, self._next = self._next, None
                self._running = req
            result = run_plan(self.plan_fn, req)
            with self._cv:
                self._running = None
                self._results.append(result)
                on_done = self.on_done   # None once closed
            if on_done is not None:
                try:
                    on_done()
                except Exception:  # noqa: BLE001 - e.g. the node is being destroyed
                    pass


class StrategicCore:
    """Plan state of the strategic level. Call everything from one thread (the node's).

    ``plan_fn(request) -> Plan`` (raises on failure) runs in a :class:`PlanWorker` (pass
    ``worker`` to supply one, e.g. a synchronous fake in tests; ``on_result`` is the worker's
    ``on_done``).
    """

    def __init__(self, plan_fn: Optional[Callable[[PlanRequest], Any]] = None, *,
                 subgoal_timeout: float = 20.0, image_timeout: float = 2.0,
                 worker: Optional[PlanWorker] = None,
                 on_result: Optional[Callable[[], None]] = None):
        if worker is None:
            if plan_fn is None:
                raise ValueError('StrategicCore needs plan_fn or worker')
            worker = PlanWorker(plan_fn, on_done=on_result)
        self.worker = worker
        self.progress = SubgoalProgress(timeout=subgoal_timeout)
        self.image_timeout = float(image_timeout)
        self.generation = 0
        self.task = 0                 # +1 per accepted instruction and reset (not per re-plan)
        self.target = ''              # the instruction being worked on (latest accepted)
        self.pending: Optional[str] = None   # waits for a camera frame newer than pending_since
        self.pending_since = 0.0
        self.pending_reason = 'instruction'
        self.in_flight: Optional[int] = None  # generation of the last submitted request
        # the applied plan (what `subgoals` carries)
        self.plan = None
        self.instruction = ''
        self.active = 0
        self.stamp: Optional[float] = None
        # the latest observation
        self.image = self.depth = self.camera = None
        self.image_time = self.image_stamp = self.depth_stamp = 0.0
        # counters
        self.plan_ms: List[float] = []
        self.errors = 0
        self.replans = 0
        self.discarded = 0
        self.last_error = ''

    # ------------------------------------------------------------------ inputs
    def set_camera(self, camera: dict) -> None:
        self.camera = camera

    def observe_image(self, image, stamp: float, now: float) -> bool:
        """A camera frame (``stamp``: its header stamp, s); True if it started a plan."""
        self.image, self.image_stamp, self.image_time = image, float(stamp), float(now)
        return self.poll(now)

    def observe_depth(self, depth, stamp: float, now: float) -> bool:
        self.depth, self.depth_stamp = depth, float(stamp)
        return self.poll(now)

    @property
    def running(self) -> bool:
        """The applied plan has an active sub-goal left."""
        return self.plan is not None and self.active < len(self.plan.subgoals)

    @property
    def planning(self) -> bool:
        """A request of the current generation is waiting for a frame or being planned."""
        return self.pending is not None or self.in_flight == self.generation

    def request(self, text: str, now: float, fresh: bool = False) -> bool:
        """A (validated) instruction. False = the same instruction is already being planned or
        its plan still runs (re-sending an instruction is idempotent; a scene reset is not an
        instruction: see :meth:`reset`), unless ``fresh`` (an action goal: always a new
        plan)."""
        if not fresh and text == self.target and (
                self.planning or (self.running and self.instruction == text)):
            return False
        self.task += 1
        self._new_request(text, now, 'instruction')
        return True

    def reset(self, now: float) -> None:
        """The scene was reset (or the operator cancels): drop the plan, any waiting request,
        and the result of a plan still running."""
        self.generation += 1
        self.task += 1
        self.target, self.pending, self.in_flight = '', None, None
        self.plan, self.instruction, self.active = None, '', 0
        self.stamp = float(now)
        self.progress.reset(None)

    def _new_request(self, text: str, now: float, reason: str) -> None:
        self.generation += 1
        self.target = text
        self.pending, self.pending_since, self.pending_reason = text, float(now), reason
        self.poll(now)

    def waiting_for_image(self) -> bool:
        return self.pending is not None

    def waiting_reason(self, now: float) -> str:
        """Why the waiting request is not planned yet ('' if none waits)."""
        if self.pending is None:
            return ''
        if self.image is None:
            return 'no camera image received yet'
        if self.camera is None:
            return 'no camera_info received yet'
        if now - self.image_time > self.image_timeout:
            return f'the last camera image is {now - self.image_time:.1f} s old'
        if self.image_stamp < self.pending_since:
            return 'no camera image stamped after the request yet'
        if self.depth is not None and self.depth_stamp < self.pending_since:
            return 'no depth image stamped after the request yet'
        return ''

    @property
    def complete(self) -> bool:
        """The applied plan has every sub-goal done."""
        return self.plan is not None and self.active >= len(self.plan.subgoals)

    def poll(self, now: float) -> bool:
        """Submit the waiting request once a usable camera frame stamped at or after it is
        there (never plan from a frame of the scene before the request, e.g. before a reset).
        True if a request was submitted."""
        if self.pending is None:
            return False
        if self.image is None or self.camera is None or \
                now - self.image_time > self.image_timeout or \
                self.image_stamp < self.pending_since or \
                (self.depth is not None and self.depth_stamp < self.pending_since):
            return False
        req = PlanRequest(self.generation, self.pending, self.image, self.camera,
                          depth=self.depth, requested_at=self.pending_since,
                          reason=self.pending_reason)
        self.pending = None
        self.in_flight = self.generation
        self.worker.submit(req)
        return True

    # ------------------------------------------------------------------ results
    def collect(self, now: float) -> List[tuple]:
        """Apply finished plans of the current generation; ``[(kind, result)]`` with kind
        'plan' (applied), 'error' (the plan is now empty: hold) or 'discarded' (stale)."""
        events = []
        for r in self.worker.take():
            if r.request.generation != self.generation:
                self.discarded += 1
                events.append(('discarded', r))
                continue
            self.in_flight = None
            self.instruction, self.active, self.stamp = r.request.instruction, 0, float(now)
            self.progress.reset(now)
            if r.error is not None:
                self.errors += 1
                self.last_error = r.error
                self.plan = None
                events.append(('error', r))
            else:
                self.plan = r.plan
                self.plan_ms.append(r.ms)
                events.append(('plan', r))
        return events

    def outcome(self, task: int) -> Optional[tuple]:
        """How the work on ``task`` (:attr:`task` when its instruction was requested) ended:
        ``('succeeded', text)`` every sub-goal done, ``('aborted', text)`` planning failed or a
        newer instruction / a reset took over; None while it is planned or executed."""
        if task != self.task:
            return 'aborted', 'superseded by a newer instruction or a reset'
        if self.complete:
            return 'succeeded', f'all {len(self.plan.subgoals)} sub-goals done'
        if self.plan is None and not self.planning:
            return 'aborted', f'planning failed: {self.last_error or "no plan"}'
        return None

    # ------------------------------------------------------------------ progress
    def update_progress(self, now: float, tool_pos, gripper: float) -> Optional[str]:
        """Judge the active sub-goal on the measured state: 'done' (``active`` advanced),
        'replan' (stale: a re-plan was requested), or None."""
        if not self.running:
            return None
        sg = self.plan.subgoals[self.active]
        status = self.progress.update(now, sg.skill, sg.position, tool_pos, gripper)
        if status == 'done':
            self.active += 1
            self.progress.reset(now)
            return 'done'
        if status == 'stale' and not self.planning:
            # once: the re-plan waits for a camera frame newer than this moment
            self.replans += 1
            self._new_request(self.target or self.instruction, now, 'replan')
            return 'replan'
        return None

    def close(self) -> bool:
        """Stop the planning thread (see :meth:`PlanWorker.close`); True if it has ended."""
        return self.worker.close()
