"""Domain-randomization draws: one numpy Generator per episode, seeded by the episode seed.

The draw order is fixed (the order of DR_FIELDS), so the same seed gives the same episode
on any worker and any node, and adding a field at the end never changes earlier draws.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rllib_paper.config import RandomizationConfig

DR_FIELDS = ("paper_x", "paper_y", "paper_yaw", "paper_friction_scale", "table_friction_scale", "paper_mass_scale")


@dataclass(frozen=True)
class EpisodeDraw:
    paper_x: float
    paper_y: float
    paper_yaw: float
    paper_friction_scale: float
    table_friction_scale: float
    paper_mass_scale: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def sample_episode(config: RandomizationConfig, rng: np.random.Generator) -> EpisodeDraw:
    """One draw per field, uniform in its [min, max]; a degenerate range costs a draw too."""
    values = {}
    for name in DR_FIELDS:
        low, high = getattr(config, name)
        values[name] = float(rng.uniform(low, high))
    return EpisodeDraw(**values)
