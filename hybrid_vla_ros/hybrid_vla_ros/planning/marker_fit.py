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
low on a cube face, a finger or the table; 0 on a flat patch), which the planner uses to pick
among the heatmap's peaks; where the nearest surface is not the sphere it also tries the
surfaces behind it in the window (a marker partly hidden by a finger).
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
    return cap_layers(camera, depth, u, v, radius, half, 1)[0]


def cap_layers(camera: CameraModel, depth: np.ndarray, u: float, v: float, radius: float,
               half: int = 4, max_layers: int = 12) -> list:
    """Candidate cap surfaces in the (2 half + 1)^2 window around pixel (u, v), as (N, 3)
    base-frame point arrays: first the nearest surface at the pixel (:func:`cap_points`), then
    the window's depth slabs one radius thick, starting a third of a radius apart from the
    window's nearest depth, nearest first (a marker partly behind a finger is one of them)."""
    depth = np.asarray(depth, float)
    h, w = depth.shape[:2]
    r0, c0 = int(np.clip(round(v), 0, h - 1)), int(np.clip(round(u), 0, w - 1))
    core = depth[max(0, r0 - 2):r0 + 3, max(0, c0 - 2):c0 + 3]
    if not np.any(np.isfinite(core)):
        raise PlanningError('no valid depth around the target marker')
    rows, cols = slice(max(0, r0 - half), r0 + half + 1), slice(max(0, c0 - half), c0 + half + 1)
    win = depth[rows, cols]
    ok = np.isfinite(win)

    def points(sel):
        rr, cc = np.nonzero(sel)
        return np.array([camera.pixel_depth_to_base(c + cols.start, r + rows.start, win[r, c])
                         for r, c in zip(rr, cc)]).reshape(-1, 3)

    masks = [ok & (win <= np.nanmin(core) + radius)]
    if max_layers > 1:
        lo = win[ok].min()
        for near in lo + radius / 3.0 * np.unique(np.floor((win[ok] - lo) / (radius / 3.0))):
            sel = ok & (win >= near) & (win <= near + radius)
            if not any(np.array_equal(sel, m) for m in masks):   # each surface fitted once
                masks.append(sel)
            if len(masks) >= max_layers:
                break
    return [points(m) for m in masks]


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
               inlier_tol: float = 1e-3, radius_tol: float = 0.1,
               min_support: float = 0.8) -> MarkerFit:
    """:func:`marker_centre` with its support: a spherical marker of ``radius`` seen at (u, v)
    puts nearly every cap point within ``inlier_tol`` of the sphere (inlier fraction near 1);
    a cube face, a finger or the table does not (a flat patch, within half ``inlier_tol`` of a
    plane, has support 0: a small one fits a sphere too). The surfaces of :func:`cap_layers`
    are tried nearest first; the first whose fit has ``min_support`` is returned, else the nearest
    surface's fit (or its cap-mean guess, support nan, when it has too few points)."""
    layers = cap_layers(camera, depth, u, v, radius)
    nearest = None
    for i, pts in enumerate(layers):
        if len(pts) < MIN_POINTS:
            continue
        centre = _centre(camera, pts, radius, inlier_tol, radius_tol)
        resid = np.abs(np.linalg.norm(pts - centre, axis=1) - radius)
        support = float(np.mean(resid <= inlier_tol))
        if _plane_rms(pts) < 0.5 * inlier_tol:
            support = 0.0   # flat: a small enough patch of a face fits any sphere
        fit = MarkerFit(centre, len(pts), support)
        if support >= min_support:
            return fit
        if i == 0:
            nearest = fit
    if nearest is not None:
        return nearest
    pts = layers[0]
    return MarkerFit(_centre(camera, pts, radius, inlier_tol, radius_tol), len(pts),
                     float('nan'))


def _plane_rms(pts: np.ndarray) -> float:
    """RMS distance of the points from their least-squares plane."""
    return float(np.linalg.svd(pts - pts.mean(0), compute_uv=False)[-1] / np.sqrt(len(pts)))


def marker_centre(camera: CameraModel, depth: np.ndarray, u: float, v: float, radius: float,
                  inlier_tol: float = 1e-3, radius_tol: float = 0.1) -> np.ndarray:
    """The marker's centre (3,) in the base frame from the nearest surface at (u, v) (see the
    module docstring)."""
    pts = cap_points(camera, depth, u, v, radius)
    return _centre(camera, pts, radius, inlier_tol, radius_tol)


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
