"""Strategic planner (level 3, ~1 Hz): instruction + camera image -> ordered, grounded sub-goals.

Pipeline (every backend shares steps 2-4, so all outputs are validated the same way):

1. a *step proposer* turns the instruction (and image features) into symbolic steps
   (allow-listed skill, object, place reference): the default ``HeadsBackend`` is a small trained
   transformer decoder on frozen all-MiniLM-L6-v2 token embeddings + the pooled frozen
   EfficientNet-Lite0 image vector; ``llm_backend.LLMBackend`` prompts a local LLM for JSON,
   ``vlm_backend.HFVLMBackend`` shows the image to a local Hugging Face VLM for JSON;
2. ``validate_steps`` checks them against the allow-list and the object vocabulary;
3. the ``GroundingHead`` (a small trained CenterNet-style head on the frozen stride-4
   EfficientNet features + a light RGB stem) locates every named object in the image: a
   referent-conditioned heatmap (32 x 32) plus per-cell sub-cell offset, grasp yaw and height;
   the pixel is back-projected through the camera intrinsics/extrinsics onto the plane of the
   object's known centre height (cubes, cylinders, pads, the wall), or for the free-floating
   target marker onto the predicted height (or through a depth image if one is given);
4. ``compile_plan`` turns the symbolic steps + grounded poses into target poses with the scripted
   expert's conventions (hover, lift and place heights, top-down grasp yaw), so the motor level
   sees the same kind of targets as in training; ``validate_plan`` checks the result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
import math
from pathlib import Path
import time
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..sim.arm_sim import OBJECT_HALF_HEIGHT, OBSTACLE_HALF, PAD_HALF
from ..sim.kinematics import down_quat
from ..sim.scripted_expert import HOVER, LIFT_Z, PLACE_DROP
from ..sim.tasks import TCP_TO_FINGERTIP
from .backbones import (
    MAX_TOKENS,
    STRIDE4_DIM,
    TEXT_DIM,
    VISION_DIM,
    ImageFeatures,
    TextFeatures,
    image_to_tensor,
)
from .skills import (
    COLORS,
    SHAPES,
    Plan,
    PlanningError,
    SubGoal,
    SymbolicStep,
    object_kind,
    validate_plan,
    validate_steps,
)

# ----------------------------------------------------------------------------- step vocabulary
# Step tokens: (skill, object role, reference role). Roles: A = first manipulated object,
# B = second one (stack), P = the pad, T = the target marker. '<eos>' ends a sequence.
EOS = ('<eos>', '', '')
STEP_TOKENS: tuple = (EOS, ('move_to', 'T', ''),) + tuple(
    tok for role, ref in (('A', 'P'), ('B', 'A')) for tok in (
        ('move_above', role, ''), ('descend', role, ''), ('grasp', role, ''),
        ('lift', role, ''), ('move_above', role, ref), ('place', role, ref),
        ('release', role, ''), ('retreat', role, ''), ('touch', role, '')))
TOKEN_INDEX = {t: i for i, t in enumerate(STEP_TOKENS)}
ROLE_SLOTS = ('A_color', 'A_shape', 'B_color', 'B_shape', 'P_color')
COLOR_CLASSES = ('<none>',) + COLORS
SHAPE_CLASSES = ('<none>',) + SHAPES
MAX_STEPS = 16
TARGET_MARKER_RADIUS = 0.012   # m, the sim's reach/detour marker sphere (arm_sim 'target_geom')
GRID = 32          # grounding heatmap resolution (stride 4 at 128 px)
STRIDE = 4


def role_names(attrs: dict) -> dict:
    """Role -> object name from decoded attributes {'A_color': 'red', 'A_shape': 'cube', ...}."""
    out = {'T': 'target'}
    for r in ('A', 'B'):
        c, s = attrs.get(f'{r}_color', '<none>'), attrs.get(f'{r}_shape', '<none>')
        if c != '<none>' and s != '<none>':
            out[r] = f'{c} {s}'
    if attrs.get('P_color', '<none>') != '<none>':
        out['P'] = f"{attrs['P_color']} pad"
    return out


def tokens_to_steps(tokens, attrs: dict) -> list:
    """Decoded step tokens + role attributes -> SymbolicStep list (PlanningError if a step
    refers to a role whose attributes were decoded as <none>)."""
    names = role_names(attrs)
    steps = []
    for tok in tokens:
        if tok == EOS:
            break
        skill, role, ref = tok
        if role not in names or (ref and ref not in names):
            raise PlanningError(f'step {skill} refers to role {role}{"/" + ref if ref else ""} '
                                f'but the instruction decoded no such object ({attrs})')
        steps.append(SymbolicStep(skill, names[role], names[ref] if ref else ''))
    if not steps:
        raise PlanningError('the decoder produced an empty plan')
    return steps


# ----------------------------------------------------------------------------- camera geometry
@dataclass
class CameraModel:
    """Pinhole camera: K (3, 3) for a width x height image, T_base_camera (4, 4) optical frame
    (x right, y down, z forward) in the base frame."""
    K: np.ndarray
    T_base_camera: np.ndarray
    width: int
    height: int

    @classmethod
    def from_any(cls, info) -> CameraModel:
        """Accept ``ArmSim.camera_info()`` dicts (K, T_base_camera, width, height), ROS-like
        dicts (k: 9 numbers, t_base_camera: 16 numbers) or a CameraModel."""
        if isinstance(info, CameraModel):
            return info
        if not isinstance(info, dict):
            raise PlanningError(f'camera_info must be a dict, got {type(info).__name__}')
        K = info.get('K', info.get('k'))
        T = info.get('T_base_camera', info.get('t_base_camera'))
        if K is None or T is None:
            raise PlanningError("camera_info needs 'K' (intrinsics) and 'T_base_camera' "
                                '(optical frame pose in the base frame)')
        K = np.asarray(K, float).reshape(3, 3)
        T = np.asarray(T, float).reshape(4, 4)
        w = int(info.get('width', round(2 * K[0, 2] + 1)))
        h = int(info.get('height', round(2 * K[1, 2] + 1)))
        if not (np.all(np.isfinite(K)) and np.all(np.isfinite(T))):
            raise PlanningError('camera_info has non-finite entries')
        return cls(K, T, w, h)

    def ray(self, u: float, v: float) -> tuple:
        """Base-frame origin and direction (z-forward units) of pixel (u, v)."""
        d_cam = np.array([(u - self.K[0, 2]) / self.K[0, 0], (v - self.K[1, 2]) / self.K[1, 1],
                          1.0])
        return self.T_base_camera[:3, 3].copy(), self.T_base_camera[:3, :3] @ d_cam

    def pixel_to_plane(self, u: float, v: float, z: float) -> np.ndarray:
        """Intersection of pixel (u, v)'s ray with the horizontal plane at height z."""
        o, d = self.ray(u, v)
        if abs(d[2]) < 1e-9:
            raise PlanningError(f'pixel ({u:.1f}, {v:.1f}) looks parallel to the table')
        t = (z - o[2]) / d[2]
        if t <= 0:
            raise PlanningError(f'pixel ({u:.1f}, {v:.1f}) does not see the plane z={z:.3f}')
        return o + t * d

    def pixel_depth_to_base(self, u: float, v: float, depth: float) -> np.ndarray:
        o, d = self.ray(u, v)
        return o + depth * d

    def project(self, p) -> np.ndarray:
        T = self.T_base_camera
        pc = T[:3, :3].T @ (np.asarray(p, float) - T[:3, 3])
        return np.array([self.K[0, 0] * pc[0] / pc[2] + self.K[0, 2],
                         self.K[1, 1] * pc[1] / pc[2] + self.K[1, 2]])


