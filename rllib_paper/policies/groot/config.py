"""The sim <-> GR00T mapping as typed, validated configuration (one YAML per data config).

Everything that differs between GR00T fine-tunes is here, never in code: the modality keys
and which sim joints each carries (in which order), units (radians, degrees, -100..100,
gripper 0..100), calibration offsets and signs, gripper polarity, the cameras and their
image size and colour order, the task string, absolute or relative actions, and the
execution horizon k. Shipped files live in ``configs/`` and are found by name
(``so100``, ``so100_dualcam``, ``arm0_dualcam``); any other path to a YAML works too.

Conventions, per sim joint i (radians, the MuJoCo joint angle):

* calibrated angle ``c = sign[i] * (q - offset[i])`` (radians);
* ``radians``: c; ``degrees``: degrees(c); ``range100``: c mapped linearly from
  ``joint_ranges[i]`` (calibrated radians) onto [-100, 100]; ``percent`` (gripper only):
  c mapped onto [0, 100], 100 = open when ``gripper_open_is_high`` (else 0 = open).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from rllib_paper.config import ConfigError, load_yaml
from rllib_paper.sim.scene import JOINT_NAMES

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ARM_UNITS = ("radians", "degrees", "range100")
GRIPPER_UNITS = ("radians", "degrees", "range100", "percent")
CAMERAS = ("top_view", "so101/wrist_view")
COLOR_ORDERS = ("RGB", "BGR")
ACTION_MODES = ("absolute", "relative")


@dataclass(frozen=True)
class KeyGroup:
    """One GR00T modality key and the sim joints it carries, in its column order."""

    key: str
    joints: tuple[str, ...]


@dataclass(frozen=True)
class CameraKey:
    """One GR00T video key and the MuJoCo camera rendered into it, optionally moved to match a
    real rig: ``pos`` (m) and ``xyaxes`` (the image's right and up directions) in the camera's
    parent frame (the world for ``top_view``, the gripper for the wrist camera), ``fovy`` (deg)."""

    key: str
    camera: str
    pos: tuple[float, float, float] | None = None
    xyaxes: tuple[float, ...] | None = None
    fovy: float | None = None

    def __post_init__(self) -> None:
        where = f"groot.cameras[{self.key}]"
        if self.pos is not None:
            if len(self.pos) != 3:
                raise ConfigError(f"{where}.pos={list(self.pos)!r}: expected [x, y, z] in metres")
            for i, v in enumerate(self.pos):
                _finite(f"{where}.pos[{i}]", v, -5.0, 5.0)
        if self.xyaxes is not None:
            axes = np.asarray(self.xyaxes, dtype=float)
            if axes.shape != (6,) or not np.isfinite(axes).all():
                raise ConfigError(f"{where}.xyaxes={list(self.xyaxes)!r}: expected 6 finite numbers (x axis, y axis)")
            x, y = axes[:3], axes[3:]
            if (
                np.linalg.norm(x) < 1e-9
                or np.linalg.norm(y) < 1e-9
                or abs(np.dot(x, y)) > 1e-6 * np.linalg.norm(x) * np.linalg.norm(y)
            ):
                raise ConfigError(f"{where}.xyaxes={list(self.xyaxes)!r}: the two axes must be non-zero and orthogonal")
        if self.fovy is not None:
            _finite(f"{where}.fovy", self.fovy, 1.0, 179.0)

    def quat(self) -> np.ndarray | None:
        """The camera orientation ``xyaxes`` gives, as MuJoCo's (w, x, y, z) quaternion."""
        if self.xyaxes is None:
            return None
        axes = np.asarray(self.xyaxes, dtype=float)
        x, y = axes[:3] / np.linalg.norm(axes[:3]), axes[3:] / np.linalg.norm(axes[3:])
        rotation = np.column_stack([x, y, np.cross(x, y)])
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, rotation.ravel())
        return quat


