"""A chunked behaviour-cloning base policy: 25-D task observation in, 16 x 6 joint targets out.

This is the situation GR00T users are in, made testable on a CPU: a learned, imperfect policy
that acts open loop in chunks (GR00T N1.5 returns 16 targets and its client executes 8 before
asking again). ``rllib-paper bc train`` (``imitation/bc_train.py``) fits it to a LeRobot
dataset; this module holds the network and the policy that serves it, so a trained run is a
base policy wherever a spec is accepted::

    bc:RUN_DIR[?execute=N&device=cpu]   or   bc:RUN_DIR?ensemble=M

``execute`` is the execution horizon (default: the horizon the run was trained for, 8 of 16);
``ensemble=M`` instead queries every step and blends the chunks (``TemporalEnsemble``).
The checkpoint is two files in ``RUN_DIR``: ``bc_policy.json`` (architecture, horizons,
normalisation statistics, the dataset it came from) and ``bc_policy.pt`` (a plain state dict,
loaded with ``weights_only=True``: no pickled code runs). The policy is stateless (its memory
is the observation), so a shared actor or server batches rows of any episodes together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rllib_paper.config import ConfigError, EnvConfig
from rllib_paper.policies.spec import PolicySpec, parse_number
from rllib_paper.sim.observation import FIELDS, OBS_DIM, QPOS, TASK_FIELDS

CONFIG_FILE = "bc_policy.json"
WEIGHTS_FILE = "bc_policy.pt"
ACTION_MODES = ("absolute", "delta")  # delta: targets minus the current joint angles, added back at run time


@dataclass(frozen=True)
class BCNetwork:
    """What the network is; a checkpoint stores it beside the weights."""

    hidden: tuple[int, ...] = (512, 512, 512)  # MLP widths; measured against others in docs/bc.md
    chunk_length: int = 16  # targets predicted per query (GR00T's action horizon)
    execution_horizon: int = 8  # of which executed before the next query (GR00T's client default)
    action_mode: str = "delta"  # see ACTION_MODES
    dropout: float = 0.0
    # Observation fields the network does not see (set to their mean), e.g. ("qvel",) for a policy
    # that, like GR00T, reads joint positions only. Measured in docs/bc.md.
    masked_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        known = [f.name for f in TASK_FIELDS]
        unknown = [name for name in self.masked_inputs if name not in known]
        if unknown:
            raise ConfigError(f"network.masked_inputs={list(self.masked_inputs)}: unknown {unknown}; allowed: {known}")
        if self.action_mode not in ACTION_MODES:
            raise ConfigError(f"network.action_mode={self.action_mode!r}: allowed: {list(ACTION_MODES)}")
        if self.chunk_length < 1:
            raise ConfigError(f"network.chunk_length={self.chunk_length}: allowed range is [1, inf)")
        if not 1 <= self.execution_horizon <= self.chunk_length:
            raise ConfigError(
                f"network.execution_horizon={self.execution_horizon}: allowed range is [1, {self.chunk_length}]"
            )
        if not self.hidden or any(int(w) < 1 for w in self.hidden):
            raise ConfigError(f"network.hidden={list(self.hidden)}: expected one or more positive widths")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"network.dropout={self.dropout}: allowed range is [0, 1)")


@dataclass
class Normalisation:
    """Affine maps fitted on the training episodes: inputs and outputs both near unit scale."""

    obs_mean: list[float] = field(default_factory=lambda: [0.0] * OBS_DIM)
    obs_std: list[float] = field(default_factory=lambda: [1.0] * OBS_DIM)
    action_mean: list[float] = field(default_factory=lambda: [0.0] * 6)  # per joint, over all chunk positions
    action_std: list[float] = field(default_factory=lambda: [1.0] * 6)


def input_mask(network: BCNetwork) -> np.ndarray:
    """(OBS_DIM,) bool: True where the network sees the observation."""
    mask = np.ones(OBS_DIM, dtype=bool)
    for name in network.masked_inputs:
        mask[FIELDS[name].slice] = False
    return mask


def normalise_observations(observations, mean: np.ndarray, std: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The network's input, float32: standardised, masked fields zero (their training mean). One
    function for training and serving, so the two can never see different inputs."""
    x = np.asarray(observations, dtype=np.float32)
    scaled = (x - mean.astype(np.float32)) / std.astype(np.float32)
    return np.where(mask, scaled, np.float32(0.0)).astype(np.float32)