def known_center_height(name: str) -> float | None:
    """Height of an object's centre above the table when it rests there (None: unknown)."""
    kind = object_kind(name)
    if kind == 'object':
        return OBJECT_HALF_HEIGHT[name.split()[-1]]
    if kind == 'pad':
        return PAD_HALF[2]
    if kind == 'obstacle':
        return OBSTACLE_HALF[2]
    return None


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

    def half(name):
        return OBJECT_HALF_HEIGHT[name.split()[-1]] if object_kind(name) == 'object' else 0.0

    def grasp_quat(name):
        yaw = float(scene[name].get('yaw', 0.0)) if name.endswith('cube') else 0.0
        return down_quat(yaw)

    def place_pose(obj, ref):
        if object_kind(ref) == 'pad':
            xy, surface = pos_of(ref)[:2], 0.0
        else:  # stack on an object: where it is now, or where this plan put it
            r = pos_of(ref)
            if ref in placed_at and np.linalg.norm(r[:2] - placed_at[ref]) >= 0.03:
                xy, surface = placed_at[ref], half(ref) * 2.0
            else:
                xy, surface = r[:2], r[2] + half(ref)
        z = surface + half(obj) + PLACE_DROP
        return np.array([xy[0], xy[1], z])

    for i, st in enumerate(steps):
        obj, ref = st.object, st.reference
        name = obj
        qd = down_quat(0.0)
        g, servo = 0.0, False
        nxt = steps[i + 1] if i + 1 < len(steps) else None
        if st.skill == 'move_to':
            p = pos_of(obj)
            sid, desc, servo = 'reach', f'move the gripper to the {obj}', True
            if 'obstacle' in scene:
                sid, desc = 'detour', 'move to the target around the obstacle'
        elif st.skill == 'touch':
            o = pos_of(obj)
            p = o + np.array([0.0, 0.0, half(obj) + TCP_TO_FINGERTIP])
            qd, g, servo, sid = grasp_quat(obj), 1.0, True, 'touch'
            desc = f'touch the top of the {obj}'
        elif st.skill == 'move_above' and ref:
            pp = place_pose(obj, ref)
            p = np.array([pp[0], pp[1], max(LIFT_Z, pp[2] + HOVER)])
            g, sid, desc = 1.0, 'move_above_place', f'carry the {obj} above the {ref}'
        elif st.skill == 'move_above':
            o = pos_of(obj)
            if nxt is not None and nxt.skill == 'touch' and nxt.object == obj:
                p = o + np.array([0.0, 0.0, half(obj) + TCP_TO_FINGERTIP + HOVER])
                g = 1.0
            else:
                p = o + np.array([0.0, 0.0, half(obj) + HOVER])
            qd, sid, desc = grasp_quat(obj), 'move_above', f'move above the {obj}'
        elif st.skill in ('descend', 'grasp'):
            o = pos_of(obj)
            p = np.array([o[0], o[1], max(o[2], half(obj))])
            qd = grasp_quat(obj)
            g = 1.0 if st.skill == 'grasp' else 0.0
            sid, desc = st.skill, f'{"grasp" if g else "descend to"} the {obj}'
        elif st.skill == 'lift':
            o = pos_of(obj)
            p, qd, g, sid = np.array([o[0], o[1], LIFT_Z]), grasp_quat(obj), 1.0, 'lift'
            desc = f'lift the {obj}'
        elif st.skill == 'place':
            p = place_pose(obj, ref)
            placed_at[obj] = p[:2].copy()
            last_place[obj] = p
            g, sid, desc = 1.0, 'place', f'lower the {obj} onto the {ref}'
        elif st.skill == 'release':
            p = last_place.get(obj)
            if p is None:
                p = pos_of(obj) + np.array([0.0, 0.0, 0.0])
            sid, desc = 'release', f'release the {obj}'
        elif st.skill == 'retreat':
            base = last_place.get(obj)
            base = pos_of(obj) if base is None else base
            p, sid, desc = base + np.array([0.0, 0.0, HOVER]), 'retreat', \
                'move the gripper up and away'
        else:  # pragma: no cover - validate_steps rejects anything else
            raise PlanningError(f'no grounding rule for skill {st.skill!r}')
        sid = prefixes.get(obj, '') + sid
        while sid in used_ids:
            sid += '_'
        used_ids.add(sid)
        c = float(np.clip(conf[i] * float(scene.get(name, {}).get('confidence', 1.0)), 0.0, 1.0))
        out.append(SubGoal(sid, st.skill, obj, st.description or desc, np.asarray(p, float),
                           np.asarray(qd, float), c, g, ref, servo))
    return out