@dataclass(frozen=True)
class GrootMappingConfig:
    name: str
    state: tuple[KeyGroup, ...]
    action: tuple[KeyGroup, ...]
    cameras: tuple[CameraKey, ...]
    embodiment_tag: str = "new_embodiment"
    data_config: str = "so100_dualcam"
    task_description: str = "Push the sheet of paper back into the taped frame."
    language_key: str = "annotation.human.task_description"
    arm_units: str = "degrees"
    gripper_units: str = "percent"
    joint_offsets: tuple[float, ...] = (0.0,) * 6
    joint_signs: tuple[float, ...] = (1.0,) * 6
    # Calibrated radians per joint for range100/percent; None: the SO-101 actuator ranges.
    joint_ranges: tuple[tuple[float, float], ...] | None = None
    gripper_open_is_high: bool = True
    color_order: str = "RGB"
    image_size: tuple[int, int] = (480, 640)  # (height, width) as sent
    render_shadows: bool = True  # shadow maps: realistic, but ~3x the render time on a CPU
    render_samples: int | None = None  # offscreen multisampling; None keeps the model's (4)
    # Fraction of the arm's visual-mesh triangles drawn (quadric decimation; physics untouched):
    # a CPU renderer's cost is geometry; at 224 x 224 a tenth keeps the shapes (results/groot_frames/).
    render_detail: float = 1.0
    action_mode: str = "absolute"
    action_horizon: int = 16
    execution_horizon: int = 8
    # Not part of GR00T: when set, the client also sends the 25-D sim state and the 6-D last
    # target under this key (and ``<key>_target``), so our stand-in server can run the
    # scripted pusher. Leave it null for a real GR00T model.
    sim_state_key: str | None = None

    def __post_init__(self) -> None:
        p = f"groot[{self.name}]"
        _finite(f"{p}.render_detail", self.render_detail, 0.001, 1.0)
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"groot.name={self.name!r}: expected a non-empty string")
        for section in ("state", "action"):
            groups = getattr(self, section)
            if not groups:
                raise ConfigError(f"{p}.{section}=[]: at least one key group is required")
            seen: list[str] = []
            for i, group in enumerate(groups):
                if not group.key.startswith(f"{section}."):
                    raise ConfigError(f"{p}.{section}[{i}].key={group.key!r}: must start with '{section}.'")
                for joint in group.joints:
                    if joint not in JOINT_NAMES:
                        raise ConfigError(f"{p}.{section}[{i}].joints: {joint!r} is not one of {list(JOINT_NAMES)}")
                    if joint in seen:
                        raise ConfigError(f"{p}.{section}[{i}].joints: {joint!r} appears twice")
                    seen.append(joint)
            if section == "state" and sorted(seen) != sorted(JOINT_NAMES):
                missing = sorted(set(JOINT_NAMES) - set(seen))
                raise ConfigError(f"{p}.state: joints {missing} are missing; the state must carry all 6")
        for i, cam in enumerate(self.cameras):
            if not cam.key.startswith("video."):
                raise ConfigError(f"{p}.cameras[{i}].key={cam.key!r}: must start with 'video.'")
            if cam.camera not in CAMERAS:
                raise ConfigError(f"{p}.cameras[{i}].camera={cam.camera!r}: allowed values are {list(CAMERAS)}")
        _choice(f"{p}.arm_units", self.arm_units, ARM_UNITS)
        _choice(f"{p}.gripper_units", self.gripper_units, GRIPPER_UNITS)
        _choice(f"{p}.color_order", self.color_order, COLOR_ORDERS)
        _choice(f"{p}.action_mode", self.action_mode, ACTION_MODES)
        if len(self.joint_offsets) != 6:
            raise ConfigError(f"{p}.joint_offsets={list(self.joint_offsets)!r}: expected 6 values (radians)")
        for i, v in enumerate(self.joint_offsets):
            _finite(f"{p}.joint_offsets[{i}]", v, -2 * math.pi, 2 * math.pi)
        if len(self.joint_signs) != 6 or any(s not in (1, -1) for s in self.joint_signs):
            raise ConfigError(f"{p}.joint_signs={list(self.joint_signs)!r}: expected 6 values, each 1 or -1")
        if self.joint_ranges is not None:
            if len(self.joint_ranges) != 6:
                raise ConfigError(f"{p}.joint_ranges: expected 6 [low, high] pairs (calibrated radians)")
            for i, pair in enumerate(self.joint_ranges):
                if len(pair) != 2:
                    raise ConfigError(f"{p}.joint_ranges[{i}]={list(pair)!r}: expected [low, high]")
                _finite(f"{p}.joint_ranges[{i}][0]", pair[0], -2 * math.pi, 2 * math.pi)
                _finite(f"{p}.joint_ranges[{i}][1]", pair[1], -2 * math.pi, 2 * math.pi)
                if pair[1] <= pair[0]:
                    raise ConfigError(f"{p}.joint_ranges[{i}]={list(pair)!r}: low must be below high")
        if len(self.image_size) != 2:
            raise ConfigError(f"{p}.image_size={list(self.image_size)!r}: expected [height, width]")
        for i, v in enumerate(self.image_size):
            if not isinstance(v, int) or isinstance(v, bool) or not 16 <= v <= 2048:
                raise ConfigError(f"{p}.image_size[{i}]={v!r}: allowed range is [16, 2048] pixels")
        for name, low, high in (("action_horizon", 1, 1000), ("execution_horizon", 1, 1000)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
                raise ConfigError(f"{p}.{name}={v!r}: allowed range is [{low}, {high}]")
        if self.execution_horizon > self.action_horizon:
            raise ConfigError(
                f"{p}.execution_horizon={self.execution_horizon}: allowed range is [1, {self.action_horizon}] "
                "(at most action_horizon)"
            )
        if not isinstance(self.render_shadows, bool):
            raise ConfigError(f"{p}.render_shadows={self.render_shadows!r}: expected true or false")
        if self.render_samples is not None and (
            not isinstance(self.render_samples, int)
            or isinstance(self.render_samples, bool)
            or not 0 <= self.render_samples <= 16
        ):
            raise ConfigError(f"{p}.render_samples={self.render_samples!r}: allowed range is [0, 16] (or null)")
        if not isinstance(self.gripper_open_is_high, bool):
            raise ConfigError(f"{p}.gripper_open_is_high={self.gripper_open_is_high!r}: expected true or false")
        if self.sim_state_key is not None and not (
            isinstance(self.sim_state_key, str) and self.sim_state_key.startswith("state.")
        ):
            raise ConfigError(f"{p}.sim_state_key={self.sim_state_key!r}: expected null or a 'state.' key")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GrootMappingConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"groot mapping: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown key groot.{unknown[0]}: allowed keys are {sorted(known)}")
        for required in ("name", "state", "action", "cameras"):
            if required not in data:
                raise ConfigError(f"groot.{required} is missing")
        kwargs = dict(data)
        kwargs["state"] = _groups("state", data["state"])
        kwargs["action"] = _groups("action", data["action"])
        kwargs["cameras"] = _cameras(data["cameras"])
        for name in ("joint_offsets", "joint_signs", "image_size"):
            if name in kwargs:
                kwargs[name] = _tuple(name, kwargs[name])
        if kwargs.get("joint_ranges") is not None:
            ranges = _tuple("joint_ranges", kwargs["joint_ranges"])
            kwargs["joint_ranges"] = tuple(_tuple(f"joint_ranges[{i}]", r) for i, r in enumerate(ranges))
        if "joint_offsets" in kwargs:
            kwargs["joint_offsets"] = tuple(float(v) for v in kwargs["joint_offsets"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> GrootMappingConfig:
        """A copy with some top-level fields changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = sorted(set(changes) - set(values))
        if unknown:
            raise ConfigError(f"unknown key groot.{unknown[0]}: allowed keys are {sorted(values)}")
        values.update(changes)
        return GrootMappingConfig(**values)


def shipped_mappings() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_mapping(name_or_path: str | Path) -> GrootMappingConfig:
    """A shipped mapping by name (``so100_dualcam``) or any YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"groot config={name_or_path!r}: shipped mappings are {shipped_mappings()}, or give a YAML path"
            )
    elif not path.is_file():
        raise ConfigError(f"groot config={str(name_or_path)!r}: no such file")
    return GrootMappingConfig.from_dict(load_yaml(path))


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: allowed values are {list(allowed)}")


def _finite(name: str, value: Any, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}: expected a finite number")
    if not low <= value <= high:
        raise ConfigError(f"{name}={value!r}: allowed range is [{low:.4g}, {high:.4g}]")


def _tuple(name: str, value: Any) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"groot.{name}={value!r}: expected a list")
    return tuple(value)


