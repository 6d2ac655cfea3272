"""The centre of a spherical marker of known radius from a depth image (the strategic planner's
grounding of free-floating targets, :meth:`StrategicPlanner.ground`).

The grounding head gives the marker's pixel to within a few pixels; the depth pixels around it
that lie on the nearest surface (within one radius of the closest depth) are back-projected to
base-frame points on the visible cap, and the centre is the least-squares sphere fit of those
points (Gauss-Newton on the distances to the centre): first with the known radius, then, on the
points that fit that sphere within ``inlier_tol``, with the radius free as well (a rendered or
real sphere's visible surface is not exactly of its nominal radius: a tessellated sphere is
smaller), kept only if that radius stays within ``radius_tol`` of the known one. A window with
too few points falls back to the cap's mean pushed 2r/3 along the view ray (the mean depth of
a cap sampled uniformly over its projected disc).

``fit_marker`` also says how well the depth supports a marker there: the fraction of the cap
points within ``inlier_tol`` of the known-radius sphere at the centre (near 1 on the marker,
low on a cube face, a finger or the table), which the planner uses to pick among the heatmap's
peaks.
"""
from typing import NamedTuple, Tuple

import numpy as np

from .camera_model import CameraModel
from .skills import PlanningError

MIN_POINTS = 6   # fewer depth points on the cap: no fit (the cap-mean estimate)


def cap_points(camera: CameraModel, depth: np.ndarray, u: float, v: float, radius: float,
               half: int = 4) -> np.ndarray:
    """(N, 3) base-frame points of the nearest surface in the (2 half + 1)^2 window around
    pixel (u, v); the nearest depth is taken in the 5 x 5 window at the pixel."""
    depth = np.asarray(depth, float)
    h, w = depth.shape[:2]
    r0, c0 = int(np.clip(round(v), 0, h - 1)), int(np.clip(round(u), 0, w - 1))
    core = depth[max(0, r0 - 2):r0 + 3, max(0, c0 - 2):c0 + 3]
    if not np.any(np.isfinite(core)):
        raise PlanningError('no valid depth around the target marker')
    near = np.nanmin(core)
    rows, cols = slice(max(0, r0 - half), r0 + half + 1), slice(max(0, c0 - half), c0 + half + 1)
    win = depth[rows, cols]
    rr, cc = np.nonzero(np.isfinite(win) & (win <= near + radius))
    return np.array([camera.pixel_depth_to_base(c + cols.start, r + rows.start,
                                                win[r, c]) for r, c in zip(rr, cc)])


def _fit(points: np.ndarray, centre: np.ndarray, radius: float, free_radius: bool,
         iters: int = 30) -> Tuple[np.ndarray, float]:
    c, r = centre.astype(float).copy(), float(radius)
    for _ in range(iters):
        d = points - c
        n = np.maximum(np.linalg.norm(d, axis=1), 1e-12)
        jac = -d / n[:, None]
        if free_radius:
            jac = np.hstack([jac, -np.ones((len(points), 1))])
        step = np.linalg.lstsq(jac, r - n, rcond=None)[0]
        c += step[:3]
        if free_radius:
            r += step[3]
        if not np.all(np.isfinite(c)) or np.linalg.norm(step) < 1e-10:
            break
    return c, r


class MarkerFit(NamedTuple):
    """A marker centre from depth and how well the depth supports it."""
    centre: np.ndarray       # (3,) base frame
    n_points: int            # depth points on the cap
    inlier_fraction: float   # of those within ``inlier_tol`` of the known-radius sphere at
    #                          ``centre``; nan when too few points to judge (the cap-mean guess)


def fit_marker(camera: CameraModel, depth: np.ndarray, u: float, v: float, radius: float,
               inlier_tol: float = 1e-3, radius_tol: float = 0.1) -> MarkerFit:
    """:func:`marker_centre` with its support: a spherical marker of ``radius`` seen at (u, v)
    puts nearly every cap point within ``inlier_tol`` of the sphere (inlier fraction near 1);
    a cube face, a finger or the table does not."""
    pts = cap_points(camera, depth, u, v, radius)
    centre = _centre(camera, pts, radius, inlier_tol, radius_tol)
    if len(pts) < MIN_POINTS:
        return MarkerFit(centre, len(pts), float('nan'))
    resid = np.abs(np.linalg.norm(pts - centre, axis=1) - radius)
    return MarkerFit(centre, len(pts), float(np.mean(resid <= inlier_tol)))


def marker_centre(camera: CameraModel, depth: np.ndarray, u: float, v: float, radius: float,
                  inlier_tol: float = 1e-3, radius_tol: float = 0.1) -> np.ndarray:
    """The marker's centre (3,) in the base frame (see the module docstring)."""
    return fit_marker(camera, depth, u, v, radius, inlier_tol, radius_tol).centre


def _centre(camera: CameraModel, pts: np.ndarray, radius: float, inlier_tol: float,
            radius_tol: float) -> np.ndarray:
    origin = camera.T_base_camera[:3, 3]
    mean = pts.mean(0)
    ray = (mean - origin) / np.linalg.norm(mean - origin)
    guess = mean + (2.0 / 3.0) * radius * ray
    if len(pts) < MIN_POINTS:
        return guess
    centre, _ = _fit(pts, guess, radius, free_radius=False)
    if not np.all(np.isfinite(centre)) or np.linalg.norm(centre - guess) > radius:
        return guess
    inliers = pts[np.abs(np.linalg.norm(pts - centre, axis=1) - radius) <= inlier_tol]
    if len(inliers) < MIN_POINTS:
        return centre
    refined, r = _fit(inliers, centre, radius, free_radius=True)
    if (np.all(np.isfinite(refined)) and abs(r - radius) <= radius_tol * radius
            and np.linalg.norm(refined - centre) <= 0.5 * radius):
        return refined
    return centre