# ----------------------------------------------------------------------------- trained heads
@dataclass(frozen=True)
class DecoderConfig:
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.1
    max_steps: int = MAX_STEPS
    max_tokens: int = MAX_TOKENS
    use_image: bool = True
    slot_pointer: bool = True
    # checkpoints written before a field existed load with these values
    LEGACY_DEFAULTS: ClassVar[dict] = {'slot_pointer': False}


class SubgoalDecoder(nn.Module):
    """Non-autoregressive sub-goal sequence decoder.

    Learned step queries (``max_steps + 1``) and role-attribute queries (A/B colour and shape,
    pad colour) attend to the frozen MiniLM token embeddings (B, T, 384) and one token of the
    pooled frozen image vector (B, 1280); each step query classifies a step token (incl. <eos>).
    With ``slot_pointer`` each role-attribute query also *points* at one instruction token
    (attention over the token embeddings) and a token-level head reads the colour / shape class
    from that token's raw MiniLM embedding: which word fills a slot is decided by the context,
    what the word says by the word itself, so a colour is read the same way wherever the
    sentence puts it.
    """

    def __init__(self, cfg: DecoderConfig = DecoderConfig()) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.d_model
        self.text_proj = nn.Linear(TEXT_DIM, d)
        self.sent_proj = nn.Linear(TEXT_DIM, d)
        self.image_proj = nn.Linear(VISION_DIM, d)
        self.pos = nn.Parameter(torch.randn(cfg.max_tokens + 2, d) * 0.02)
        self.n_queries = cfg.max_steps + 1 + len(ROLE_SLOTS)
        self.queries = nn.Parameter(torch.randn(self.n_queries, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, cfg.n_heads, cfg.ff_dim, cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.n_layers)
        self.norm = nn.LayerNorm(d)
        self.step_head = nn.Linear(d, len(STEP_TOKENS))
        self.color_head = nn.Linear(d, len(COLOR_CLASSES))
        self.shape_head = nn.Linear(d, len(SHAPE_CLASSES))
        if cfg.slot_pointer:
            self.slot_query = nn.Linear(d, d)
            self.slot_key = nn.Linear(TEXT_DIM, d)
            self.token_color_head = nn.Linear(TEXT_DIM, len(COLOR_CLASSES))
            self.token_shape_head = nn.Linear(TEXT_DIM, len(SHAPE_CLASSES))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, sentence: torch.Tensor,
                image: torch.Tensor) -> dict:
        """tokens (B, T, 384), mask (B, T) bool, sentence (B, 384), image (B, 1280) ->
        {'steps': (B, S+1, V), 'colors': (B, 3, 7) for A, B, P, 'shapes': (B, 2, 3)}."""
        B = tokens.shape[0]
        img = self.image_proj(image) if self.config.use_image else torch.zeros(
            B, self.config.d_model)
        mem = torch.cat([img[:, None], self.sent_proj(sentence)[:, None],
                         self.text_proj(tokens)], dim=1) + self.pos[None, :tokens.shape[1] + 2]
        keep = torch.cat([torch.ones(B, 2, dtype=torch.bool), mask.bool()], dim=1)
        q = self.queries[None].expand(B, -1, -1)
        h = self.norm(self.decoder(q, mem, memory_key_padding_mask=~keep))
        n = self.config.max_steps + 1
        roles = h[:, n:]
        colors = self.color_head(roles[:, [0, 2, 4]])
        shapes = self.shape_head(roles[:, [1, 3]])
        if self.config.slot_pointer:
            att = self.slot_query(roles) @ self.slot_key(tokens).transpose(1, 2)
            att = att.masked_fill(~mask.bool()[:, None], float('-inf'))
            picked = (att / math.sqrt(att.shape[-1])).softmax(-1) @ tokens   # (B, 5, 384)
            colors = colors + self.token_color_head(picked[:, [0, 2, 4]])
            shapes = shapes + self.token_shape_head(picked[:, [1, 3]])
        return {'steps': self.step_head(h[:, :n]), 'colors': colors, 'shapes': shapes}

    @torch.no_grad()
    def decode(self, text: TextFeatures, image: ImageFeatures | None) -> tuple:
        """Greedy decode of one instruction -> (tokens, attrs, per-step confidences)."""
        img = image.pooled[None] if image is not None else torch.zeros(1, VISION_DIM)
        out = self.forward(text.tokens[None], text.mask[None], text.sentence[None], img)
        p_steps = out['steps'][0].softmax(-1)
        conf, idx = p_steps.max(-1)
        tokens, confs = [], []
        for k, c in zip(idx.tolist(), conf.tolist()):
            tok = STEP_TOKENS[k]
            if tok == EOS:
                break
            tokens.append(tok)
            confs.append(c)
        pc = out['colors'][0].softmax(-1)
        ps = out['shapes'][0].softmax(-1)
        attrs = {'A_color': COLOR_CLASSES[int(pc[0].argmax())],
                 'B_color': COLOR_CLASSES[int(pc[1].argmax())],
                 'P_color': COLOR_CLASSES[int(pc[2].argmax())],
                 'A_shape': SHAPE_CLASSES[int(ps[0].argmax())],
                 'B_shape': SHAPE_CLASSES[int(ps[1].argmax())]}
        attr_conf = float(torch.cat([pc.max(-1).values, ps.max(-1).values]).min())
        return tokens, attrs, [c * attr_conf for c in confs]


