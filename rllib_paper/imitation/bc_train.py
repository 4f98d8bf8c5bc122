"""Train the chunked BC base policy (``policies/bc.py``) on a LeRobot dataset.

    rllib-paper bc train runs/demos --out runs/bc --set epochs=200

How to run / what to expect: on 2 CPU cores, about 200 successful phase-2 pusher demonstrations
(40 k frames) train in a few minutes; the run directory gets the checkpoint (``bc_policy.json``
+ ``bc_policy.pt``), ``metrics.csv`` (train and validation loss per epoch) and ``loss.png``.
The checkpoint kept is the epoch with the lowest validation loss. Evaluate it like any base::

    rllib-paper eval --policy bc:runs/bc --dr phase2 --episodes 200 --seed 0

Each sample is one frame: input the 25-D task observation (``observation.task_state``), target
the next ``chunk_length`` recorded actions (the episode's last action repeats past its end: the
arm holds), as absolute targets or relative to the current joint angles (``action_mode``).
Episodes, not frames, are split into training and validation, so the validation loss measures
unseen episodes. Why the defaults are what they are: docs/bc.md (measured).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rllib_paper.config import ConfigError, from_dict
from rllib_paper.datasets.lerobot import DatasetError, read_dataset
from rllib_paper.datasets.record import TASK_STATE_KEY
from rllib_paper.policies.bc import (
    BCNetwork,
    Normalisation,
    build_network,
    chunk_targets,
    input_mask,
    normalise_observations,
    save_bc_checkpoint,
)
from rllib_paper.sim.observation import OBS_DIM
from rllib_paper.training.run_dir import rewrite_csv

LOSSES = ("l1", "mse")


@dataclass
class BCConfig:
    network: BCNetwork = field(default_factory=BCNetwork)
    epochs: int = 150  # passes over the training frames
    batch_size: int = 256
    lr: float = 1e-3  # AdamW, cosine-decayed to 1 % over the epochs
    weight_decay: float = 1e-4
    loss: str = "l1"  # see LOSSES; L1 on normalised targets (ACT's choice) vs MSE: docs/bc.md
    val_fraction: float = 0.1  # share of episodes held out for the validation loss
    seed: int = 0  # network init, episode split and minibatch order
    layout: str = "rllib_paper"  # the dataset's key names and joint order (datasets/lerobot.py LAYOUTS)
    torch_threads: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.network, dict):
            self.network = from_dict(BCNetwork, self.network, "network")
        if isinstance(self.network.hidden, list) or isinstance(self.network.masked_inputs, list):
            fields = asdict(self.network)
            fields.update(hidden=tuple(fields["hidden"]), masked_inputs=tuple(fields["masked_inputs"]))
            self.network = BCNetwork(**fields)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r}: allowed: {list(LOSSES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs={self.epochs}, batch_size={self.batch_size}: allowed range is [1, inf)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction}: allowed range is [0, 1)")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr}: allowed range is (0, inf)")


def chunk_samples(observations: np.ndarray, actions: np.ndarray, network: BCNetwork) -> tuple[np.ndarray, np.ndarray]:
    """(T, 25) observations and (T, 6) actions -> T inputs and T (chunk_length, 6) targets."""
    steps = len(actions)
    index = np.minimum(np.arange(steps)[:, None] + np.arange(network.chunk_length)[None, :], steps - 1)
    chunks = actions[index].astype(np.float64) - chunk_targets(observations, network)[:, None, :]
    return observations.astype(np.float32), chunks.astype(np.float32)


def _episode_arrays(dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    columns = dataset.episode(index)
    if TASK_STATE_KEY not in columns:
        raise DatasetError(
            f"{dataset.root}: BC reads the 25-D task observation {TASK_STATE_KEY!r} (the sheet's pose, the goal and "
            "the arm's state), which this dataset does not have: record one with `rllib-paper record`"
        )
    observations = np.asarray(columns[TASK_STATE_KEY], dtype=np.float32)
    if observations.shape[1:] != (OBS_DIM,):
        raise DatasetError(
            f"{dataset.root}: {TASK_STATE_KEY} has shape {observations.shape[1:]}; expected ({OBS_DIM},)"
        )
    return observations, dataset.actions(index)


def split_episodes(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction) if n > 1 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def fit_normalisation(inputs: np.ndarray, targets: np.ndarray) -> Normalisation:
    """Per-feature mean and std (floored: a constant input, such as a quaternion component that
    never moves, must not be divided by zero)."""
    flat = targets.reshape(-1, 6)
    return Normalisation(
        obs_mean=inputs.mean(0).tolist(),
        obs_std=np.maximum(inputs.std(0), 1e-3).tolist(),
        action_mean=flat.mean(0).tolist(),
        action_std=np.maximum(flat.std(0), 1e-4).tolist(),
    )


def _write_loss_plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["train_loss"] for r in rows], label="train")
    if any(not math.isnan(r["val_loss"]) for r in rows):
        ax.plot(epochs, [r["val_loss"] for r in rows], label="validation (held-out episodes)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised targets)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_bc(dataset_dir: str | Path, out: str | Path, config: BCConfig, progress: bool = True) -> dict[str, Any]:
    """Fit the network and write the run directory; returns the run's summary."""
    import torch
    from tqdm import tqdm

    from rllib_paper.runtime.files import dump_json
    from rllib_paper.runtime.provenance import provenance

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.torch_threads)
    dataset = read_dataset(dataset_dir, config.layout)
    positions_train, positions_val = split_episodes(len(dataset), config.val_fraction, config.seed)
    indices = dataset.episode_indices
    train_eps, val_eps = [indices[p] for p in positions_train], [indices[p] for p in positions_val]
    if not train_eps:
        raise ConfigError(f"{dataset_dir}: {len(dataset)} episodes leave none to train on (val_fraction)")

    def samples(episodes: list[int]) -> tuple[np.ndarray, np.ndarray]:
        parts = [chunk_samples(*_episode_arrays(dataset, e), config.network) for e in episodes]
        if not parts:
            return np.zeros((0, OBS_DIM), np.float32), np.zeros((0, config.network.chunk_length, 6), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    train_x, train_y = samples(train_eps)
    val_x, val_y = samples(val_eps)
    norm = fit_normalisation(train_x, train_y)

    def normalise(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        xn = normalise_observations(x, np.asarray(norm.obs_mean), np.asarray(norm.obs_std), mask)
        yn = (y - np.asarray(norm.action_mean, np.float32)) / np.asarray(norm.action_std, np.float32)
        return torch.from_numpy(xn), torch.from_numpy(yn.reshape(len(y), config.network.chunk_length * 6))

    mask = input_mask(config.network)
    tx, ty = normalise(train_x, train_y)
    vx, vy = normalise(val_x, val_y)
    model = build_network(config.network)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(tx) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=config.epochs * steps_per_epoch, eta_min=config.lr * 0.01
    )
    loss_fn = torch.nn.functional.l1_loss if config.loss == "l1" else torch.nn.functional.mse_loss
    generator = torch.Generator().manual_seed(config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, float]] = []
    best: tuple[float, int] = (math.inf, -1)
    started = time.perf_counter()
    extra = {
        "dataset": {"path": str(dataset_dir), "episodes": len(dataset), "frames": int(len(tx) + len(vx))},
        "split": {"train_episodes": len(train_eps), "val_episodes": val_eps},
        "training": asdict(config),
        "provenance": provenance(),
    }
    bar = tqdm(range(1, config.epochs + 1), desc="bc", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(tx), generator=generator)
        total = 0.0
        for start in range(0, len(tx), config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = loss_fn(model(tx[batch]), ty[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(vx), vy)) if len(vx) else math.nan
        rows.append(
            {"epoch": epoch, "train_loss": total / len(tx), "val_loss": val_loss, "lr": schedule.get_last_lr()[0]}
        )
        bar.set_postfix(train=f"{total / len(tx):.4f}", val=f"{val_loss:.4f}")
        score = val_loss if len(vx) else total / len(tx)
        if score < best[0]:
            best = (score, epoch)
            save_bc_checkpoint(out, model, config.network, norm, {**extra, "best_epoch": epoch, "best_loss": score})
    rewrite_csv(out / "metrics.csv", rows, list(rows[0]))
    _write_loss_plot(rows, out / "loss.png")
    summary = {
        "out": str(out),
        "best_epoch": best[1],
        "best_val_loss": best[0],
        "final_train_loss": rows[-1]["train_loss"],
        "train_frames": len(tx),
        "val_frames": len(vx),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    dump_json(summary, out / "bc_summary.json")
    return summary
