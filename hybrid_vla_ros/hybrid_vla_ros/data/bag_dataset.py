"""ROS 2 MCAP bags -> LeRobot v3 episodes (``hybrid-vla dataset from-bag``).

The topics come from the robot's :class:`~hybrid_vla_ros.data.dataset_spec.DatasetSpec`
(``dataset.topics`` in its YAML, defaults from the robot's own topics):

- ``joint_states`` (sensor_msgs/JointState) -> ``observation.state``: the arm joints in
  ``joint_names`` order, then the gripper joint mapped to 0 open .. 1 closed by its URDF limits;
- ``action_chunk`` (hybrid_vla_msgs/ActionChunk, the motor level's targets) or, without it, the
  controller ``command`` (std_msgs/Float64MultiArray) + ``gripper_command`` -> ``action``;
- ``camera`` (sensor_msgs/Image) -> ``observation.images.<camera>`` (video);
- ``instruction`` (std_msgs/String) -> the task string; a graph driven through its
  ``ExecuteInstruction`` action publishes none, so the instruction of each new plan on
  ``subgoals`` (hybrid_vla_msgs/SubGoalList) counts too.

Alignment: every feature is sampled on a fixed grid of ``spec.fps`` frames per second, holding
the last message whose header stamp is at or before the grid time (messages without a header,
the command arrays and instructions, count at their log time). A chunk gives the step it holds
at that time (``header.stamp`` is its first step's time, ``step`` apart). The camera may hold a
frame from before the episode's start; joint states and actions come from inside it.

Episodes: an episode starts at an instruction and ends at the next instruction, at a scene reset
(``ground_truth/task_status`` of the sim reporting another task/seed or a restarted clock), at a
gap of more than ``spec.episode_gap`` seconds in the joint states, or at the end of the bag. Its
grid starts once joint states and actions have a message inside the episode (and a camera frame
exists). Frames before the first
instruction belong to no episode (``--task`` names a task for bags without instructions).
"""
from dataclasses import dataclass
import json
from typing import Dict, Optional, Sequence

import numpy as np

from hybrid_vla_ros.data.lerobot_format import DatasetError, vector_feature, video_feature

STATUS_TOPIC = 'ground_truth/task_status'  # the sim's evaluation topic (optional)


def _stamp_ns(msg, log_ns: int) -> int:
    h = getattr(msg, 'header', None)
    if h is None:
        return int(log_ns)
    ns = int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec)
    return ns if ns > 0 else int(log_ns)  # an unstamped publisher: time of arrival


def resolve(topic: str, namespace: str = '') -> str:
    """A relative topic name (``camera/image_raw``) as recorded under ``namespace``."""
    if topic.startswith('/'):
        return topic
    ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
    return f'{ns}/{topic}'


@dataclass
class Stream:
    """Messages of one topic: sorted stamps (ns) and their decoded values."""

    stamps: np.ndarray
    values: list

    def at(self, grid: np.ndarray) -> np.ndarray:
        """Index of the last message at or before each grid time (-1: none yet)."""
        return np.searchsorted(self.stamps, grid, side='right') - 1

    def first_after(self, t: int) -> Optional[int]:
        i = int(np.searchsorted(self.stamps, t, side='left'))
        return int(self.stamps[i]) if i < len(self.stamps) else None


def _stream(items) -> Stream:
    items = sorted(items, key=lambda x: x[0])
    return Stream(np.array([s for s, _ in items], np.int64), [v for _, v in items])