def build_network(network: BCNetwork):
    """The torch module: observation (normalised) -> chunk_length x 6 (normalised) targets."""
    import torch.nn as nn

    layers: list[nn.Module] = []
    width = OBS_DIM
    for hidden in network.hidden:
        layers += [nn.Linear(width, int(hidden)), nn.GELU()]
        if network.dropout:
            layers.append(nn.Dropout(network.dropout))
        width = int(hidden)
    layers.append(nn.Linear(width, network.chunk_length * 6))
    return nn.Sequential(*layers)


def chunk_targets(observations: np.ndarray, network: BCNetwork) -> np.ndarray:
    """What a chunk's targets are relative to: zero (absolute) or the current joint angles (delta)."""
    if network.action_mode == "delta":
        return np.asarray(observations, dtype=np.float64)[..., QPOS]
    return np.zeros((*np.shape(observations)[:-1], 6))


def save_bc_checkpoint(run_dir: str | Path, model, network: BCNetwork, norm: Normalisation, extra: dict) -> Path:
    """Write the two checkpoint files (weights first, so a config file means a whole checkpoint)."""
    import torch

    from rllib_paper.runtime.files import atomic_write, dump_json

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / WEIGHTS_FILE, lambda tmp: torch.save(model.state_dict(), tmp))
    record = {"network": asdict(network), "normalisation": asdict(norm), **extra}
    dump_json(record, run_dir / CONFIG_FILE)
    return run_dir


def _weights_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def read_bc_record(run_dir: str | Path, spec_text: str = "") -> dict[str, Any]:
    """The checkpoint's JSON record, or one error saying which file is missing."""
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / CONFIG_FILE, run_dir / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ConfigError(
                f"residual.base_policy={spec_text or f'bc:{run_dir}'!r}: {path} does not exist "
                "(a BC run directory holds bc_policy.json and bc_policy.pt: `rllib-paper bc train DATASET --out RUN`)"
            )
    return json.loads(config_path.read_text(encoding="utf-8"))


class BCPolicy:
    """Serves a trained chunked BC network: one forward pass per query, batched over rows."""

    stateless = True

    def __init__(self, run_dir: str | Path, execution_horizon: int | None = None, device: str = "cpu") -> None:
        import torch

        self.run_dir = Path(run_dir)
        record = read_bc_record(self.run_dir)
        stored = record["network"]
        network = BCNetwork(
            **{
                **stored,
                "hidden": tuple(stored["hidden"]),
                # Checkpoints from before inputs could be masked saw every field.
                "masked_inputs": tuple(stored.get("masked_inputs", ())),
            }
        )
        if execution_horizon is not None:
            network = BCNetwork(**{**asdict(network), "execution_horizon": int(execution_horizon)})
        self.network = network
        self.chunk_length = network.chunk_length
        self.execution_horizon = network.execution_horizon
        norm = Normalisation(**record["normalisation"])
        self._mask = input_mask(network)
        self._obs_mean = np.asarray(norm.obs_mean, dtype=np.float32)
        self._obs_std = np.asarray(norm.obs_std, dtype=np.float32)
        self._action_mean = np.asarray(norm.action_mean, dtype=np.float64)
        self._action_std = np.asarray(norm.action_std, dtype=np.float64)
        self.device = torch.device(device)
        self.model = build_network(network).to(self.device)
        state = torch.load(self.run_dir / WEIGHTS_FILE, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        state = np.asarray(observations["state"], dtype=np.float32)
        normalised = normalise_observations(state, self._obs_mean, self._obs_std, self._mask)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(normalised).to(self.device)).cpu().numpy().astype(np.float64)
        chunk = out.reshape(len(state), self.chunk_length, 6) * self._action_std + self._action_mean
        return chunk + chunk_targets(state, self.network)[:, None, :]


