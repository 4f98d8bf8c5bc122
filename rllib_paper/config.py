"""Typed, validated configuration for the paper-return task.

Every value a user can set lives in one of these frozen dataclasses. They are
validated when constructed, so a bad value fails at the call site with one
error naming the field, the value and the allowed range, instead of surfacing
later as a strange physics result deep inside a Ray worker. ``from_dict``
builds them from YAML/JSON mappings and rejects unknown keys for the same
reason: a typo in a sweep file must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of its allowed range."""


def _check_range(
    name: str, value: float, low: float | None = None, high: float | None = None, *, low_open: bool = False
) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}: expected a finite number")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and value > high
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name}={value!r}: allowed range is {bracket}{lo}, {hi}]")


def _check_interval(
    name: str, interval: tuple[float, float], low: float | None = None, high: float | None = None
) -> None:
    if len(interval) != 2:
        raise ConfigError(f"{name}={interval!r}: expected [min, max]")
    lo, hi = interval
    _check_range(f"{name}[0]", lo, low, high)
    _check_range(f"{name}[1]", hi, low, high)
    if lo > hi:
        raise ConfigError(f"{name}={list(interval)!r}: min {lo} is greater than max {hi}")


@dataclass(frozen=True)
class PhysicsConfig:
    """Solver and contact numbers from the seed report (docs/task.md, "Physics choices and why")."""

    timestep: float = 0.001
    control_hz: float = 30.0
    paper_size: tuple[float, float] = (0.148, 0.210)  # A5, metres; long side along the sheet's y
    paper_half_thickness: float = 0.000075
    paper_mass: float = 0.005
    paper_friction: tuple[float, float, float] = (0.60, 0.002, 0.0001)
    table_friction: float = 0.30
    tape_friction: float = 0.90
    # Fingertip-paper grip: rubber-like pads, the value the seed's gripper effectively had (MuJoCo
    # mixes by max). Above the tape's 0.90 so a pressed sheet can be dragged over the tape;
    # randomization.paper_friction_scale scales it with the sheet's own friction.
    pad_friction: float = 1.0

    def __post_init__(self) -> None:
        _check_range("physics.timestep", self.timestep, 1e-5, 0.01)
        _check_range("physics.control_hz", self.control_hz, 1.0, 1.0 / self.timestep)
        _check_range("physics.paper_size[0]", self.paper_size[0], 0.01, 1.0)
        _check_range("physics.paper_size[1]", self.paper_size[1], 0.01, 1.0)
        _check_range("physics.paper_half_thickness", self.paper_half_thickness, 1e-6, 0.01)
        _check_range("physics.paper_mass", self.paper_mass, 1e-5, 1.0)
        for i, v in enumerate(self.paper_friction):
            _check_range(f"physics.paper_friction[{i}]", v, 0.0, 5.0)
        _check_range("physics.table_friction", self.table_friction, 0.0, 5.0)
        _check_range("physics.tape_friction", self.tape_friction, 0.0, 5.0)
        _check_range("physics.pad_friction", self.pad_friction, 0.0, 5.0)

    @property
    def substeps(self) -> int:
        """Physics steps per control step: round(1 / (timestep * control_hz)), 33 at 1 kHz / 30 Hz."""
        return max(1, round(1.0 / (self.timestep * self.control_hz)))


