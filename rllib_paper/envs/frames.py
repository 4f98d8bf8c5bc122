"""Camera frames of a seeded reset, as a GR00T mapping renders them: what the model would see.

    rllib-paper frames --mapping arm0_dualcam --seed 1000 --dr phase2 --out results/groot_frames

Lets a user compare the sim's cameras with their real rig (pose, field of view, colours).
Each camera also gets ``*_full_vs_mapping.png``: the same frame at full quality (every mesh
triangle, shadows, 4x multisampling) beside the mapping's cheaper settings, so the cost
levers (docs/groot.md) can be judged by eye.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rllib_paper.config import coerce_env_config
from rllib_paper.envs.paper_env import PaperSquareEnv
from rllib_paper.policies.groot.config import load_mapping
from rllib_paper.policies.groot.policy import GrootBasePolicy


def _frames(mapping, config, seed: int) -> dict[str, np.ndarray]:
    frames = GrootBasePolicy(mapping, backend=None).frames  # the renderer GR00T's env would use
    env = PaperSquareEnv(config, render_detail=frames.detail)
    env.reset(seed=seed)
    images = frames(env.model, env.data)
    env.close()
    return images


def save_reset_frames(out_dir: str, seed: int = 1000, dr: str = "phase2", mapping: str = "arm0_dualcam") -> list[str]:
    """Write the mapping's camera frames after a seeded reset as PNGs (RGB), and each beside its
    full-quality render."""
    config = coerce_env_config(None, dr=dr)
    cheap = load_mapping(mapping)
    full = cheap.replace(render_shadows=True, render_samples=4, render_detail=1.0)
    images, reference = _frames(cheap, config, seed), _frames(full, config, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for cam in cheap.cameras:
        stem = f"{dr}_seed{seed}_{cam.key.removeprefix('video.')}_{cam.camera.replace('/', '_')}"
        Image.fromarray(images[cam.camera]).save(out / f"{stem}.png")
        gap = np.full((images[cam.camera].shape[0], 8, 3), 255, dtype=np.uint8)
        side = np.concatenate([reference[cam.camera], gap, images[cam.camera]], axis=1)
        Image.fromarray(side).save(out / f"{stem}_full_vs_mapping.png")
        paths += [str(out / f"{stem}.png"), str(out / f"{stem}_full_vs_mapping.png")]
    return paths