class BagConverter:
    """Turns bags into episodes for one robot (see the module docstring).

    :param spec: the robot's dataset spec; :param images: record the camera;
    :param action_source: ``auto`` (the chunks if the bag has them, else the commands),
        ``chunk`` or ``command``; :param task: task string for bags without instructions.
    """

    def __init__(self, spec, *, robot=None, images: bool = True,
                 action_source: str = 'auto', namespace: str = '', task: Optional[str] = None,
                 min_frames: int = 5):
        from hybrid_vla_ros.robot import load_robot
        if action_source not in ('auto', 'chunk', 'command'):
            raise ValueError(f'action source {action_source!r}: expected auto, chunk or command')
        self.spec = spec
        # the robot model: given, else the YAML the spec was read from (its gripper range)
        self.robot = load_robot(robot if robot is not None
                                else (spec.config_file or spec.robot))
        self.gripper_joint = self.robot.gripper_joint
        # 0 open .. 1 closed, as the motor level reads it (the robot's gripper_open/closed)
        self.g_open, self.g_closed = self.robot.gripper_open, self.robot.gripper_closed
        self.images = images
        self.action_source = action_source
        self.namespace = namespace
        self.task = task
        self.min_frames = int(min_frames)
        self.topics = {k: resolve(v, namespace) for k, v in spec.topics.items()}
        self.status_topic = resolve(STATUS_TOPIC, namespace)

    def features(self, image_shape=None) -> Dict[str, dict]:
        feats = {self.spec.state_feature: vector_feature(self.spec.state_names),
                 self.spec.action_feature: vector_feature(self.spec.state_names)}
        if self.images:
            if image_shape is None:
                raise DatasetError('the camera frame size is unknown (no image in the bag)')
            feats[self.spec.camera_feature] = video_feature(*image_shape)
        return feats

    def gripper_01(self, position: float) -> float:
        return self.robot.gripper_closure(position)

    # ------------------------------------------------------------------ reading
    def read(self, path: str) -> Dict[str, Stream]:
        """The streams of one bag, decoded; a clear error when needed topics are missing."""
        from hybrid_vla_ros.data.bag_reader import read_bag
        t = self.topics
        wanted = {t['joint_states'], t['action_chunk'], t['command'], t['gripper_command'],
                  t['instruction'], t['subgoals'], self.status_topic}
        if self.images:
            wanted.add(t['camera'])
        raw: Dict[str, list] = {k: [] for k in wanted}
        seen = set()
        try:
            for m in read_bag(path, topics=sorted(wanted)):
                seen.add(m.topic)
                raw[m.topic].append(m)
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001  (mcap raises several kinds on a bad file)
            raise DatasetError(f'{path}: not a readable MCAP bag ({type(e).__name__}: {e})'
                               ) from None
        missing = []
        if t['joint_states'] not in seen:
            missing.append(f"{t['joint_states']} (joint_states)")
        use_chunk = t['action_chunk'] in seen and self.action_source != 'command'
        if not use_chunk:
            if self.action_source == 'chunk':
                missing.append(f"{t['action_chunk']} (action_chunk)")
            elif t['command'] not in seen:
                missing.append(f"{t['action_chunk']} or {t['command']} (the actions)")
        if self.images and t['camera'] not in seen:
            missing.append(f"{t['camera']} (camera; or --no-images)")
        if self.task is None and t['instruction'] not in seen and t['subgoals'] not in seen:
            missing.append(f"{t['instruction']} or {t['subgoals']} (the instructions; or "
                           '--task TEXT)')
        if missing:
            raise DatasetError(f'{path}: the bag lacks {", ".join(missing)}; topics are mapped '
                               f"in the robot config's dataset.topics section")
        streams = {'joint_states': _stream(self._states(raw[t['joint_states']], path))}
        if use_chunk:
            streams['action_chunk'] = _stream(self._chunks(raw[t['action_chunk']]))
        else:
            streams['command'] = _stream((_stamp_ns(m.msg, m.stamp_ns),
                                          np.asarray(m.msg.data, float))
                                         for m in raw[t['command']])
            streams['gripper_command'] = _stream(
                (_stamp_ns(m.msg, m.stamp_ns), self.gripper_01(m.msg.data[0]))
                for m in raw[t['gripper_command']] if len(m.msg.data))
        if self.images:
            from hybrid_vla_ros.image_bridge import imgmsg_to_cv2
            streams['camera'] = _stream((_stamp_ns(m.msg, m.stamp_ns),
                                         imgmsg_to_cv2(m.msg, 'rgb8'))
                                        for m in raw[t['camera']])
        said = [(int(m.stamp_ns), m.msg.data) for m in raw[t['instruction']]]
        last = None
        for m in raw[t['subgoals']]:  # a new plan's instruction (an empty one: plan dropped)
            text = m.msg.instruction
            if text != last:
                said.append((_stamp_ns(m.msg, m.stamp_ns), text))
                last = text
        streams['instruction'] = _stream(said)
        streams['status'] = _stream((int(m.stamp_ns), m.msg.data)
                                    for m in raw[self.status_topic])
        return streams

    def _states(self, msgs, path):
        names = list(self.spec.joint_names) + [self.gripper_joint]
        out = []
        for m in msgs:
            have = list(m.msg.name)
            miss = [n for n in names if n not in have]
            if miss or len(m.msg.position) != len(have):
                raise DatasetError(f"{path}: a {self.topics['joint_states']} message lacks "
                                   f'joints {miss or "(positions do not match names)"}')
            q = [m.msg.position[have.index(n)] for n in self.spec.joint_names]
            g = self.gripper_01(m.msg.position[have.index(self.gripper_joint)])
            out.append((_stamp_ns(m.msg, m.stamp_ns), np.array(q + [g], float)))
        return out

    def _chunks(self, msgs):
        out = []
        joints = list(self.spec.joint_names)
        for m in msgs:
            c = m.msg
            names = list(c.joint_names) or joints
            n, h = len(names), int(c.horizon)
            if h <= 0 or len(c.positions) != h * n or len(c.gripper) != h:
                continue  # a malformed chunk carries no action
            pos = np.asarray(c.positions, float).reshape(h, n)
            idx = [names.index(j) for j in joints]
            steps = np.concatenate([pos[:, idx], np.asarray(c.gripper, float)[:, None]], 1)
            step_ns = int(c.step.sec) * 1_000_000_000 + int(c.step.nanosec)
            out.append((_stamp_ns(c, m.stamp_ns), (steps, max(step_ns, 1))))
        return out

    # ------------------------------------------------------------------ episodes
    def boundaries(self, s: Dict[str, Stream]):
        """(resets, gaps): times (ns) of sim resets, which end an instruction's episodes, and
        of joint-state gaps, which split them."""
        out = []
        prev = None
        for t, text in zip(s['status'].stamps, s['status'].values):
            try:
                st = json.loads(text)
            except (TypeError, ValueError):
                continue
            key = (st.get('task'), st.get('seed'))
            if prev is not None and (key != prev[0] or st.get('sim_time', 0) < prev[1]):
                out.append(int(t))
            prev = (key, st.get('sim_time', 0))
        js = s['joint_states'].stamps
        gap = int(self.spec.episode_gap * 1e9)
        gaps = [int(js[i]) + 1 for i in np.flatnonzero(np.diff(js) > gap)]
        return sorted(out), gaps

    def episodes(self, s: Dict[str, Stream]):
        """Yield (task, start_ns, grid (N,) ns, arrays) for every episode of one bag."""
        js = s['joint_states']
        said = list(zip(s['instruction'].stamps.tolist(), s['instruction'].values))
        starts = [(t, text) for t, text in said if text.strip()]
        if not said:
            starts = [(int(js.stamps[0]), self.task)]
        # an empty instruction drops the plan: it ends an episode and starts none
        resets, gaps = self.boundaries(s)
        cuts = sorted(resets + [t for t, text in said if not text.strip()])
        # the same sentence again (a sender repeating it until planned) goes on the same
        # episode unless a reset came between
        merged = []
        for t, text in starts:
            if merged and merged[-1][1] == text and not any(merged[-1][0] < c <= t
                                                            for c in cuts):
                continue
            merged.append((t, text))
        starts = merged
        instr_times = [t for t, _ in starts]
        period = int(round(1e9 / self.spec.fps))
        # joint states and actions must come inside the episode; the camera may hold its last
        # frame from before (a camera slower than the grid, or a late first frame)
        needed = ['joint_states'] + [k for k in ('action_chunk', 'command') if k in s]
        for i, (t_start, task) in enumerate(starts):
            ends = [t for t in cuts + instr_times[i + 1:] if t > t_start]
            end = min(ends) if ends else int(js.stamps[-1]) + 1
            # gaps inside one instruction's span split it into several episodes
            pieces = [t_start] + [t for t in gaps if t_start < t < end] + [end]
            for a, b in zip(pieces[:-1], pieces[1:]):
                firsts = [s[k].first_after(a) for k in needed]
                if any(f is None or f >= b for f in firsts):
                    continue
                t0 = max(firsts)
                if 'camera' in s and s['camera'].at(np.array([t0]))[0] < 0:
                    first_frame = s['camera'].first_after(t0)
                    if first_frame is None or first_frame >= b:
                        continue
                    t0 = first_frame
                last_js = js.stamps[np.searchsorted(js.stamps, b, side='left') - 1]
                if last_js < t0:
                    continue
                grid = t0 + period * np.arange((last_js - t0) // period + 1, dtype=np.int64)
                if len(grid) < self.min_frames:
                    continue
                yield task, int(t0), grid, self.sample(s, grid)

    def sample(self, s: Dict[str, Stream], grid: np.ndarray) -> Dict[str, np.ndarray]:
        """Hold-last values of every feature on ``grid`` (ns)."""
        js = s['joint_states']
        state = np.stack([js.values[i] for i in js.at(grid)]).astype(np.float32)
        if 'action_chunk' in s:
            ch = s['action_chunk']
            rows = []
            for t, i in zip(grid, ch.at(grid)):
                steps, step_ns = ch.values[i]
                k = min(int((t - ch.stamps[i]) // step_ns), len(steps) - 1)
                rows.append(steps[max(k, 0)])
            action = np.stack(rows)
        else:
            cmd, grip = s['command'], s['gripper_command']
            n = len(self.spec.joint_names)
            q = []
            for i in cmd.at(grid):
                v = cmd.values[i]
                if len(v) < n:
                    raise DatasetError(f"{self.topics['command']}: {len(v)} values, expected "
                                       f'{n} (joint_names)')
                q.append(v[:n])
            gi = grip.at(grid) if len(grip.stamps) else np.full(len(grid), -1)
            # no gripper command yet: the measured gripper
            g = [grip.values[j] if j >= 0 else st[-1] for j, st in zip(gi, state)]
            action = np.concatenate([np.stack(q), np.asarray(g)[:, None]], 1)
        out = {self.spec.state_feature: state,
               self.spec.action_feature: action.astype(np.float32)}
        if 'camera' in s:
            cam = s['camera']
            out[self.spec.camera_feature] = np.stack([cam.values[i] for i in cam.at(grid)])
        return out


def bags_to_dataset(bags: Sequence[str], out: str, spec, *, robot=None, images: bool = True,
                    action_source: str = 'auto', namespace: str = '',
                    task: Optional[str] = None, log=print) -> int:
    """Convert ``bags`` into the dataset folder ``out`` (created or appended); returns the
    number of episodes written."""
    import os

    from hybrid_vla_ros.data.dataset_writer import DatasetWriter
    conv = BagConverter(spec, robot=robot, images=images, action_source=action_source,
                        namespace=namespace, task=task)
    for b in bags:
        if not os.path.isfile(b):
            raise FileNotFoundError(f'bag {b} does not exist')
    writer = None
    written = 0
    for b in bags:
        streams = conv.read(b)
        n_before = written
        for task_text, t0, grid, arrays in conv.episodes(streams):
            if writer is None:
                shape = None
                if images:
                    shape = arrays[spec.camera_feature].shape[1:3]
                writer = DatasetWriter(out, fps=spec.fps, robot_type=spec.robot,
                                       features=conv.features(shape))
            meta = {'source': os.path.abspath(b), 'start_ns': int(t0),
                    'end_ns': int(grid[-1]), 'action_source': 'action_chunk'
                    if 'action_chunk' in streams else 'command'}
            writer.add_episode(arrays, task_text, meta)
            written += 1
        log(f'dataset from-bag: {b}: {written - n_before} episodes')
    if writer is None:
        raise DatasetError(f'no episode found in {list(bags)} (an episode starts at an '
                           'instruction and needs joint states, actions'
                           f'{" and camera frames" if images else ""} after it)')
    return written
