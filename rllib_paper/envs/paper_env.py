"""PaperSquareEnv: push an A5 sheet into the taped A5 frame with absolute joint targets.

Actions are absolute joint targets in radians (the LeRobot/GR00T convention), clipped to
the actuators' ranges; "doing nothing" means sending the previous target again, never a
zero vector (a zero action lets the arm sag onto the table). One control
step is ``substeps`` physics steps run in a single ``mj_step(..., nstep)`` call, and
everything else the step does is a handful of slice copies on IDs looked up once, so the
env stays within a few percent of raw MuJoCo speed (``rllib-paper bench env``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from time import thread_time
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from rllib_paper.config import EnvConfig, coerce_env_config
from rllib_paper.sim.observation import (
    FINGERTIP,
    GOAL_VEC,
    OBS_DIM,
    QPOS,
    QVEL,
    SHEET_POS,
    SHEET_POSE,
    SHEET_QUAT,
    SHEET_XY,
)
from rllib_paper.sim.randomize import EpisodeDraw, sample_episode
from rllib_paper.sim.scene import SceneIds, build_model
from rllib_paper.sim.task import FrameGeometry, quat_to_yaw

REWARD_TERMS = ("success", "distance", "orientation", "residual", "time")
REWARD_INFO_KEYS = {term: f"reward_{term}" for term in REWARD_TERMS}  # info keys, built once, read every step
_INSTABILITY_WARNINGS = (
    int(mujoco.mjtWarning.mjWARN_BADQACC),
    int(mujoco.mjtWarning.mjWARN_BADQPOS),
    int(mujoco.mjtWarning.mjWARN_BADQVEL),
)


def _as_slice(indices: np.ndarray) -> slice | np.ndarray:
    """A contiguous index array as a slice: slicing copies faster than fancy indexing."""
    if len(indices) and np.all(np.diff(indices) == 1):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


class PaperSquareEnv(gym.Env):
    """Push the A5 sheet into the taped frame; the action is six absolute joint targets (rad).

    Observation (25, float32; ``state`` holds it in float64), laid out in ``sim/observation.py``.
    Positions are in the world frame: the robot base on the table top, +x forward, +z up.

    | index | meaning                                    | unit                     |
    |-------|--------------------------------------------|--------------------------|
    | 0     | shoulder_pan joint angle                   | angle (rad)              |
    | 1     | shoulder_lift joint angle                  | angle (rad)              |
    | 2     | elbow_flex joint angle                     | angle (rad)              |
    | 3     | wrist_flex joint angle                     | angle (rad)              |
    | 4     | wrist_roll joint angle                     | angle (rad)              |
    | 5     | gripper joint angle                        | angle (rad)              |
    | 6     | shoulder_pan joint velocity                | angular velocity (rad/s) |
    | 7     | shoulder_lift joint velocity               | angular velocity (rad/s) |
    | 8     | elbow_flex joint velocity                  | angular velocity (rad/s) |
    | 9     | wrist_flex joint velocity                  | angular velocity (rad/s) |
    | 10    | wrist_roll joint velocity                  | angular velocity (rad/s) |
    | 11    | gripper joint velocity                     | angular velocity (rad/s) |
    | 12    | sheet centre x                             | position (m)             |
    | 13    | sheet centre y                             | position (m)             |
    | 14    | sheet centre z                             | position (m)             |
    | 15    | sheet orientation quaternion w             | unitless                 |
    | 16    | sheet orientation quaternion x             | unitless                 |
    | 17    | sheet orientation quaternion y             | unitless                 |
    | 18    | sheet orientation quaternion z             | unitless                 |
    | 19    | goal vector x: frame centre - sheet centre | position (m)             |
    | 20    | goal vector y: frame centre - sheet centre | position (m)             |
    | 21    | goal vector z: frame centre - sheet centre | position (m)             |
    | 22    | fingertip site x                           | position (m)             |
    | 23    | fingertip site y                           | position (m)             |
    | 24    | fingertip site z                           | position (m)             |

    Reward: the seed's weighted terms, each also in ``info``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        config: EnvConfig | Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        *,
        visual: bool = True,  # False: no visual meshes (nothing renders this env; same physics)
        render_detail: float = 1.0,  # < 1: simplified visual meshes (a camera-fed base; same physics)
        **overrides: Any,
    ) -> None:
        self.config = coerce_env_config(config, **overrides)
        physics, task = self.config.physics, self.config.task
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: allowed values are {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.model = build_model(physics, task, visual=visual, render_detail=render_detail)
        self.data = mujoco.MjData(self.model)
        self.ids = SceneIds.from_model(self.model)
        self.substeps = physics.substeps
        # CPU time inside mj_step during steps (not resets): the physics ceiling `bench train`
        # reports. CPU, not wall, time: a learner thread sharing the core must not inflate it.
        self.physics_seconds = 0.0
        self.physics_steps = 0  # control steps taken (not resets), for the same benchmark
        self.frame = FrameGeometry(
            center=tuple(self.ids.frame_center), inner_size=task.frame_inner_size, margin=task.success_margin
        )
        self.paper_size = physics.paper_size

        self._qpos = _as_slice(self.ids.joint_qpos)
        self._qvel = _as_slice(self.ids.joint_dof)
        self._ctrl = _as_slice(self.ids.actuators)
        self._paper_qpos = slice(self.ids.paper_qpos, self.ids.paper_qpos + 7)
        self._paper_qvel = slice(self.ids.paper_dof, self.ids.paper_dof + 3)
        self._goal = np.array([*self.ids.frame_center, physics.paper_half_thickness])
        self._low, self._high = self.ids.ctrl_low, self.ids.ctrl_high
        self._max_speed_sq = task.max_paper_speed**2
        self._settle = task.settle_after_success_steps  # 0: terminate at the first success
        self._settle_speed_sq = task.settle_max_speed**2
        self._success_step: int | None = None
        self._home = np.clip(np.asarray(task.home_qpos, dtype=np.float64), self._low, self._high)
        self._nominal = {
            "paper_friction": self.model.geom_friction[self.ids.paper_geom, 0].copy(),
            "pad_friction": self.model.geom_friction[self.ids.pad_geoms, 0].copy(),
            "table_friction": self.model.geom_friction[self.ids.table_geoms, 0].copy(),
            "paper_mass": self.model.body_mass[self.ids.paper_body].copy(),
            "paper_inertia": self.model.body_inertia[self.ids.paper_body].copy(),
        }

        self.action_space = gym.spaces.Box(
            self._low.astype(np.float32), self._high.astype(np.float32), dtype=np.float32
        )
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float32)

        self._state = np.zeros(OBS_DIM)  # float64 observation, kept for base policies
        self._target = self._home.copy()
        self._steps = 0
        self._draw: EpisodeDraw | None = None
        self._renderer: mujoco.Renderer | None = None

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> np.ndarray:
        """The latest task observation (OBS_DIM values) in float64 (what base policies read)."""
        return self._state

    @property
    def current_target(self) -> np.ndarray:
        """The joint targets last sent to the actuators (the home pose right after reset)."""
        return self._target

    @property
    def episode_draw(self) -> EpisodeDraw | None:
        return self._draw

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**63 - 1))
        self._draw = sample_episode(self.config.randomization, np.random.default_rng(episode_seed))
        self._apply_draw(self._draw)

        data = self.data
        mujoco.mj_resetData(self.model, data)
        data.qpos[self._qpos] = self._home
        half_yaw = 0.5 * self._draw.paper_yaw
        data.qpos[self._paper_qpos] = (
            self._draw.paper_x,
            self._draw.paper_y,
            self.config.physics.paper_half_thickness,
            math.cos(half_yaw),
            0.0,
            0.0,
            math.sin(half_yaw),
        )
        self._target = self._home.copy()
        data.ctrl[self._ctrl] = self._target
        if self.config.task.settle_steps:
            mujoco.mj_step(self.model, data, nstep=self.config.task.settle_steps)
        else:
            mujoco.mj_forward(self.model, data)
        self._steps = 0
        self._success_step = None
        self._update_state()
        result = self._evaluate()
        info = {"episode_seed": episode_seed, "dr": self._draw.to_dict(), **self._task_info(result, False)}
        return self._state.astype(np.float32), info

    def place(self, joint_angles: np.ndarray | None = None, sheet_xy_yaw: tuple[float, float, float] | None = None):
        """Put the arm (holding its targets there) and the sheet at rest where given, after a reset:
        a replay of a real robot's episode starts from its recorded joints, not from our home pose."""
        data = self.data
        if joint_angles is not None:
            angles = np.asarray(joint_angles, dtype=np.float64).reshape(6)
            data.qpos[self._qpos] = angles
            data.qvel[self._qvel] = 0.0
            self._target = np.minimum(np.maximum(angles, self._low), self._high)
            data.ctrl[self._ctrl] = self._target
        if sheet_xy_yaw is not None:
            x, y, yaw = (float(v) for v in sheet_xy_yaw)
            half = 0.5 * yaw
            pose = (x, y, self.config.physics.paper_half_thickness, math.cos(half), 0.0, 0.0, math.sin(half))
            data.qpos[self._paper_qpos] = pose
            data.qvel[self.ids.paper_dof : self.ids.paper_dof + 6] = 0.0  # the free joint: linear and angular
        mujoco.mj_forward(self.model, data)
        self._update_state()
        return self._state.astype(np.float32)

    def step(self, action):
        target = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), self._low), self._high)
        self._target = target
        data = self.data
        data.ctrl[self._ctrl] = target
        time_before = data.time
        started = thread_time()
        mujoco.mj_step(self.model, data, nstep=self.substeps)
        self.physics_seconds += thread_time() - started
        self.physics_steps += 1
        self._steps += 1

        unstable = self._unstable(time_before)
        if not unstable:
            self._update_state()
        result = self._evaluate()
        inside = result.success and not unstable
        if inside and self._success_step is None:
            self._success_step = self._steps
        if self._settle == 0:  # end at the first success (the training default)
            success = inside
            terminated = bool(success or unstable)
        else:  # success that holds: judged settle steps after the first success, inside and slow
            settled = self._success_step is not None and self._steps - self._success_step >= self._settle
            success = settled and inside and self._sheet_speed_sq() <= self._settle_speed_sq
            terminated = bool(settled or unstable)
        weights = self.config.reward
        terms = {
            "success": weights.success if success else 0.0,
            "distance": weights.distance * result.distance,
            "orientation": weights.orientation * abs(result.yaw_error),
            "residual": 0.0,
            "time": weights.time,
        }
        reward = float(sum(terms.values()))
        # A settle phase under way runs to its end, past max_steps if need be.
        settling = self._success_step is not None
        truncated = bool(not terminated and not settling and self._steps >= self.config.task.max_steps)
        info = self._task_info(result, unstable)
        info["success"] = success
        info["success_once"] = settling
        for name, value in terms.items():
            info[REWARD_INFO_KEYS[name]] = value
        return self._state.astype(np.float32), reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=480, width=640)
        self._renderer.update_scene(self.data, camera=self.ids.top_camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ internals
    def _apply_draw(self, draw: EpisodeDraw) -> None:
        model, ids, nominal = self.model, self.ids, self._nominal
        # The sheet's surface grip scales both its own friction and the fingertip-sheet grip.
        model.geom_friction[ids.paper_geom, 0] = nominal["paper_friction"] * draw.paper_friction_scale
        model.geom_friction[ids.pad_geoms, 0] = nominal["pad_friction"] * draw.paper_friction_scale
        model.geom_friction[ids.table_geoms, 0] = nominal["table_friction"] * draw.table_friction_scale
        model.body_mass[ids.paper_body] = nominal["paper_mass"] * draw.paper_mass_scale
        model.body_inertia[ids.paper_body] = nominal["paper_inertia"] * draw.paper_mass_scale

    def _update_state(self) -> None:
        data, state = self.data, self._state
        state[QPOS] = data.qpos[self._qpos]
        state[QVEL] = data.qvel[self._qvel]
        state[SHEET_POSE] = data.qpos[self._paper_qpos]
        state[GOAL_VEC] = self._goal - state[SHEET_POS]
        state[FINGERTIP] = data.site_xpos[self.ids.fingertip_site]

    def _unstable(self, time_before: float) -> bool:
        """True when the physics diverged during the last control step.

        MuJoCo checks every step for NaN/huge qpos, qvel and qacc and, finding one, resets
        mjData (warning counters set, time back to 0). So a clock that did not advance is
        the cheap exact signal; a sheet flying off faster than ``max_paper_speed`` catches
        blow-ups that stay finite.
        """
        if self.data.time <= time_before:
            return True
        speed = self.data.qvel[self._paper_qvel]
        return bool(speed @ speed > self._max_speed_sq)

    def _sheet_speed_sq(self) -> float:
        v = self.data.qvel[self._paper_qvel]
        return float(v[0] * v[0] + v[1] * v[1])

    @property
    def sheet_speed(self) -> float:
        """Planar speed of the sheet centre (m/s), what the settle test compares with settle_max_speed."""
        return math.sqrt(self._sheet_speed_sq())

    @property
    def sheet_velocity(self) -> np.ndarray:
        """The sheet's planar velocity (x, y in m/s, world frame) and yaw rate (rad/s)."""
        dof = self.ids.paper_dof  # 3 linear (world frame), then 3 angular (body frame: its z ~ world z)
        v = self.data.qvel
        return np.array([v[dof], v[dof + 1], v[dof + 5]])

    @property
    def pad_force(self) -> float:
        """Normal force (N) of the fingertip pads on the sheet at the last physics step, summed
        over their contacts; 0 when they do not touch it."""
        ncon = self.data.ncon
        if ncon == 0:
            return 0.0
        contacts = self.data.contact
        g1, g2 = contacts.geom1[:ncon], contacts.geom2[:ncon]
        paper, pads = self.ids.paper_geom, self.ids.pad_geoms
        touching = ((g1 == paper) & np.isin(g2, pads)) | ((g2 == paper) & np.isin(g1, pads))
        force = np.zeros(6)
        total = 0.0
        for i in np.flatnonzero(touching):
            mujoco.mj_contactForce(self.model, self.data, int(i), force)
            total += float(force[0])
        return total

    @property
    def steps(self) -> int:
        """Control steps taken in this episode."""
        return self._steps

    @property
    def success_step(self) -> int | None:
        """The control step of the episode's first success (None before it)."""
        return self._success_step

    def instability_warnings(self) -> dict[str, int]:
        """MuJoCo's own counters, for diagnosing an episode that ended with sim_unstable."""
        return {mujoco.mjtWarning(w).name: int(self.data.warning[w].number) for w in _INSTABILITY_WARNINGS}

    def _evaluate(self):
        state = self._state
        return self.frame.evaluate(state[SHEET_XY], quat_to_yaw(state[SHEET_QUAT].tolist()), self.paper_size)

    def _task_info(self, result, unstable: bool) -> dict[str, Any]:
        return {
            "success": result.success,
            "corner_error_mm": result.corner_error_mm,
            "corner_excess_mm": result.corner_excess_mm,
            "distance": result.distance,
            "yaw_error": result.yaw_error,
            "sim_unstable": unstable,
            "step": self._steps,
        }
