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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rllib_paper.config import ConfigError

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


@dataclass(frozen=True)
class TrainedEnv:
    """What a checkpoint's residual corrects and in which env: read from ``rllib_paper_env.json``.

    ``env`` is the EnvConfig as a mapping; ``base_policy`` the base fully resolved
    (``policies.registry.resolve_base_policy``: every parameter at its value); ``code`` the
    package version and commit that trained it.
    """

    env: dict[str, Any]
    base_policy: dict[str, Any]
    code: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "base_policy": self.base_policy, "code": self.code}


def write_trained_env(directory: str | Path, trained: TrainedEnv) -> Path:
    from rllib_paper.runtime.files import dump_json

    return dump_json(trained.to_dict(), Path(directory) / ENV_SNAPSHOT)


def read_trained_env(checkpoint: str | Path) -> TrainedEnv | None:
    """The env and base a checkpoint was trained with (written by `rllib-paper train`), or None.

    The residual's meaning depends on alpha, scale and the exact base policy it corrects, so
    an evaluation starts from these instead of trusting flags. Accepts a checkpoint directory,
    a file or folder inside one, or a run directory (its latest checkpoint).
    """
    from rllib_paper.runtime.storage import local_copy

    path = local_copy(checkpoint).resolve()
    for candidate in (path, *list(path.parents)[:4]):
        pointer = candidate / "checkpoints" / "latest.json"
        if pointer.is_file():  # a run directory
            candidate = candidate / "checkpoints" / json.loads(pointer.read_text(encoding="utf-8"))["name"]
        snapshot = candidate / ENV_SNAPSHOT
        if snapshot.is_file():
            try:
                data = json.loads(snapshot.read_text(encoding="utf-8"))
                return TrainedEnv(env=data["env"], base_policy=data["base_policy"], code=data.get("code", {}))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{snapshot}: not a checkpoint env record ({type(exc).__name__}: {exc}); "
                    "it should hold env, base_policy and code as `rllib-paper train` writes them"
                ) from None
    return None


def check_checkpoint(checkpoint: str | Path) -> None:
    """Refuse, in one sentence naming the file, a checkpoint that cannot be loaded, before any
    worker tries: a missing path, a plain file, a directory without an RLModule, a truncated
    pickle (scanned with pickletools, nothing is executed) or an unreadable JSON file."""
    import pickletools

    from rllib_paper.runtime.storage import is_uri

    if is_uri(checkpoint):
        return  # fetched by each worker from the run storage; checked there
    root = Path(checkpoint)
    if not root.exists():
        raise ConfigError(f"checkpoint={str(checkpoint)!r}: no such file or directory")
    if not root.is_dir():
        raise ConfigError(
            f"checkpoint={str(checkpoint)!r} is a file; pass the checkpoint directory written by `rllib-paper train` "
            "(e.g. RUN/checkpoints/final)"
        )
    try:
        module_dir = find_module_dir(root)
    except FileNotFoundError as exc:
        raise ConfigError(f"checkpoint={str(checkpoint)!r}: {exc}") from None
    for path in sorted({*module_dir.glob("*.pkl"), *module_dir.glob("*.json"), *root.glob("*.json")}):
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            else:
                with open(path, "rb") as fh:
                    for _ in pickletools.genops(fh):  # raises at a truncated or corrupt stream
                        pass
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"checkpoint file {path} is damaged ({exc}); retrain or copy it again") from None


RESIDUAL_ACTIONS = ("mean", "sample")


def load_residual_policy(checkpoint: str | Path, actions: str = "mean") -> Callable[[np.ndarray], np.ndarray]:
    """The trained residual as ``obs -> action``.

    ``actions="mean"`` acts with the Gaussian's mean (the usual deterministic evaluation);
    ``"sample"`` draws from the policy as it was trained, with noise seeded by the episode
    (the returned function's ``reset(seed)``, which EpisodeRunner calls), so an episode is still
    the same for the same seed on any worker. A residual trained over a base that its own
    exploration noise helps can be better sampled than at its mean; which one a result used is
    in its report.
    """
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModule

    if actions not in RESIDUAL_ACTIONS:
        raise ValueError(f"residual actions={actions!r}: allowed values are {list(RESIDUAL_ACTIONS)}")
    torch.set_num_threads(1)  # one env per worker process: no thread oversubscription
    module = RLModule.from_checkpoint(str(find_module_dir(checkpoint)))
    module.eval()

    def distribution(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            batch = {Columns.OBS: torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])}
            out = module.forward_inference(batch)
            inputs = out[Columns.ACTION_DIST_INPUTS][0].numpy()
        half = len(inputs) // 2  # diagonal Gaussian: [means, log stds]
        return inputs[:half], inputs[half:]

    if actions == "sample":
        return SampledResidual(distribution)

    def act(obs: np.ndarray) -> np.ndarray:
        return np.clip(distribution(obs)[0], -1.0, 1.0).astype(np.float32)

    return act


class SampledResidual:
    """Residual actions drawn from the policy's Gaussian, the noise seeded per episode."""

    NOISE_STREAM = 0x5A11  # a spawn key of its own: the draws share nothing with the env's DR stream

    def __init__(self, distribution: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        self.distribution = distribution
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(self.NOISE_STREAM,)))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        mean, log_std = self.distribution(obs)
        draw = mean + np.exp(log_std) * self.rng.standard_normal(mean.shape)
        return np.clip(draw, -1.0, 1.0).astype(np.float32)
