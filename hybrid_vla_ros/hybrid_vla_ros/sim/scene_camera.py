"""The fixed scene camera of a scene model (:mod:`.scene_builder`): RGB and depth renderers,
pinhole intrinsics / extrinsics (ROS conventions) and the pixel <-> base-frame projections."""
from __future__ import annotations

import os

os.environ.setdefault('MUJOCO_GL', 'egl')

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from .kinematics import mat_to_quat  # noqa: E402
from .scene_builder import CAMERA_NAME  # noqa: E402

CAMERA_FRAME = 'scene_camera_optical_frame'


class SceneCamera:
    """The ``scene_cam`` camera of ``model`` rendering ``data`` (``width`` x ``height`` px,
    vertical field of view ``fovy`` deg). Renderers are created on first use (the GL context
    lives in the thread that renders first) and released by :meth:`close`."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, width: int, height: int,
                 fovy: float):
        self.model, self.data = model, data
        self.width, self.height, self.fovy = int(width), int(height), float(fovy)
        self.cam_id = model.camera(CAMERA_NAME).id
        self._renderer = None
        self._depth_renderer = None

    def _get_renderer(self, depth=False):
        if depth:
            if self._depth_renderer is None:
                self._depth_renderer = mujoco.Renderer(self.model, self.height, self.width)
                self._depth_renderer.enable_depth_rendering()
            return self._depth_renderer
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
        return self._renderer

    def render(self) -> np.ndarray:
        """RGB image (H, W, 3) uint8 from the fixed scene camera."""
        r = self._get_renderer()
        r.update_scene(self.data, camera=self.cam_id)
        return r.render().copy()

    def render_depth(self) -> np.ndarray:
        """Depth image (H, W) float32, metres along the optical axis."""
        r = self._get_renderer(depth=True)
        r.update_scene(self.data, camera=self.cam_id)
        return r.render().astype(np.float32)

    def camera_info(self) -> dict:
        """Pinhole intrinsics (ROS convention: pixel centres at integer coordinates) and
        extrinsics of the optical frame (x right, y down, z forward) in the base frame."""
        fy = 0.5 * self.height / np.tan(np.deg2rad(self.fovy) / 2)
        fx = fy
        cx, cy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        pos = self.data.cam_xpos[self.cam_id].copy()
        R_mj = self.data.cam_xmat[self.cam_id].reshape(3, 3)
        R_opt = R_mj @ np.diag([1.0, -1.0, -1.0])
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R_opt, pos
        return {'width': self.width, 'height': self.height, 'K': K, 'fx': fx, 'fy': fy,
                'cx': cx, 'cy': cy, 'fovy_deg': self.fovy, 'distortion': np.zeros(5),
                'T_base_camera': T, 'position': pos, 'quat': mat_to_quat(R_opt),
                'frame_id': CAMERA_FRAME}

    def pixel_to_base(self, u: float, v: float, depth: float) -> np.ndarray:
        """Back-project pixel (u, v) with optical-axis depth (m) to a base-frame point."""
        ci = self.camera_info()
        p_cam = np.array([(u - ci['cx']) / ci['fx'] * depth, (v - ci['cy']) / ci['fy'] * depth,
                          depth])
        T = ci['T_base_camera']
        return T[:3, :3] @ p_cam + T[:3, 3]

    def base_to_pixel(self, p) -> np.ndarray:
        """Pixel (u, v) of a base-frame point."""
        ci = self.camera_info()
        T = ci['T_base_camera']
        pc = T[:3, :3].T @ (np.asarray(p, float) - T[:3, 3])
        return np.array([ci['fx'] * pc[0] / pc[2] + ci['cx'], ci['fy'] * pc[1] / pc[2] + ci['cy']])

    def close(self):
        for r in (self._renderer, self._depth_renderer):
            if r is not None:
                r.close()
        self._renderer = self._depth_renderer = None
