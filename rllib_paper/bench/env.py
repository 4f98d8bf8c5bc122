"""`rllib-paper bench env`: how close the env step is to raw MuJoCo physics.

The arm first presses its fingertip onto the sheet (the contact-heavy, slowest regime);
that state is snapshotted, and from it we time in interleaved rounds, each against raw
physics driven by the same joint targets: a constant press (raw = one mj_step call) vs
env steps with a zero residual, and the press plus a uniform random residual (raw = set
ctrl, mj_step(nstep=substeps) per control step) vs env steps with that residual.
Ratio = env steps/s * substeps / raw steps/s, so 1.0 means the env adds nothing. Each round
times raw physics and the env back to back and the ratio is the median of the rounds'
ratios: on a shared host the speed drifts by a third within seconds, and pairing cancels the
drift that a ratio of separately taken medians keeps.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace

import mujoco
import numpy as np

from rllib_paper.config import DR_PRESETS, EnvConfig, TaskConfig
from rllib_paper.envs.residual import ResidualPaperEnv
from rllib_paper.policies.base import ConstantTargetPolicy
from rllib_paper.sim.kinematics import FingertipIK
from rllib_paper.sim.observation import SHEET_XY

PRESS_DEPTH = 0.004  # fingertip target this far below the sheet's top: a firm press


def press_target(env: ResidualPaperEnv, xy: np.ndarray, depth: float = PRESS_DEPTH) -> np.ndarray:
    """Joint targets that put the fingertip ``depth`` below the table top at ``xy``, jaws tilted 30 deg."""
    inner = env.env
    ik = FingertipIK(inner.model)
    heading = np.arctan2(xy[1], xy[0])
    axis = np.array([0.5 * np.cos(heading), 0.5 * np.sin(heading), -0.866])
    q, _ = ik.solve(np.array([xy[0], xy[1], -depth]), inner.current_target.copy(), axis=axis, iterations=200)
    return q


def make_pressing_env(max_steps: int = 10**9) -> tuple[ResidualPaperEnv, mujoco.MjData]:
    """An env whose fingertip presses the sheet, and a snapshot of that state."""
    config = EnvConfig(task=replace(TaskConfig(), max_steps=max_steps), randomization=DR_PRESETS["none"])
    env = ResidualPaperEnv(config)
    env.reset(seed=0)
    paper_xy = env.env.state[SHEET_XY].copy()
    env.base_policy = ConstantTargetPolicy(press_target(env, paper_xy))
    env.reset(seed=0)
    for _ in range(60):  # ~2 s: reach down and settle on the sheet
        env.step(np.zeros(6, dtype=np.float32))
    snapshot = mujoco.MjData(env.env.model)
    mujoco.mj_copyData(snapshot, env.env.model, env.env.data)
    return env, snapshot


def fingertip_paper_contacts(env: ResidualPaperEnv) -> int:
    data, ids = env.env.data, env.env.ids
    pads = set(ids.pad_geoms.tolist())
    count = 0
    for i in range(data.ncon):
        pair = {int(data.contact.geom1[i]), int(data.contact.geom2[i])}
        if ids.paper_geom in pair and pair & pads:
            count += 1
    return count


def run(steps: int = 300, rounds: int = 9, seed: int = 0) -> dict[str, float]:
    env, snapshot = make_pressing_env()
    model, inner = env.env.model, env.env
    substeps = inner.substeps
    raw_data = mujoco.MjData(model)
    rng = np.random.default_rng(seed)
    random_actions = rng.uniform(-1, 1, size=(steps, 6)).astype(np.float32)
    zero = np.zeros(6, dtype=np.float32)
    contacts = fingertip_paper_contacts(env)

    gain = env.config.residual.alpha * env.config.residual.scale
    random_targets = np.clip(
        env.base_target + gain * random_actions.astype(np.float64), inner.ids.ctrl_low, inner.ids.ctrl_high
    )

    def time_raw() -> float:
        mujoco.mj_copyData(raw_data, model, snapshot)
        start = time.perf_counter()
        mujoco.mj_step(model, raw_data, nstep=steps * substeps)
        return steps * substeps / (time.perf_counter() - start)

    def time_raw_random() -> float:
        mujoco.mj_copyData(raw_data, model, snapshot)
        ctrl = raw_data.ctrl
        start = time.perf_counter()
        for i in range(steps):
            ctrl[:] = random_targets[i]
            mujoco.mj_step(model, raw_data, nstep=substeps)
        return steps * substeps / (time.perf_counter() - start)

    def time_env(actions) -> float:
        mujoco.mj_copyData(inner.data, model, snapshot)
        start = time.perf_counter()
        for i in range(steps):
            env.step(actions[i] if actions is not None else zero)
        return steps / (time.perf_counter() - start)

    raw, raw_random, zero_rates, random_rates = [], [], [], []
    for _ in range(rounds):
        raw.append(time_raw())
        zero_rates.append(time_env(None))
        raw_random.append(time_raw_random())
        random_rates.append(time_env(random_actions))
    raw_rate = statistics.median(raw)
    raw_random_rate = statistics.median(raw_random)
    zero_rate = statistics.median(zero_rates)
    random_rate = statistics.median(random_rates)
    zero_ratios = [env * substeps / physics for env, physics in zip(zero_rates, raw, strict=True)]
    random_ratios = [env * substeps / physics for env, physics in zip(random_rates, raw_random, strict=True)]
    return {
        "substeps": substeps,
        "fingertip_paper_contacts": contacts,
        "raw_mj_step_per_s": raw_rate,
        "raw_mj_step_per_s_random_targets": raw_random_rate,
        "env_steps_per_s_zero_residual": zero_rate,
        "env_steps_per_s_random_residual": random_rate,
        "ratio_zero_residual": statistics.median(zero_ratios),
        "ratio_random_residual": statistics.median(random_ratios),
        "steps_per_round": steps,
        "rounds": rounds,
    }


def main(steps: int = 300, rounds: int = 9) -> dict[str, float]:
    result = run(steps=steps, rounds=rounds)
    print(f"scene with the fingertip pressing the sheet ({result['fingertip_paper_contacts']} pad-paper contacts)")
    print(f"raw mj_step:              {result['raw_mj_step_per_s']:10.0f} physics steps/s")
    print(
        f"env, zero residual:       {result['env_steps_per_s_zero_residual']:10.1f} env steps/s "
        f"x {result['substeps']} substeps -> ratio {result['ratio_zero_residual']:.3f}"
    )
    print(f"raw mj_step, same random targets: {result['raw_mj_step_per_s_random_targets']:10.0f} physics steps/s")
    print(
        f"env, random residual:     {result['env_steps_per_s_random_residual']:10.1f} env steps/s "
        f"x {result['substeps']} substeps -> ratio {result['ratio_random_residual']:.3f}"
    )
    print(json.dumps({"bench": "env", **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}))
    return result


__all__ = ["main", "make_pressing_env", "press_target", "run"]