@dataclass(frozen=True)
class GroundingConfig:
    width: int = 64
    use_backbone: bool = True


# Per-cell classes of the grounding head. Colour: background, the six colours, colourless
# (target marker, wall). Kind: background + the referent kinds.
REFERENT_KINDS = ('cube', 'cylinder', 'pad', 'target', 'obstacle')
N_COLOR_CELL = len(COLORS) + 2
N_KIND_CELL = len(REFERENT_KINDS) + 1


def referent_classes(name: str) -> tuple:
    """(colour class or None, kind class) of a canonical object name on the per-cell maps."""
    words = name.split()
    kind = words[-1]
    if kind not in REFERENT_KINDS:
        raise PlanningError(f'cannot ground {name!r}: unknown kind {kind!r}')
    color = 1 + COLORS.index(words[0]) if len(words) == 2 and words[0] in COLORS else None
    return color, 1 + REFERENT_KINDS.index(kind)


def entity_classes(name: str) -> tuple:
    """Training labels (colour class, kind class) of an entity name (colourless -> last)."""
    color, kind = referent_classes(name)
    return (N_COLOR_CELL - 1 if color is None else color), kind


class GroundingHead(nn.Module):
    """Locates named objects in a 128 px image (CenterNet-style, 32 x 32 grid, stride 4).

    Per cell it classifies which object centre lies there by colour (8 classes incl.
    background) and kind (6 classes incl. background) and regresses the sub-cell offset (2),
    the grasp yaw as cos/sin of 4*yaw (2) and the centre height z in m (1). The heatmap of a
    referent "<colour> <kind>" is log p(colour) + log p(kind) per cell, so one dense pass
    serves every referent and every labelled object supervises the whole map.
    Dense features: a light RGB stem (stride 4) + the frozen EfficientNet-Lite0 stride-4 map +
    coordinate channels.
    """

    def __init__(self, cfg: GroundingConfig = GroundingConfig()) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.width
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(),
                                  nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU())
        cin = 32 + 2 + (STRIDE4_DIM if cfg.use_backbone else 0)
        self.body = nn.Sequential(nn.Conv2d(cin, w, 3, 1, 1), nn.SiLU(),
                                  nn.Conv2d(w, w, 3, 1, 1), nn.SiLU(),
                                  nn.Conv2d(w, w, 3, 1, 2, dilation=2), nn.SiLU(),
                                  nn.Conv2d(w, w, 1), nn.SiLU())
        self.out = nn.Conv2d(w, N_COLOR_CELL + N_KIND_CELL + 5, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, GRID), torch.linspace(-1, 1, GRID),
                                indexing='ij')
        self.register_buffer('coords', torch.stack([xs, ys])[None], persistent=False)

    def dense(self, x: torch.Tensor, stride4: torch.Tensor | None) -> torch.Tensor:
        """x (B, 3, 128, 128) preprocessed, stride4 (B, 24, 32, 32) -> (B, 8+6+5, 32, 32)."""
        parts = [self.stem(x), self.coords.expand(x.shape[0], -1, -1, -1)]
        if self.config.use_backbone:
            parts.append(stride4)
        return self.out(self.body(torch.cat(parts, 1)))

    @staticmethod
    def class_logits(dense: torch.Tensor) -> tuple:
        """-> colour logits (B, 8, G, G), kind logits (B, 6, G, G)."""
        return dense[:, :N_COLOR_CELL], dense[:, N_COLOR_CELL:N_COLOR_CELL + N_KIND_CELL]

    @staticmethod
    def heatmap(dense: torch.Tensor, name: str) -> torch.Tensor:
        """Log-score map (B, G, G) of the referent ``name`` (canonical object name)."""
        color, kind = referent_classes(name)
        cl, kl = GroundingHead.class_logits(dense)
        score = kl.log_softmax(1)[:, kind]
        if color is not None:
            score = score + cl.log_softmax(1)[:, color]
        return score

    @staticmethod
    def regressions(dense: torch.Tensor) -> dict:
        c = N_COLOR_CELL + N_KIND_CELL
        return {'offset': torch.sigmoid(dense[:, c:c + 2]),       # (B, 2, G, G) in [0, 1]
                'yaw4': dense[:, c + 2:c + 4],                      # (B, 2, G, G) cos, sin
                'height': dense[:, c + 4]}                          # (B, G, G) m


