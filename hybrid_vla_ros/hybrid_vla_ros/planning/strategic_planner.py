"""Strategic planner (level 3, ~1 Hz): instruction + camera image -> ordered, grounded sub-goals.

Pipeline (every backend shares steps 2-4, so all outputs are validated the same way):

1. a *step proposer* turns the instruction (and image features) into symbolic steps
   (allow-listed skill, object, place reference): the default ``HeadsBackend`` is a small trained
   transformer decoder (``subgoal_decoder.SubgoalDecoder``) on frozen all-MiniLM-L6-v2 token
   embeddings + the pooled frozen EfficientNet-Lite0 image vector; ``llm_backend.LLMBackend``
   prompts a local LLM for JSON, ``vlm_backend.HFVLMBackend`` shows the image to a local Hugging
   Face VLM for JSON;
2. ``validate_steps`` checks them against the allow-list and the object vocabulary;
3. the ``grounding.GroundingHead`` (a small trained CenterNet-style head on the frozen stride-4
   EfficientNet features + a light RGB stem) locates every named object in the image: a
   referent-conditioned heatmap (32 x 32) plus per-cell sub-cell offset, grasp yaw and height;
   the pixel is back-projected through the camera intrinsics/extrinsics
   (``camera_model.CameraModel``) onto the plane of the object's known centre height (cubes,
   cylinders, pads, the wall), or for the free-floating target marker onto the predicted height
   (or, given a depth image, the least-squares fit of a sphere of the marker's radius to the
   depth points around the pixel, ``marker_fit.fit_marker``, trying the heatmap's best peaks
   until one's depth fits that sphere: a gripper finger or a cube edge can outscore a partly
   hidden marker in RGB, not in depth);
4. ``compile_plan`` turns the symbolic steps + grounded poses into target poses with the scripted
   expert's conventions (hover, lift and place heights, top-down grasp yaw), so the motor level
   sees the same kind of targets as in training; ``validate_plan`` checks the result.

This module is the facade: ``StrategicPlanner`` runs the pipeline, ``compile_plan`` is step 4,
``HeadsBackend`` / ``make_backend`` pick the step proposer, and ``save_module`` /
``load_module`` write and read the ``decoder`` / ``grounding`` checkpoint files.
"""
from __future__ import annotations

from dataclasses import asdict
import math
from pathlib import Path
import time

import numpy as np
import torch
from torch import nn

from ..domain.skill_rules import place_position, stack_surface, step_target
from ..domain.types import SubGoal
from ..domain.vocabulary import half_height_of
from .backbones import ImageFeatures, TextFeatures, image_to_tensor
from .camera_model import CameraModel
from .grounding import (
    GroundingConfig,
    GroundingHead,
    known_center_height,
    locate,
    locate_candidates,
)
from .marker_fit import fit_marker
from .skills import Plan, PlanningError, object_kind, validate_plan, validate_steps
from .subgoal_decoder import DecoderConfig, SubgoalDecoder, tokens_to_steps

TARGET_MARKER_RADIUS = 0.012   # m, the sim's reach/detour marker sphere (arm_sim 'target_geom')
MARKER_CANDIDATES = 5   # heatmap peaks tried against the depth for the floating marker
MARKER_MIN_SUPPORT = 0.8   # cap points on the marker's sphere for a peak to be the marker


def _to_camera_pixel(pixel: tuple, scale: tuple) -> tuple:
    """A pixel of the grounding head's 128 px image -> the camera image's (ROS centres)."""
    return (pixel[0] + 0.5) * scale[0] - 0.5, (pixel[1] + 0.5) * scale[1] - 0.5


