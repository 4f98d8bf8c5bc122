"""Camera frames of a seeded reset, as a GR00T mapping renders them: what the model would see.

    rllib-paper frames --mapping arm0_dualcam --seed 1000 --dr phase2 --out results/groot_frames

Lets a user compare the sim's cameras with their real rig (pose, field of view, colours).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from rllib_paper.envs.paper_env import PaperSquareEnv
from rllib_paper.policies.groot.config import load_mapping
from rllib_paper.policies.groot.render import CameraRenderer


def save_reset_frames(out_dir: str, seed: int = 1000, dr: str = "phase2", mapping: str = "arm0_dualcam") -> list[str]:
    """Write the mapping's camera frames after a seeded reset as PNGs (what the model sees, in RGB)."""
    config = load_mapping(mapping)
    env = PaperSquareEnv(dr=dr)
    env.reset(seed=seed)
    height, width = config.image_size
    renderer = CameraRenderer(env.model, height, width, shadows=config.render_shadows, samples=config.render_samples)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for cam in config.cameras:
        path = out / f"{dr}_seed{seed}_{cam.key.removeprefix('video.')}_{cam.camera.replace('/', '_')}.png"
        Image.fromarray(renderer.render(env.data, cam.camera)).save(path)
        paths.append(str(path))
    renderer.close()
    env.close()
    return paths
