"""`rllib-paper bench pusher`: the scripted pusher's compute per control step vs the env step.

One run of seeded episodes; around every base-policy call we time ``act`` and, separately,
the env step that follows (physics plus env bookkeeping). The ratio is the share of a
control step the pusher adds; the target is below 0.10. The per-episode ratios are printed
too: on a shared host their spread shows how much of a figure is the host, not the code.
"""

from __future__ import annotations

import json
import statistics
import time

from rllib_paper.config import coerce_env_config
from rllib_paper.envs.paper_env import PaperSquareEnv
from rllib_paper.policies.scripted import ScriptedPusher


def run(episodes: int = 5, seed: int = 0, dr: str = "phase2") -> dict[str, float]:
    config = coerce_env_config(None, dr=dr)
    env = PaperSquareEnv(config)
    policy = ScriptedPusher(config)
    act_time = step_time = 0.0
    steps = 0
    episode_ratios = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        policy.reset(seed=seed + episode)
        episode_act, episode_step = act_time, step_time
        while True:
            observations = {"state": env.state[None, :], "target": env.current_target[None, :]}
            start = time.perf_counter()
            target = policy.act(observations)[0, 0]
            middle = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(target)
            end = time.perf_counter()
            act_time += middle - start
            step_time += end - middle
            steps += 1
            if terminated or truncated:
                break
        episode_ratios.append((act_time - episode_act) / (step_time - episode_step))
    return {
        "episodes": episodes,
        "control_steps": steps,
        "pusher_us_per_step": 1e6 * act_time / steps,
        "env_step_us": 1e6 * step_time / steps,
        "pusher_to_env_step_ratio": act_time / step_time,
        "episode_ratio_min": min(episode_ratios),
        "episode_ratio_median": statistics.median(episode_ratios),
        "episode_ratio_max": max(episode_ratios),
    }


def main(episodes: int = 5) -> dict[str, float]:
    result = run(episodes=episodes)
    print(
        f"scripted pusher: {result['pusher_us_per_step']:.0f} us per control step, "
        f"env step {result['env_step_us']:.0f} us -> ratio {result['pusher_to_env_step_ratio']:.3f} "
        f"(target < 0.10) over {result['control_steps']} steps; per episode "
        f"{result['episode_ratio_min']:.3f} / {result['episode_ratio_median']:.3f} / "
        f"{result['episode_ratio_max']:.3f} (min / median / max)"
    )
    print(json.dumps({"bench": "pusher", **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}))
    return result