def pixel_to_cell(u: float, v: float) -> tuple:
    """128 px pixel (ROS centres) -> (row, col, off_u, off_v) on the 32 x 32 grid."""
    fu, fv = (u + 0.5) / STRIDE, (v + 0.5) / STRIDE
    col, row = int(np.clip(np.floor(fu), 0, GRID - 1)), int(np.clip(np.floor(fv), 0, GRID - 1))
    return row, col, float(np.clip(fu - col, 0, 1)), float(np.clip(fv - row, 0, 1))


def cell_to_pixel(row: int, col: int, off_u: float, off_v: float) -> tuple:
    return STRIDE * (col + off_u) - 0.5, STRIDE * (row + off_v) - 0.5


@torch.no_grad()
def locate(head: GroundingHead, dense: torch.Tensor, name: str) -> dict:
    """Best cell of one referent: pixel (u, v) at 128 px, yaw, height and confidence (the
    probability that this cell holds the centre of a ``name``)."""
    score = head.heatmap(dense[:1], name)[0]
    k = int(score.argmax())
    row, col = divmod(k, GRID)
    reg = head.regressions(dense[:1])
    ou, ov = (float(v) for v in reg['offset'][0, :, row, col])
    u, v = cell_to_pixel(row, col, ou, ov)
    c4, s4 = (float(v) for v in reg['yaw4'][0, :, row, col])
    yaw = math.atan2(s4, c4) / 4.0
    # centres straddle cell borders: add the neighbours' probability mass
    prob = score.exp()[max(0, row - 1):row + 2, max(0, col - 1):col + 2].sum()
    return {'pixel': (u, v), 'yaw': yaw, 'height': float(reg['height'][0, row, col]),
            'confidence': float(min(1.0, prob))}


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