@dataclass(frozen=True)
class TaskConfig:
    """Where the frame is, what counts as success, and how long an episode lasts.

    The frame sits at (0.16, 0.0), long axis along world y, in front of the robot.
    Every randomized start lies at x >= 0.20 (phase 2) or 0.25 (phase 1), so the
    sheet must be drawn back toward the robot by 4 to 25 cm and no start is
    already inside the tape (tests/test_task.py checks the DR box corners).
    At x = 0.16 the fingertip reaches the whole framed area pointing down.
    """

    frame_xy: tuple[float, float] = (0.16, 0.0)
    frame_inner_size: tuple[float, float] = (0.148, 0.210)  # A5 inner area, long side along y
    tape_width: float = 0.020
    # Corners must lie inside the inner area grown by this margin; the default is the
    # whole tape width ("inside the outer edge of the tape").
    success_margin: float = 0.020
    max_steps: int = 400
    settle_steps: int = 100  # physics steps at reset so the sheet rests before the first observation
    # Fingertip 10 cm above the table at x = 0.18, jaws tilted 30 deg forward, jaws closed
    # (-0.17 rad) so the two jaw tips form one fingertip.
    home_qpos: tuple[float, ...] = (0.0, -1.116, 0.729, 1.426, 0.0, -0.17)
    max_paper_speed: float = 5.0  # m/s; faster than this means the solver blew up
    camera_fovy: float = 140.0  # degrees, the wrist camera (the seed's lens)
    # degrees, the top camera: 62 at 0.47 m frames the arm, the taped frame and the whole
    # phase-2 start box (assets/paper_scene.xml); the seed's 140 left them a tenth of the image
    top_camera_fovy: float = 62.0
    # Success that holds: with N > 0 the episode does not end at the first success but runs N more
    # control steps (base policy and residual keep acting; the phase may run past max_steps), and
    # succeeds only if the sheet is then still inside and its centre moves slower than
    # settle_max_speed (m/s, planar speed of the sheet centre). 0 = end at the first success
    # (training's default); evaluation sets 30 (1 s at 30 Hz, `rllib-paper eval --settle-steps`).
    settle_after_success_steps: int = 0
    settle_max_speed: float = 0.02  # m/s: 2 cm/s, a sheet at rest, not one still sliding

    def __post_init__(self) -> None:
        _check_range("task.frame_xy[0]", self.frame_xy[0], 0.05, 0.5)
        _check_range("task.frame_xy[1]", self.frame_xy[1], -0.4, 0.4)
        _check_range("task.frame_inner_size[0]", self.frame_inner_size[0], 0.01, 1.0)
        _check_range("task.frame_inner_size[1]", self.frame_inner_size[1], 0.01, 1.0)
        _check_range("task.tape_width", self.tape_width, 0.0, 0.2)
        _check_range("task.success_margin", self.success_margin, 0.0, self.tape_width)
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ConfigError(f"task.max_steps={self.max_steps!r}: allowed range is [1, inf) integers")
        if not isinstance(self.settle_steps, int) or not 0 <= self.settle_steps <= 10_000:
            raise ConfigError(f"task.settle_steps={self.settle_steps!r}: allowed range is [0, 10000] integers")
        if len(self.home_qpos) != 6:
            raise ConfigError(f"task.home_qpos={self.home_qpos!r}: expected 6 joint angles")
        _check_range("task.max_paper_speed", self.max_paper_speed, 0.0, 100.0, low_open=True)
        _check_range("task.camera_fovy", self.camera_fovy, 1.0, 179.0)
        _check_range("task.top_camera_fovy", self.top_camera_fovy, 1.0, 179.0)
        if not isinstance(self.settle_after_success_steps, int) or not 0 <= self.settle_after_success_steps <= 10_000:
            raise ConfigError(
                f"task.settle_after_success_steps={self.settle_after_success_steps!r}: "
                "allowed range is [0, 10000] integers"
            )
        _check_range("task.settle_max_speed", self.settle_max_speed, 0.0, 10.0, low_open=True)


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the seed's reward terms; each term is also reported on its own in ``info``."""

    success: float = 10.0
    distance: float = -2.0
    orientation: float = -0.1
    residual: float = -0.001
    time: float = -0.01

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_range(f"reward.{f.name}", getattr(self, f.name), -1e3, 1e3)


# What residual.observe may add (sim/observation.py: meanings, units, normaliser)
OBSERVE_CHOICES = ("chunk_step", "pad_force", "sheet_velocity", "time_left")


@dataclass(frozen=True)
class ResidualConfig:
    """target = base target + alpha * scale * residual, residual in [-1, 1]^6."""

    alpha: float = 0.7
    scale: float = 0.02  # radians
    base_policy: str = "zero"
    # Values appended to the residual's 31-D observation, in this order (sim/observation.py):
    # "time_left" (share of the episode's steps left: a value function cannot see a time limit
    # it is not shown), "chunk_step" (how far into the base's open-loop chunk this step is),
    # "pad_force" (the normal force the fingertip pads press the sheet with) and
    # "sheet_velocity" (the sheet's planar velocity and yaw rate): a slipping drag shows in the
    # last two one step before it shows in the pose.
    observe: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_range("residual.alpha", self.alpha, 0.0, 1.0)
        _check_range("residual.scale", self.scale, 0.0, 1.0)
        if not isinstance(self.base_policy, str) or not self.base_policy:
            raise ConfigError(f"residual.base_policy={self.base_policy!r}: expected a policy spec string")
        observe = self.observe
        if isinstance(observe, str) or not all(isinstance(name, str) for name in observe):
            raise ConfigError(f"residual.observe={observe!r}: expected a list of names")
        unknown = [name for name in observe if name not in OBSERVE_CHOICES]
        if unknown or len(set(observe)) != len(observe):
            raise ConfigError(
                f"residual.observe={list(observe)!r}: allowed names are {sorted(OBSERVE_CHOICES)}, each once"
            )
        object.__setattr__(self, "observe", tuple(observe))


