"""Sub-goal decoder of the strategic planner: the step-token vocabulary, the trained
non-autoregressive ``SubgoalDecoder`` (learned step and role-attribute queries over the frozen
MiniLM token embeddings + the pooled frozen image vector) and the helpers that turn decoded
tokens + role attributes into ``SymbolicStep`` lists.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import ClassVar

import torch
from torch import nn

from .backbones import MAX_TOKENS, TEXT_DIM, VISION_DIM, ImageFeatures, TextFeatures
from .skills import COLORS, SHAPES, PlanningError, SymbolicStep

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
        (ac, as_), (bc, bs) = distinct_roles(pc[0], ps[0], pc[1], ps[1])
        pcol = int(pc[2].argmax())
        attrs = {'A_color': COLOR_CLASSES[ac], 'B_color': COLOR_CLASSES[bc],
                 'P_color': COLOR_CLASSES[pcol], 'A_shape': SHAPE_CLASSES[as_],
                 'B_shape': SHAPE_CLASSES[bs]}
        attr_conf = float(min(pc[0][ac], pc[1][bc], pc[2][pcol], ps[0][as_], ps[1][bs]))
        return tokens, attrs, [c * attr_conf for c in confs]


def distinct_roles(a_color, a_shape, b_color, b_shape) -> tuple:
    """The most probable (colour, shape) class indices of roles A and B (probability vectors
    over ``COLOR_CLASSES`` / ``SHAPE_CLASSES``) under the constraint that the two roles are
    different objects: when both argmaxes name the same object (a sentence that names one of
    them twice, 'stack the green cube on the orange cube after placing the orange cube ...'),
    the assignment with the larger joint probability among 'A keeps its best, B takes its best
    other object' and the converse. Index 0 (<none>) is never constrained."""
    def best(pcol, pshape, avoid=None):
        joint = pcol[:, None] * pshape[None, :]
        if avoid is not None:
            joint = joint.clone()
            joint[avoid] = -1.0
        k = int(joint.argmax())
        return (k // joint.shape[1], k % joint.shape[1]), float(joint.view(-1)[k])

    (a, pa), (b, pb) = best(a_color, a_shape), best(b_color, b_shape)
    if a != b or a[0] == 0 or a[1] == 0:
        return a, b
    (b2, pb2), (a2, pa2) = best(b_color, b_shape, avoid=a), best(a_color, a_shape, avoid=b)
    return (a, b2) if pa * pb2 >= pa2 * pb else (a2, b)