# ----------------------------------------------------------------------------- plan compiler
def compile_plan(steps: list, scene: dict, confidences=None) -> list:
    """Symbolic steps + grounded scene -> SubGoals with the scripted expert's target conventions.

    ``scene``: name -> {'pos' (3,), 'yaw' (rad, grasp yaw of cubes), 'confidence'}. A place on
    an object that an earlier step of this plan moves uses where that object will be.
    """
    conf = [1.0] * len(steps) if confidences is None else list(confidences)
    carried = [s.object for s in steps if s.skill == 'grasp']
    multi = len(dict.fromkeys(carried)) > 1
    prefixes = {o: ('ab'[i] + '_' if multi and i < 2 else f'o{i}_' if multi else '')
                for i, o in enumerate(dict.fromkeys(carried))}
    placed_at: dict = {}   # object -> xy where this plan puts it
    last_place = {}        # object -> place pose (for release / retreat)
    out, used_ids = [], set()

    def pos_of(name):
        if name not in scene:
            raise PlanningError(f'object {name!r} was not grounded in the image')
        return np.asarray(scene[name]['pos'], float)

    def yaw_of(name):
        return float(scene[name].get('yaw', 0.0)) if name.endswith('cube') else 0.0

    def place_pose(obj, ref):
        if object_kind(ref) == 'pad':
            xy, surface = pos_of(ref)[:2], 0.0
        else:  # stack on an object: where it is now, or where this plan put it
            xy, surface = stack_surface(pos_of(ref), half_height_of(ref), placed_at.get(ref))
        return place_position(xy, surface, half_height_of(obj))

    for i, st in enumerate(steps):
        obj, ref = st.object, st.reference
        name = obj
        nxt = steps[i + 1] if i + 1 < len(steps) else None
        if st.skill == 'move_to':
            p, qd, g, servo = step_target('move_to', pos_of(obj))
            sid, desc = 'reach', f'move the gripper to the {obj}'
            if 'obstacle' in scene:
                sid, desc = 'detour', 'move to the target around the obstacle'
        elif st.skill == 'move_above' and ref:
            p, qd, g, servo = step_target('move_above', place=place_pose(obj, ref))
            sid, desc = 'move_above_place', f'carry the {obj} above the {ref}'
        elif st.skill in ('touch', 'move_above', 'descend', 'grasp', 'lift'):
            before_touch = nxt is not None and nxt.skill == 'touch' and nxt.object == obj
            o = pos_of(obj)
            p, qd, g, servo = step_target(st.skill, o, half_height_of(obj), obj.split()[-1],
                                          yaw_of(obj), before_touch=before_touch)
            sid, desc = st.skill, {
                'touch': f'touch the top of the {obj}', 'move_above': f'move above the {obj}',
                'descend': f'descend to the {obj}', 'grasp': f'grasp the {obj}',
                'lift': f'lift the {obj}'}[st.skill]
        elif st.skill == 'place':
            p, qd, g, servo = step_target('place', place=place_pose(obj, ref))
            placed_at[obj] = p[:2].copy()
            last_place[obj] = p
            sid, desc = 'place', f'lower the {obj} onto the {ref}'
        elif st.skill in ('release', 'retreat'):
            base = last_place.get(obj)
            p, qd, g, servo = step_target(st.skill, place=pos_of(obj) if base is None else base)
            sid, desc = st.skill, (f'release the {obj}' if st.skill == 'release'
                                   else 'move the gripper up and away')
        else:  # pragma: no cover - validate_steps rejects anything else
            raise PlanningError(f'no grounding rule for skill {st.skill!r}')
        sid = prefixes.get(obj, '') + sid
        while sid in used_ids:
            sid += '_'
        used_ids.add(sid)
        c = float(np.clip(conf[i] * float(scene.get(name, {}).get('confidence', 1.0)), 0.0, 1.0))
        out.append(SubGoal(sid, st.skill, obj, st.description or desc, np.asarray(p, float),
                           np.asarray(qd, float), g, c, servo, ref))
    return out


# ----------------------------------------------------------------------------- backends
class HeadsBackend:
    """Default step proposer: the trained ``SubgoalDecoder`` on frozen embeddings."""

    name = 'heads'

    def __init__(self, decoder: SubgoalDecoder) -> None:
        self.decoder = decoder.eval()

    def propose(self, instruction: str, text: TextFeatures, image: ImageFeatures) -> tuple:
        tokens, attrs, confs = self.decoder.decode(text, image)
        return tokens_to_steps(tokens, attrs), confs


BACKENDS = ('heads', 'llm', 'hf_vlm')


def make_backend(name: str, model_path: str | Path | None = None,
                 max_new_tokens: int | None = None):
    """An optional step proposer by name: ``'llm'`` -> ``LLMBackend(model_path)`` (default:
    the SmolLM2 GGUF), ``'hf_vlm'`` -> ``HFVLMBackend(model_path)`` (a local VLM folder).
    (``'heads'`` needs a checkpoint: use ``StrategicPlanner.from_checkpoint``.)"""
    kw = {} if max_new_tokens is None else {'max_new_tokens': int(max_new_tokens)}
    if name == 'llm':
        from .llm_backend import LLMBackend
        return LLMBackend(model_path, **kw)
    if name == 'hf_vlm':
        from .vlm_backend import HFVLMBackend
        return HFVLMBackend(model_path, **kw)
    raise ValueError(f'unknown planner backend {name!r}; expected one of {list(BACKENDS)}')