def _save_module(module: nn.Module, cfg, path: Path, kind: str, extra: dict | None = None):
    from safetensors.torch import save_file
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()},
              str(path / f'{kind}.safetensors'))
    meta = {'kind': kind, 'config': asdict(cfg), **(extra or {})}
    (path / f'{kind}.json').write_text(json.dumps(meta, indent=2))


def _load_module(cls, cfg_cls, path: Path, kind: str):
    from safetensors.torch import load_file
    f, j = path / f'{kind}.safetensors', path / f'{kind}.json'
    if not f.is_file() or not j.is_file():
        raise FileNotFoundError(f'no {kind} checkpoint in {path} (need {f.name} and {j.name}); '
                                'train one with `hybrid-vla train strategic --out DIR`')
    meta = json.loads(j.read_text())
    module = cls(cfg_cls(**{**getattr(cfg_cls, 'LEGACY_DEFAULTS', {}), **meta['config']}))
    module.load_state_dict(load_file(str(f)))
    return module.eval(), meta


def _default_checkpoint() -> Path:
    """``<checkpoint root>/planner``: the package's shipped-checkpoint lookup
    (``$HYBRID_VLA_CHECKPOINTS``, the source tree, or the installed share directory)."""
    try:
        from ..shipped_checkpoints import checkpoint_root
        return Path(checkpoint_root()) / 'planner'
    except ImportError:
        return Path(__file__).resolve().parents[2] / 'checkpoints' / 'planner'


