"""Drive the sim with a dataset episode's recorded actions: the sim-vs-real check.

    rllib-paper replay runs/demos --episode 3
    rllib-paper replay ~/datasets/paper_return --layout paper_return --episode 0 --sheet-start 0.25,0.05,0.3

Each recorded action (absolute joint targets) is sent to the sim at the dataset's frame rate
and the sim's joint angles are compared, frame by frame, with the recorded
``observation.state``: on a real robot's dataset the per-joint error is how far the sim's arm
(actuator gains, joint damping) is from the real one under the same commands. A dataset we
recorded carries ``meta/rllib_paper.json`` (env config) and each episode's seed, so its replay
starts from the same domain-randomization draw and reproduces the episode exactly (``exact``).
A dataset without a sheet pose replays the arm from its first recorded joint angles and the
sheet from ``sheet_start`` (x, y in metres, yaw in radians).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rllib_paper.config import ConfigError, coerce_env_config
from rllib_paper.datasets.lerobot import LeRobotDataset, read_dataset
from rllib_paper.datasets.record import SIM_META, TASK_STATE_KEY
from rllib_paper.envs.paper_env import PaperSquareEnv
from rllib_paper.sim.observation import QPOS, SHEET_POS, SHEET_QUAT
from rllib_paper.sim.task import quat_to_yaw

DEFAULT_SHEET_START = (0.25, 0.05, 0.35)  # x, y (m), yaw (rad): a displaced sheet inside the start box


@dataclass
class JointError:
    joint: str
    mean_abs_deg: float
    max_abs_deg: float
    final_deg: float


@dataclass
class ReplayResult:
    dataset: str
    episode: int
    frames: int
    fps: int
    seed: int | None  # None: a dataset we did not record (no seed, no DR draw)
    exact: bool | None  # every frame's recorded state reproduced bit for bit (our recordings only)
    joints: list[JointError]
    sheet_end: dict[str, float]  # x, y (m), yaw (deg) after the last action
    sheet_end_recorded: dict[str, float] | None  # the last recorded sheet pose (one frame earlier)
    inside_frame_at_end: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sheet(pos: np.ndarray, quat: np.ndarray) -> dict[str, float]:
    return {"x": float(pos[0]), "y": float(pos[1]), "yaw_deg": math.degrees(quat_to_yaw(np.asarray(quat, float)))}


def _env_for(dataset: LeRobotDataset, episode: int) -> tuple[PaperSquareEnv, int | None, dict | None]:
    meta_path = dataset.root / SIM_META
    record = dataset.episode_record(episode)
    if meta_path.is_file() and "seed" in record:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        env = PaperSquareEnv(coerce_env_config(meta["env"]), visual=False)
        return env, int(record["seed"]), record.get("dr")
    config = coerce_env_config(None, dr="none", physics={"control_hz": float(dataset.fps)})
    return PaperSquareEnv(config, visual=False), None, None


def replay_episode(
    root: str | Path,
    episode: int,
    layout: str = "rllib_paper",
    sheet_start: tuple[float, float, float] | None = None,
) -> ReplayResult:
    dataset = read_dataset(root, layout)
    if episode not in dataset.episode_indices:
        indices = dataset.episode_indices
        raise ConfigError(f"episode={episode}: {root} holds episode_index {indices[0]}..{indices[-1]} ({len(indices)})")
    states, actions = dataset.states(episode), dataset.actions(episode)
    columns = dataset.episode(episode)
    env, seed, dr = _env_for(dataset, episode)
    try:
        _, info = env.reset(seed=seed if seed is not None else 0)
        if seed is None:
            env.place(joint_angles=states[0], sheet_xy_yaw=sheet_start or DEFAULT_SHEET_START)
        elif dr is not None and {k: float(v) for k, v in info["dr"].items()} != dr:
            raise ConfigError(f"{root}: episode {episode}'s DR draw differs from seed {seed}'s in this code version")
        recorded_full = columns.get(TASK_STATE_KEY)
        exact = seed is not None
        errors = np.empty((len(actions), 6))
        for t, action in enumerate(actions):
            sim = env.state.astype(np.float32)
            errors[t] = sim[QPOS].astype(np.float64) - states[t]
            if exact:
                exact = bool(np.array_equal(sim[QPOS], states[t])) and (
                    recorded_full is None or bool(np.array_equal(sim, recorded_full[t]))
                )
            _, _, _, _, info = env.step(np.asarray(action, dtype=np.float64))
        final = env.state
        env_state_key = dataset.layout.environment_state_key
        recorded_end = None
        if env_state_key and env_state_key in columns:
            last = columns[env_state_key][-1]
            recorded_end = _sheet(last[:3], last[3:7])
        joints = [
            JointError(
                joint=name,
                mean_abs_deg=float(np.degrees(np.abs(errors[:, j]).mean())),
                max_abs_deg=float(np.degrees(np.abs(errors[:, j]).max())),
                final_deg=float(np.degrees(errors[-1, j])),
            )
            for j, name in enumerate(dataset.layout.joint_names)
        ]
        return ReplayResult(
            dataset=str(root),
            episode=episode,
            frames=len(actions),
            fps=dataset.fps,
            seed=seed,
            exact=exact if seed is not None else None,
            joints=joints,
            sheet_end=_sheet(final[SHEET_POS], final[SHEET_QUAT]),
            sheet_end_recorded=recorded_end,
            inside_frame_at_end=bool(info.get("success_once", False) or info.get("success", False)),
        )
    finally:
        env.close()


def format_replay(result: ReplayResult) -> str:
    lines = [
        f"replayed episode {result.episode} of {result.dataset}: {result.frames} frames at {result.fps} fps"
        + (f", seed {result.seed}" if result.seed is not None else ", arm from its first recorded state"),
        f"{'joint':<20}{'mean |err| deg':>16}{'max |err| deg':>16}{'final deg':>12}",
    ]
    for j in result.joints:
        lines.append(f"{j.joint:<20}{j.mean_abs_deg:>16.4f}{j.max_abs_deg:>16.4f}{j.final_deg:>12.4f}")
    end = result.sheet_end
    lines.append(
        f"sheet ended at x {end['x']:.4f} m, y {end['y']:.4f} m, yaw {end['yaw_deg']:.2f} deg; "
        f"inside the frame: {'yes' if result.inside_frame_at_end else 'no'}"
    )
    if result.exact is not None:
        lines.append(f"exact reproduction of the recorded episode: {'yes' if result.exact else 'NO'}")
    return "\n".join(lines)
