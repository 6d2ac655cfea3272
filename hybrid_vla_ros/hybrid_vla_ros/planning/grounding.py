"""Grounding head of the strategic planner: a small trained CenterNet-style head on the frozen
stride-4 EfficientNet features + a light RGB stem that locates named objects in a 128 px image
(per-cell colour / kind classes, sub-cell offset, grasp yaw, centre height on a 32 x 32 grid),
its class and grid helpers, ``locate`` (the best cell of one referent) and the known resting
heights that pixels are back-projected onto.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
import torch
from torch import nn

from ..domain.vocabulary import OBJECT_HALF_HEIGHT, OBSTACLE_HALF, PAD_HALF
from .backbones import STRIDE4_DIM
from .skills import COLORS, PlanningError, object_kind

GRID = 32          # grounding heatmap resolution (stride 4 at 128 px)
STRIDE = 4


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
def locate_candidates(head: GroundingHead, dense: torch.Tensor, name: str, k: int = 1) -> list:
    """The ``k`` best cells of one referent, best first, each 3 x 3 neighbourhood taken once:
    dicts with the pixel (u, v) at 128 px, yaw, height and confidence (the probability mass of
    the cell and its neighbours: centres straddle cell borders)."""
    score = head.heatmap(dense[:1], name)[0]
    prob_map = score.exp()
    free = score.clone()
    reg = head.regressions(dense[:1])
    out = []
    for _ in range(max(1, int(k))):
        i = int(free.argmax())
        row, col = divmod(i, GRID)
        if out and not bool(torch.isfinite(free[row, col])):
            break  # every cell taken
        near = (slice(max(0, row - 1), row + 2), slice(max(0, col - 1), col + 2))
        ou, ov = (float(v) for v in reg['offset'][0, :, row, col])
        u, v = cell_to_pixel(row, col, ou, ov)
        c4, s4 = (float(v) for v in reg['yaw4'][0, :, row, col])
        out.append({'pixel': (u, v), 'yaw': math.atan2(s4, c4) / 4.0,
                    'height': float(reg['height'][0, row, col]),
                    'confidence': float(min(1.0, prob_map[near].sum()))})
        free[near] = -math.inf
    return out


def locate(head: GroundingHead, dense: torch.Tensor, name: str) -> dict:
    """Best cell of one referent (the first of :func:`locate_candidates`)."""
    return locate_candidates(head, dense, name, 1)[0]


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