DEFAULT_CHECKPOINT = _default_checkpoint()


@dataclass
class ReplanTrigger:
    """When to re-plan: a new instruction, a reported failed/stale sub-goal, or ``period`` s."""
    period: float = 1.0
    _last_instruction: str | None = None
    _last_time: float = -math.inf
    _failed: bool = False
    history: list = field(default_factory=list)

    def report_failure(self, reason: str = '') -> None:
        self._failed = True
        self.history.append(reason)

    def due(self, instruction: str, now: float) -> bool:
        due = (instruction != self._last_instruction or self._failed
               or now - self._last_time >= self.period)
        if due:
            self._last_instruction, self._last_time, self._failed = instruction, now, False
        return due


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

    @classmethod
    def from_checkpoint(cls, path: str | Path = DEFAULT_CHECKPOINT, backend=None,
                        model_path: str | Path | None = None,
                        max_new_tokens: int | None = None, **kwargs) -> StrategicPlanner:
        """Planner with the checkpoint's grounding head and a step proposer: ``backend`` = None
        or ``'heads'`` (the checkpoint's trained decoder), ``'llm'`` (``LLMBackend``; optional
        ``model_path``: GGUF file or HF folder), ``'hf_vlm'`` (``HFVLMBackend``; ``model_path``
        = the local VLM folder, required) or any object with ``propose``."""
        path = Path(path)
        grounding, _ = _load_module(GroundingHead, GroundingConfig, path, 'grounding')
        if backend is None or backend == 'heads':
            decoder, _ = _load_module(SubgoalDecoder, DecoderConfig, path, 'decoder')
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
            loc = locate(self.grounding, dense, name)
            u, v = (loc['pixel'][0] + 0.5) * sx - 0.5, (loc['pixel'][1] + 0.5) * sy - 0.5
            z = known_center_height(name)
            if depth is not None and z is None:
                pos = self._marker_from_depth(camera, depth, u, v)
            else:
                pos = camera.pixel_to_plane(u, v, loc['height'] if z is None else z)
            scene[name] = {'pos': pos, 'yaw': loc['yaw'], 'pixel': (u, v),
                           'confidence': loc['confidence']}
        return scene

    @staticmethod
    def _marker_from_depth(camera: CameraModel, depth: np.ndarray, u: float, v: float):
        """Centre of the spherical target marker from the depth image around pixel (u, v):
        the pixels of the nearest surface (within one radius of the closest depth) are
        back-projected and averaged; that mean lies 2r/3 in front of the centre along the
        view ray (mean height of a sphere cap sampled uniformly over its projected disc)."""
        depth = np.asarray(depth, float)
        r0 = int(np.clip(round(v), 0, depth.shape[0] - 1))
        c0 = int(np.clip(round(u), 0, depth.shape[1] - 1))
        rs, cs = slice(max(0, r0 - 2), r0 + 3), slice(max(0, c0 - 2), c0 + 3)
        win = depth[rs, cs]
        if not np.any(np.isfinite(win)):
            raise PlanningError('no valid depth around the target marker')
        near = np.nanmin(win)
        pts = []
        for r in range(rs.start, min(rs.stop, depth.shape[0])):
            for c in range(cs.start, min(cs.stop, depth.shape[1])):
                if depth[r, c] <= near + TARGET_MARKER_RADIUS:
                    pts.append(camera.pixel_depth_to_base(c, r, depth[r, c]))
        mean = np.mean(pts, axis=0)
        o = camera.T_base_camera[:3, 3]
        ray = (mean - o) / np.linalg.norm(mean - o)
        return mean + (2.0 / 3.0) * TARGET_MARKER_RADIUS * ray

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
        validate_plan(plan, scene_objects)
        t5 = time.perf_counter()
        timing.update(vision=1e3 * (t1 - t0), text=1e3 * (t2 - t1), steps=1e3 * (t3 - t2),
                      grounding=1e3 * (t4 - t3), compile=1e3 * (t5 - t4), total=1e3 * (t5 - t0))
        plan.timing_ms = timing
        return plan