def save_module(module: nn.Module, cfg, path: Path, kind: str, extra: dict | None = None):
    from ..models.checkpoint import write_module
    write_module(str(path / f'{kind}.safetensors'), str(path / f'{kind}.json'), module,
                 {'kind': kind, 'config': asdict(cfg), **(extra or {})})


def load_module(cls, cfg_cls, path: Path, kind: str):
    from ..models.checkpoint import read_module
    f, j = path / f'{kind}.safetensors', path / f'{kind}.json'
    if not f.is_file() or not j.is_file():
        raise FileNotFoundError(f'no {kind} checkpoint in {path} (need {f.name} and {j.name}); '
                                'train one with `hybrid-vla train strategic --out DIR`')
    return read_module(str(f), str(j), lambda meta: cls(cfg_cls(**{
        **getattr(cfg_cls, 'LEGACY_DEFAULTS', {}), **meta['config']})))


def _default_checkpoint() -> Path:
    """``<checkpoint root>/planner``: the package's shipped-checkpoint lookup
    (``$HYBRID_VLA_CHECKPOINTS``, the source tree, or the installed share directory)."""
    try:
        from ..shipped_checkpoints import checkpoint_root
        return Path(checkpoint_root()) / 'planner'
    except ImportError:
        return Path(__file__).resolve().parents[2] / 'checkpoints' / 'planner'


DEFAULT_CHECKPOINT = _default_checkpoint()


