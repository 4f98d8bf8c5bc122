"""Load a trained residual (an RLlib RLModule checkpoint) as a plain obs -> action function.

Evaluation workers run the residual on their own CPU, deterministically: the action is the
mean of the policy's Gaussian, clipped to [-1, 1]. Accepts either an RLModule directory or
an RLlib Algorithm checkpoint (whose module lives under learner_group/learner/rl_module/).
Checkpoints are files our own training wrote: local paths, or a URI (s3://, gs://) that each
worker downloads from the run storage before loading.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

ENV_SNAPSHOT = "rllib_paper_env.json"
MODULE_SUBDIRS = ("learner_group/learner/rl_module/default_policy", "rl_module/default_policy", "")


def find_module_dir(checkpoint: str | Path) -> Path:
    from rllib_paper.runtime.storage import local_copy

    root = local_copy(checkpoint).resolve()  # RLlib reads relative paths as URIs; ours fetches s3:// etc.
    for sub in MODULE_SUBDIRS:
        candidate = root / sub if sub else root
        if (candidate / "class_and_ctor_args.pkl").is_file():
            return candidate
    raise FileNotFoundError(
        f"no RLModule checkpoint found in {root}: pass the directory written by `rllib-paper train` "
        "(an RLlib Algorithm checkpoint) or an RLModule directory saved with save_to_path()"
    )


def checkpoint_env_config(checkpoint: str | Path) -> dict | None:
    """The env config a checkpoint was trained with (written by `rllib-paper train`), or None.

    The residual's meaning depends on alpha, scale and the base policy it corrects, so an
    evaluation must use the same ones; this lets it read them instead of trusting flags.
    """
    from rllib_paper.runtime.storage import local_copy

    path = local_copy(checkpoint).resolve()
    for candidate in (path, *list(path.parents)[:4]):
        snapshot = candidate / ENV_SNAPSHOT
        if snapshot.is_file():
            return json.loads(snapshot.read_text(encoding="utf-8"))
        if (candidate / "config.yaml").is_file() and (candidate / "checkpoints").is_dir():  # a run directory
            from rllib_paper.training.config import load_train_config

            return load_train_config(candidate / "config.yaml").env.env_config().to_dict()
    return None


def load_residual_policy(checkpoint: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModule

    torch.set_num_threads(1)  # one env per worker process: no thread oversubscription
    module = RLModule.from_checkpoint(str(find_module_dir(checkpoint)))
    module.eval()

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            batch = {Columns.OBS: torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])}
            out = module.forward_inference(batch)
            inputs = out[Columns.ACTION_DIST_INPUTS][0].numpy()
        mean = inputs[: len(inputs) // 2]  # diagonal Gaussian: [means, log stds]
        return np.clip(mean, -1.0, 1.0).astype(np.float32)

    return act