@dataclass(frozen=True)
class RandomizationConfig:
    """Domain-randomization ranges, all drawn from the episode seed.

    Poses are absolute (metres, radians; yaw relative to the frame's long axis);
    physical properties are multiplicative scales on the nominal values.
    """

    paper_x: tuple[float, float] = (0.25, 0.35)
    paper_y: tuple[float, float] = (-0.10, 0.10)
    paper_yaw: tuple[float, float] = (-0.5, 0.5)
    paper_friction_scale: tuple[float, float] = (0.8, 1.2)
    table_friction_scale: tuple[float, float] = (0.8, 1.2)
    paper_mass_scale: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        _check_interval("randomization.paper_x", self.paper_x, -0.2, 0.6)
        _check_interval("randomization.paper_y", self.paper_y, -0.5, 0.5)
        _check_interval("randomization.paper_yaw", self.paper_yaw, -math.pi, math.pi)
        for name in ("paper_friction_scale", "table_friction_scale", "paper_mass_scale"):
            _check_interval(f"randomization.{name}", getattr(self, name), 0.0, 10.0)
            if getattr(self, name)[0] <= 0.0:
                raise ConfigError(f"randomization.{name}={list(getattr(self, name))!r}: scales must be > 0")


# Seed report presets. Phase 2 widens the start box, adds paper mass +-10 % and narrows table
# friction to +-10 %; paper friction keeps phase 1's +-20 %.
DR_PRESETS: dict[str, RandomizationConfig] = {
    "none": RandomizationConfig(
        paper_x=(0.30, 0.30),
        paper_y=(0.0, 0.0),
        paper_yaw=(0.0, 0.0),
        paper_friction_scale=(1.0, 1.0),
        table_friction_scale=(1.0, 1.0),
        paper_mass_scale=(1.0, 1.0),
    ),
    "phase1": RandomizationConfig(),
    "phase2": RandomizationConfig(
        paper_x=(0.20, 0.35),
        paper_y=(-0.15, 0.15),
        paper_yaw=(-0.5, 0.5),
        paper_friction_scale=(0.8, 1.2),
        table_friction_scale=(0.9, 1.1),
        paper_mass_scale=(0.9, 1.1),
    ),
}


def preset_name(randomization: RandomizationConfig) -> str:
    """The name of the preset these ranges are, or "custom"."""
    return next((name for name, preset in DR_PRESETS.items() if preset == randomization), "custom")


def dr_preset(name: str) -> RandomizationConfig:
    try:
        return DR_PRESETS[name]
    except KeyError:
        raise ConfigError(f"randomization={name!r}: allowed presets are {sorted(DR_PRESETS)}") from None


@dataclass(frozen=True)
class EnvConfig:
    """Everything one env instance needs; picklable so Ray can ship it to any worker."""

    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EnvConfig:
        return from_dict(cls, dict(data or {}))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def randomization_dict(value: Any) -> Any:
    """The ``randomization`` section as ranges: a preset name, or ``{preset: NAME, RANGE: [lo, hi], ...}``
    whose ranges replace the preset's (what DR sweeps vary), or plain ranges over phase 1's."""
    if isinstance(value, str):
        return dataclasses.asdict(dr_preset(value))
    if isinstance(value, Mapping) and "preset" in value:
        rest = {k: v for k, v in value.items() if k != "preset"}
        return {**dataclasses.asdict(dr_preset(value["preset"])), **rest}
    return value


def coerce_env_config(config: EnvConfig | Mapping[str, Any] | None, **sections: Any) -> EnvConfig:
    """An EnvConfig from an EnvConfig, a plain mapping (RLlib's env_config) or None, with whole
    sections replaced by keyword (``randomization="phase1"``, ``task={...}``, ``residual=ResidualConfig()``);
    ``dr`` is the short name of ``randomization``, as on the command line."""
    base = config.to_dict() if isinstance(config, EnvConfig) else dict(config or {})
    for key, value in sections.items():
        base["randomization" if key == "dr" else key] = dataclasses.asdict(value) if is_dataclass(value) else value
    return EnvConfig.from_dict(base)


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into nested dataclasses.

    Unknown keys raise ConfigError naming the dotted path, so misspelt YAML keys fail loudly.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}: allowed keys are {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        path = f"{prefix}.{name}" if prefix else name
        if hint is RandomizationConfig:
            value = randomization_dict(value)
        if is_dataclass(hint) and isinstance(value, Mapping):
            kwargs[name] = from_dict(hint, value, path)
        elif get_origin(hint) is tuple and isinstance(value, (list, tuple)):
            args = get_args(hint)
            if args and args[-1] is not Ellipsis and len(args) != len(value):
                raise ConfigError(f"{path}={list(value)!r}: expected {len(args)} values")
            kwargs[name] = tuple(
                float(v) if isinstance(v, int) and not isinstance(v, bool) and float in args else v for v in value
            )
        else:
            kwargs[name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------- one override syntax
def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars or lists: 3e-4, true, [64, 64], phase1."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse value {text!r}: {exc}") from None
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; users mean a number
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: Mapping[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` assignments to a nested mapping (unknown keys fail later, named).

    A section given by a preset name (``env.randomization: phase2``) opens as ``{preset: phase2}``
    when a key below it is set, so ``--set env.randomization.paper_x=[0.2,0.3]`` narrows a preset.
    """
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data))) or {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. ppo.lr=1e-4")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if isinstance(child, str):
                child = node[part] = {"preset": child}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(text)
    return result


def load_yaml(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data
