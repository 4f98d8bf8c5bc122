"""Offscreen camera frames from the env's own MuJoCo model and data (what GR00T sees).

Rendering needs an OpenGL context without a display: set ``MUJOCO_GL=egl`` (Mesa's EGL
works on CPU-only machines; ``osmesa`` is the slower fallback) *before* mujoco is first
imported. The CLI and the tests set ``egl`` by default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import mujoco
import numpy as np

from rllib_paper.sim.scene import find_id


class RenderError(RuntimeError):
    """Offscreen rendering is unavailable."""


class CameraRenderer:
    """One ``mujoco.Renderer`` per (model, size), rendering named cameras to RGB uint8."""

    def __init__(
        self, model: mujoco.MjModel, height: int, width: int, *, shadows: bool = True, samples: int | None = None
    ) -> None:
        # The offscreen buffer must hold the image; growing it is harmless for physics.
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
        if samples is not None:  # multisampling of the offscreen buffer (model-wide, rendering only)
            model.vis.quality.offsamples = int(samples)
        self.shadows = shadows
        try:
            self._renderer = mujoco.Renderer(model, height=height, width=width)
        except Exception as exc:
            backend = os.environ.get("MUJOCO_GL", "<unset: glfw, needs a display>")
            raise RenderError(
                f"cannot render camera frames (MUJOCO_GL={backend}): {exc}. On a machine without a display "
                "install Mesa's EGL (apt install libegl1 libgl1-mesa-dri) and set MUJOCO_GL=egl before "
                "starting Python (or MUJOCO_GL=osmesa with libosmesa6)"
            ) from exc
        self.model = model
        self.height, self.width = height, width
        self._camera_ids: dict[str, int] = {}

    def camera_id(self, name: str) -> int:
        if name not in self._camera_ids:
            self._camera_ids[name] = find_id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        return self._camera_ids[name]

    def render(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB from ``camera`` for the current ``data``."""
        renderer = self._renderer
        renderer.update_scene(data, camera=self.camera_id(camera))
        # Shadow maps are most of the cost on a CPU (Mesa llvmpipe): about 3x per frame.
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.shadows
        return renderer.render()

    def render_many(self, data: mujoco.MjData, cameras: Iterable[str]) -> dict[str, np.ndarray]:
        return {camera: self.render(data, camera) for camera in cameras}

    def close(self) -> None:
        self._renderer.close()


@dataclass(frozen=True)
class CameraPose:
    """A camera moved to a rig's pose: in its parent's frame, quaternion (w, x, y, z), degrees.
    Cameras only render, so moving one changes no physics."""

    camera: str
    pos: tuple[float, float, float] | None = None
    quat: tuple[float, float, float, float] | None = None
    fovy: float | None = None

    def apply(self, model: mujoco.MjModel) -> None:
        index = find_id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
        if self.pos is not None:
            model.cam_pos[index] = self.pos
        if self.quat is not None:
            model.cam_quat[index] = self.quat
        if self.fovy is not None:
            model.cam_fovy[index] = self.fovy


class EnvFrames:
    """Renders a PaperSquareEnv's cameras, reusing one renderer per env model."""

    def __init__(
        self,
        height: int,
        width: int,
        cameras: Iterable[str],
        shadows: bool = True,
        samples: int | None = None,
        detail: float = 1.0,
        poses: tuple[CameraPose, ...] = (),
    ) -> None:
        self.height, self.width = height, width
        self.cameras = tuple(cameras)
        self.shadows, self.samples = shadows, samples
        self.detail = detail  # the env builds its model with this render_detail (sim/scene.py)
        self.poses = tuple(poses)  # where a mapping moves the cameras (its real rig)
        self._renderer: CameraRenderer | None = None
        self._model: mujoco.MjModel | None = None

    def __call__(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, np.ndarray]:
        if self._model is not model:
            if self._renderer is not None:
                self._renderer.close()
            for pose in self.poses:
                pose.apply(model)
            self._renderer = CameraRenderer(model, self.height, self.width, shadows=self.shadows, samples=self.samples)
            self._model = model
        assert self._renderer is not None
        return self._renderer.render_many(data, self.cameras)

    def __getstate__(self):  # renderers hold GL contexts: never pickled, rebuilt on use
        return {k: getattr(self, k) for k in ("height", "width", "cameras", "shadows", "samples", "detail", "poses")}

    def __setstate__(self, state) -> None:
        self.__init__(**state)
