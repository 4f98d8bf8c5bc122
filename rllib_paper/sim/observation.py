"""The observation layout in one place: named fields, their slices, units and normaliser.

The task observation (PaperSquareEnv, 25 values) is the arm's joint angles and velocities,
the sheet's pose, the vector from the sheet to the frame centre and the fingertip position;
the residual observation (ResidualPaperEnv, 31 values) appends the base policy's joint
target the residual is about to correct. Positions are in the world frame (metres; the
origin is the robot base on the table top, +x forward, +z up), the quaternion is MuJoCo's
(w, x, y, z); the goal vector's z is the sheet's resting height minus its centre's height.

Code indexes observations through the named slices here (``QPOS``, ``SHEET_POS``, ...),
never through literal indices; the env docstrings carry the index table that
``observation_table`` renders, and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from rllib_paper.config import OBSERVE_CHOICES, EnvConfig
from rllib_paper.sim.scene import JOINT_NAMES

_XYZ = ("x", "y", "z")


@dataclass(frozen=True)
class ObsField:
    """A run of observation values: ``slice`` into the observation, one meaning per value."""

    name: str
    slice: slice
    meanings: tuple[str, ...]
    unit: str

    def __post_init__(self) -> None:
        if self.slice.stop - self.slice.start != len(self.meanings):
            raise ValueError(f"observation field {self.name!r}: {len(self.meanings)} meanings for {self.slice}")


def _fields(*specs: tuple[str, tuple[str, ...], str], start: int = 0) -> tuple[ObsField, ...]:
    """Consecutive fields from (name, meanings, unit), each starting where the last ended."""
    out = []
    for name, meanings, unit in specs:
        out.append(ObsField(name, slice(start, start + len(meanings)), meanings, unit))
        start += len(meanings)
    return tuple(out)


TASK_FIELDS = _fields(
    ("qpos", tuple(f"{joint} joint angle" for joint in JOINT_NAMES), "angle (rad)"),
    ("qvel", tuple(f"{joint} joint velocity" for joint in JOINT_NAMES), "angular velocity (rad/s)"),
    ("sheet_pos", tuple(f"sheet centre {axis}" for axis in _XYZ), "position (m)"),
    ("sheet_quat", tuple(f"sheet orientation quaternion {c}" for c in "wxyz"), "unitless"),
    ("goal_vec", tuple(f"goal vector {axis}: frame centre - sheet centre" for axis in _XYZ), "position (m)"),
    ("fingertip", tuple(f"fingertip site {axis}" for axis in _XYZ), "position (m)"),
)
OBS_DIM = TASK_FIELDS[-1].slice.stop  # 25: the PaperSquareEnv observation
RESIDUAL_FIELDS = TASK_FIELDS + _fields(
    ("base_action", tuple(f"base policy's {joint} joint target" for joint in JOINT_NAMES), "angle (rad)"),
    start=OBS_DIM,
)
RESIDUAL_OBS_DIM = RESIDUAL_FIELDS[-1].slice.stop  # 31: the ResidualPaperEnv observation
FIELDS = {f.name: f for f in RESIDUAL_FIELDS}


# Values a residual may also observe (``env.residual.observe``), appended after the 31 in the
# order the config lists them: per name its meanings, unit and normaliser (centre, scale).
@dataclass(frozen=True)
class OptionalObservation:
    meanings: tuple[str, ...]
    unit: str
    center: tuple[float, ...]
    scale: tuple[float, ...]


OPTIONAL_OBSERVATIONS: dict[str, OptionalObservation] = {
    "time_left": OptionalObservation(
        ("share of the episode's max_steps still to run (1 at reset)",), "unitless", (0.5,), (0.5,)
    ),
    "chunk_step": OptionalObservation(
        ("executed targets of the base's current chunk before this one / execution horizon",),
        "unitless",
        (0.5,),
        (0.5,),
    ),
    # Scales from pusher episodes (phase 2): the pads press with 0.5-2 N (median), 9 N at the 90th
    # percentile; the sheet moves at up to 0.1-0.2 m/s and turns at up to 1 rad/s.
    "pad_force": OptionalObservation(
        ("normal force of the fingertip pads on the sheet, summed over their contacts (0 without contact)",),
        "force (N)",
        (0.0,),
        (3.0,),
    ),
    "sheet_velocity": OptionalObservation(
        ("sheet centre x velocity", "sheet centre y velocity", "sheet yaw rate"),
        "velocity (m/s, m/s, rad/s)",
        (0.0, 0.0, 0.0),
        (0.05, 0.05, 0.5),
    ),
}
assert sorted(OPTIONAL_OBSERVATIONS) == sorted(OBSERVE_CHOICES)

QPOS = FIELDS["qpos"].slice
QVEL = FIELDS["qvel"].slice
SHEET_POS = FIELDS["sheet_pos"].slice
SHEET_QUAT = FIELDS["sheet_quat"].slice
GOAL_VEC = FIELDS["goal_vec"].slice
FINGERTIP = FIELDS["fingertip"].slice
BASE_ACTION = FIELDS["base_action"].slice
SHEET_XY = slice(SHEET_POS.start, SHEET_POS.start + 2)  # the sheet centre in the table plane
SHEET_POSE = slice(SHEET_POS.start, SHEET_QUAT.stop)  # position then quaternion: the sheet's free-joint qpos
assert SHEET_POS.stop == SHEET_QUAT.start


# Per field: (centre, scale) of the fixed affine map the residual network's input goes
# through; "home" stands for the task's home pose. Typical magnitudes, not statistics:
# joint angles around the home pose in half radians, velocities in 2 rad/s, positions in
# decimetres around the workspace (the sheet's height in centimetres), quaternions as is. The
# committed residual checkpoints hold these numbers: changing one changes their inputs.
_NORMALIZER: dict[str, tuple[tuple[float, ...] | str, tuple[float, ...]]] = {
    "qpos": ("home", (0.5,) * 6),
    "qvel": ((0.0,) * 6, (2.0,) * 6),
    "sheet_pos": ((0.25, 0.0, 0.0), (0.1, 0.1, 0.01)),
    "sheet_quat": ((0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0)),
    "goal_vec": ((-0.1, 0.0, 0.0), (0.1, 0.1, 0.01)),
    "fingertip": ((0.2, 0.0, 0.05), (0.1, 0.1, 0.1)),
    "base_action": ("home", (0.5,) * 6),
}


def observation_normalizer(config: EnvConfig | None = None) -> tuple[list[float], list[float]]:
    """A fixed (center, scale) per residual-observation value, for the policy network's input.

    Fixed, so a checkpoint needs no running-filter state (see residual/rl_module.py).
    """
    home = list((config or EnvConfig()).task.home_qpos)
    center: list[float] = []
    scale: list[float] = []
    for f in RESIDUAL_FIELDS:
        field_center, field_scale = _NORMALIZER[f.name]
        center += home if field_center == "home" else field_center
        scale += field_scale
    for name in (config or EnvConfig()).residual.observe:
        center += OPTIONAL_OBSERVATIONS[name].center
        scale += OPTIONAL_OBSERVATIONS[name].scale
    assert len(center) == len(scale) == residual_obs_dim(config)
    return center, scale


def residual_fields(config: EnvConfig | None = None) -> tuple[ObsField, ...]:
    """The residual observation's fields for ``config``: the 31, then ``residual.observe``'s."""
    extra = [(name, *_meanings_and_unit(name)) for name in _observe(config)]
    return RESIDUAL_FIELDS + _fields(*extra, start=RESIDUAL_OBS_DIM)


def _meanings_and_unit(name: str) -> tuple[tuple[str, ...], str]:
    optional = OPTIONAL_OBSERVATIONS[name]
    return optional.meanings, optional.unit


def residual_obs_dim(config: EnvConfig | None = None) -> int:
    return RESIDUAL_OBS_DIM + sum(len(OPTIONAL_OBSERVATIONS[name].meanings) for name in _observe(config))


def _observe(config: EnvConfig | None) -> tuple[str, ...]:
    return (config or EnvConfig()).residual.observe


def observation_table(fields: tuple[ObsField, ...] = TASK_FIELDS) -> str:
    """The index table of ``fields`` (Gymnasium-Robotics style: index, meaning, unit), as markdown."""
    rows = [(str(i), meaning, f.unit) for f in fields for i, meaning in enumerate(f.meanings, f.slice.start)]
    header = ("index", "meaning", "unit")
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(3)]

    def line(cells) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)])


__all__ = [
    "BASE_ACTION",
    "FIELDS",
    "FINGERTIP",
    "GOAL_VEC",
    "OBS_DIM",
    "OPTIONAL_OBSERVATIONS",
    "QPOS",
    "QVEL",
    "RESIDUAL_FIELDS",
    "RESIDUAL_OBS_DIM",
    "SHEET_POS",
    "SHEET_POSE",
    "SHEET_QUAT",
    "SHEET_XY",
    "TASK_FIELDS",
    "ObsField",
    "observation_normalizer",
    "observation_table",
    "residual_fields",
    "residual_obs_dim",
]