class StrategicPlanner:
    """Level-3 planner: ``plan(instruction, image, camera_info) -> Plan``.

    ``backend``: an object with ``propose(instruction, text_features, image_features) ->
    (steps, confidences)``; None = the trained ``HeadsBackend`` from the checkpoint. A backend
    with ``uses_image = True`` (the VLM) gets the raw (H, W, 3) image instead of the frozen
    features, and the ``scene_objects`` keyword.
    """

    def __init__(self, grounding: GroundingHead, backend=None, vision=None, text=None,
                 min_grounding_confidence: float = 0.05,
                 min_plan_confidence: float = 0.25) -> None:
        from .backbones import shared_text, shared_vision
        self.grounding = grounding.eval()
        self.backend = backend
        self.vision = vision or shared_vision()
        self.text = text or shared_text()
        self.min_conf = float(min_grounding_confidence)
        self.min_plan_conf = float(min_plan_confidence)
        # (lower, upper) bounds of every sub-goal target (``skills.plan_bounds`` of the robot's
        # reach); None = any finite position
        self.bounds = None

    @classmethod
    def from_checkpoint(cls, path: str | Path = DEFAULT_CHECKPOINT, backend=None,
                        model_path: str | Path | None = None,
                        max_new_tokens: int | None = None, **kwargs) -> StrategicPlanner:
        """Planner with the checkpoint's grounding head and a step proposer: ``backend`` = None
        or ``'heads'`` (the checkpoint's trained decoder), ``'llm'`` (``LLMBackend``; optional
        ``model_path``: GGUF file or HF folder), ``'hf_vlm'`` (``HFVLMBackend``; ``model_path``
        = the local VLM folder, required) or any object with ``propose``."""
        path = Path(path)
        grounding, _ = load_module(GroundingHead, GroundingConfig, path, 'grounding')
        if backend is None or backend == 'heads':
            decoder, _ = load_module(SubgoalDecoder, DecoderConfig, path, 'decoder')
            backend = HeadsBackend(decoder)
        elif isinstance(backend, str):
            backend = make_backend(backend, model_path, max_new_tokens)
        return cls(grounding, backend, **kwargs)

    # ----------------------------------------------------------------- grounding
    def ground(self, names, image: np.ndarray, camera, feats: ImageFeatures | None = None,
               depth: np.ndarray | None = None) -> dict:
        """Locate each named object -> {name: {'pos', 'yaw', 'pixel', 'confidence'}}."""
        camera = CameraModel.from_any(camera)
        feats = feats or self.vision.encode(image)
        x = image_to_tensor(image)
        with torch.no_grad():
            dense = self.grounding.dense(x, feats.stride4[None])
        sx, sy = camera.width / x.shape[-1], camera.height / x.shape[-2]
        scene = {}
        for name in dict.fromkeys(names):
            z = known_center_height(name)
            if depth is not None and z is None:
                scene[name] = self._ground_marker(dense, name, camera, depth, (sx, sy))
                continue
            loc = locate(self.grounding, dense, name)
            u, v = _to_camera_pixel(loc['pixel'], (sx, sy))
            pos = camera.pixel_to_plane(u, v, loc['height'] if z is None else z)
            scene[name] = {'pos': pos, 'yaw': loc['yaw'], 'pixel': (u, v),
                           'confidence': loc['confidence']}
        return scene

    def _ground_marker(self, dense, name: str, camera: CameraModel, depth: np.ndarray,
                       scale: tuple) -> dict:
        """The floating marker from the heatmap and the depth image: the best of the
        ``MARKER_CANDIDATES`` heatmap peaks (at least ``min_grounding_confidence``) whose depth
        cap fits the marker's sphere (inlier fraction >= ``MARKER_MIN_SUPPORT``), with
        confidence max(heatmap, support): the sphere is evidence of its own. Without such a
        peak, the best one, at confidence 0 when the depth refutes it (enough points, off the
        sphere: a hidden or partly hidden marker, whose fit lands on what hides it), so the
        plan is refused rather than sent to the wrong place."""
        best = None
        for loc in locate_candidates(self.grounding, dense, name, MARKER_CANDIDATES):
            if best is not None and loc['confidence'] < self.min_conf:
                break
            u, v = _to_camera_pixel(loc['pixel'], scale)
            try:
                fit = fit_marker(camera, depth, u, v, TARGET_MARKER_RADIUS,
                                 min_support=MARKER_MIN_SUPPORT)
            except PlanningError:  # no valid depth around this peak
                continue
            support = fit.inlier_fraction
            entry = {'pos': fit.centre, 'yaw': loc['yaw'], 'pixel': (u, v),
                     'confidence': loc['confidence'], 'depth_support': support}
            if support >= MARKER_MIN_SUPPORT:  # nan (too few points to judge) is not
                entry['confidence'] = max(loc['confidence'], support)
                return entry
            if not math.isnan(support):  # refuted: the depth there is not the marker's sphere
                entry['confidence'] = 0.0
            best = entry if best is None else best
        if best is None:
            raise PlanningError(f'no valid depth around the {name}')
        return best

    # ----------------------------------------------------------------- planning
    def plan(self, instruction: str, image: np.ndarray, camera_info, depth=None,
             scene_objects=None) -> Plan:
        """Ordered, grounded, validated sub-goals for ``instruction`` in the scene of ``image``
        ((H, W, 3) uint8 RGB). ``camera_info``: see ``CameraModel.from_any``. ``depth``
        (optional, (H, W) m) grounds free-floating targets. ``scene_objects``: names allowed
        (None = the whole vocabulary). Raises ``PlanningError`` on anything invalid."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise PlanningError('instruction must be a non-empty string')
        timing = {}
        t0 = time.perf_counter()
        feats = self.vision.encode(np.asarray(image))
        t1 = time.perf_counter()
        text = self.text.encode(instruction)
        t2 = time.perf_counter()
        if getattr(self.backend, 'uses_image', False):   # e.g. a VLM: the raw camera image
            steps, confs = self.backend.propose(instruction, text, np.asarray(image),
                                                scene_objects=scene_objects)
        else:
            steps, confs = self.backend.propose(instruction, text, feats)
        steps = validate_steps(steps, scene_objects)
        t3 = time.perf_counter()
        names = {s.object for s in steps} | {s.reference for s in steps if s.reference}
        if any(s.skill == 'move_to' for s in steps):
            names.add('obstacle')
        scene = self.ground(sorted(names), image, camera_info, feats, depth)
        # the obstacle is optional context: keep it only if the image clearly shows one
        if 'obstacle' in scene and (scene['obstacle']['confidence'] < 0.5
                                    or (scene_objects is not None
                                        and 'obstacle' not in scene_objects)):
            del scene['obstacle']
        for n in names - {'obstacle'}:
            if scene[n]['confidence'] < self.min_conf:
                raise PlanningError(f'could not find the {n} in the image '
                                    f'(grounding confidence {scene[n]["confidence"]:.3f})')
        t4 = time.perf_counter()
        subgoals = compile_plan(steps, scene, confs)
        worst = min(sg.confidence for sg in subgoals)
        if worst < self.min_plan_conf:
            raise PlanningError(f'plan confidence {worst:.2f} below {self.min_plan_conf:.2f} '
                                f'(rephrase the instruction?)')
        plan = Plan(instruction, subgoals, backend=getattr(self.backend, 'name', 'custom'),
                    scene=scene)
        validate_plan(plan, scene_objects, self.bounds)
        t5 = time.perf_counter()
        timing.update(vision=1e3 * (t1 - t0), text=1e3 * (t2 - t1), steps=1e3 * (t3 - t2),
                      grounding=1e3 * (t4 - t3), compile=1e3 * (t5 - t4), total=1e3 * (t5 - t0))
        plan.timing_ms = timing
        return plan