class TemporalEnsemble:
    """ACT's temporal ensembling (Zhao et al. 2023): query every step and execute the weighted mean
    of every earlier chunk's prediction for this step, weight exp(-m * i) with i = 0 the oldest.

    The network still predicts 16-step chunks; the ensemble re-plans every step while staying
    smooth, where executing 1 of 16 re-plans and dithers. Stateful (the past chunks of the
    episode): a shared actor keeps one instance per episode. ``predict`` is the chunked policy's
    ``act``."""

    stateless = False
    chunk_length = 1
    execution_horizon = 1

    def __init__(self, predict, horizon: int, m: float) -> None:
        self.predict, self.horizon, self.m = predict, int(horizon), float(m)
        self._past: list[np.ndarray] = []  # newest last, each (B, horizon, 6)

    def reset(self, seed: int | None = None) -> None:
        self._past = []

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        self._past = [*self._past[-(self.horizon - 1) :], np.asarray(self.predict(observations))]
        ages = range(len(self._past) - 1, -1, -1)  # the oldest chunk was asked len-1 steps ago
        predictions = np.stack([chunk[:, age] for chunk, age in zip(self._past, ages, strict=True)])
        weights = np.exp(-self.m * np.arange(len(self._past)))  # index 0: the oldest
        return (np.tensordot(weights / weights.sum(), predictions, axes=1))[:, None, :]


def _options(spec: PolicySpec) -> tuple[int | None, str, float | None]:
    options = spec.option_dict()
    unknown = sorted(set(options) - {"execute", "device", "ensemble"})
    if unknown:
        raise spec.error(f"unknown option(s) {unknown}; allowed: ['device', 'ensemble', 'execute']")
    if not spec.target:
        raise spec.error("expected 'bc:RUN_DIR' (the directory `rllib-paper bc train` wrote)")
    execute = int(parse_number(spec, "execute", options["execute"], int)) if "execute" in options else None
    ensemble = float(parse_number(spec, "ensemble", options["ensemble"])) if "ensemble" in options else None
    if ensemble is not None and (ensemble < 0 or execute is not None):
        raise spec.error(f"ensemble={ensemble}: expected a weight decay m >= 0, without execute= (it executes 1)")
    return execute, options.get("device", "cpu"), ensemble


def make_bc_policy(spec: PolicySpec, config: EnvConfig) -> BCPolicy | TemporalEnsemble:
    execute, device, ensemble = _options(spec)
    resolve_bc(spec)  # the horizon's range is checked against the run's chunk length
    policy = BCPolicy(spec.target, execution_horizon=execute, device=device)
    if ensemble is not None:
        return TemporalEnsemble(policy.act, policy.chunk_length, ensemble)
    return policy


def resolve_bc(spec: PolicySpec) -> dict[str, Any]:
    """The run's network and horizons plus a digest of its weights: two runs with the same
    directory name but other weights are different bases."""
    execute, _, ensemble = _options(spec)
    record = read_bc_record(spec.target, spec.text)
    network = dict(record["network"])
    if execute is not None:
        if not 1 <= execute <= network["chunk_length"]:
            raise spec.error(f"execute={execute}: allowed range is [1, {network['chunk_length']}]")
        network["execution_horizon"] = execute
    return {
        "run_dir": spec.target,
        "network": network,
        "weights_sha256": _weights_digest(Path(spec.target) / WEIGHTS_FILE),
        "temporal_ensemble": ensemble,
        "dataset": record.get("dataset", {}),
    }
