"""Pinhole camera model of the planner: intrinsics + the optical frame's pose in the robot's
base frame, pixel rays, back-projection onto a horizontal plane or through a depth value, and
projection of base-frame points into the image (``CameraModel.from_any`` accepts the sim's
``camera_info()`` dicts, ROS-like dicts or a ``CameraModel``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skills import PlanningError


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