def _groups(section: str, value: Any) -> tuple[KeyGroup, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"groot.{section}={value!r}: expected a list of {{key, joints}}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ConfigError(f"groot.{section}[{i}]={item!r}: expected a mapping with key and joints")
        unknown = sorted(set(item) - {"key", "joints"})
        if unknown:
            raise ConfigError(f"unknown key groot.{section}[{i}].{unknown[0]}: allowed keys are ['joints', 'key']")
        if not isinstance(item.get("key"), str) or not isinstance(item.get("joints"), (list, tuple)):
            raise ConfigError(f"groot.{section}[{i}]: expected a string 'key' and a list 'joints'")
        out.append(KeyGroup(key=item["key"], joints=tuple(item["joints"])))
    return tuple(out)


def _cameras(value: Any) -> tuple[CameraKey, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"groot.cameras={value!r}: expected a list of {{key, camera}}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ConfigError(f"groot.cameras[{i}]={item!r}: expected a mapping with key and camera")
        allowed = ("camera", "fovy", "key", "pos", "xyaxes")
        unknown = sorted(set(item) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown key groot.cameras[{i}].{unknown[0]}: allowed keys are {list(allowed)}")
        if not isinstance(item.get("key"), str) or not isinstance(item.get("camera"), str):
            raise ConfigError(f"groot.cameras[{i}]: expected string 'key' and 'camera'")
        pose = {
            k: (tuple(item[k]) if k != "fovy" else item[k])
            for k in ("pos", "xyaxes", "fovy")
            if item.get(k) is not None
        }
        out.append(CameraKey(key=item["key"], camera=item["camera"], **pose))
    return tuple(out)
