"""SweepConfig: a Ray Tune sweep over TrainConfig fields, read from tune_configs/*.yaml.

Schema (every key optional except ``search``; unknown keys are errors):

    base: residual_scripted          # shipped train config name or YAML path
    set: {ppo.train_batch_size: 2000} # fixed dotted-key overrides for every trial
    search:                          # dotted TrainConfig field -> one distribution
      ppo.lr: {loguniform: [1.0e-5, 1.0e-3]}
      ppo.clip_param: {uniform: [0.1, 0.3]}
      ppo.num_epochs: {randint: [5, 15]}       # low inclusive, high exclusive (Tune's randint)
      env.scale: {choice: [0.02, 0.05]}
      env.randomization.paper_x: {grid: [[0.25, 0.35], [0.20, 0.35]]}
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2}   # or fifo, or
               {type: pbt, perturbation_interval: 4}                # (pbt: lr / entropy / clip only)
    metric: success_rolling          # any metrics.csv column; mode max or min
    mode: max
    num_samples: 4                   # samples per grid point
    max_concurrent_trials: 2
    stop: {iterations: 10}           # per trial (TrainConfig.stop)
    resources: {cpus_per_trial: 1}   # CPUs for a trial's own process; env runners add theirs
    eval: {episodes: 100, seed: 5000, workers: 2, dr: phase2, all_trials: false, settle_steps: 30}
                                     # held-out evaluation of the best (or of every trial);
                                     # settle_steps 0 scores the first crossing, as training does

Everything is validated before Ray starts: each distribution's shape, empty or inverted
ranges, and every sampled value against the TrainConfig (the corners of each range and each
choice are built into a TrainConfig, so a value the trial would reject fails here, named).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rllib_paper.config import DR_PRESETS, ConfigError, _check_range
from rllib_paper.resources import shipped_dir
from rllib_paper.training.config import TrainConfig, _check_int, apply_overrides, resolve_config_path

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
SCHEDULERS = ("fifo", "asha", "pbt")
PBT_MUTABLE = ("ppo.lr", "ppo.entropy_coeff", "ppo.clip_param")
TUNE_CONFIGS = shipped_dir("tune_configs")


@dataclass(frozen=True)
class Distribution:
    key: str
    kind: str
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, key: str, spec: Any) -> Distribution:
        where = f"search.{key}"
        if not isinstance(spec, Mapping) or len(spec) != 1:
            raise ConfigError(f"{where}={spec!r}: expected one of {{{', '.join(DISTRIBUTIONS)}}}: [...]")
        kind, values = next(iter(spec.items()))
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: unknown distribution {kind!r}; allowed: {list(DISTRIBUTIONS)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{kind}={values!r}: expected a non-empty list")
        if kind in ("uniform", "loguniform", "randint"):
            if len(values) != 2:
                raise ConfigError(f"{where}.{kind}={values!r}: expected [low, high]")
            low, high = values
            _check_range(f"{where}.{kind}[0]", low)
            _check_range(f"{where}.{kind}[1]", high)
            if not low < high:
                raise ConfigError(f"{where}.{kind}={values!r}: low {low} must be below high {high}")
            if kind == "loguniform" and low <= 0:
                raise ConfigError(f"{where}.loguniform={values!r}: bounds must be > 0")
            if kind == "randint" and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ConfigError(f"{where}.randint={values!r}: bounds must be integers")
        return cls(key, kind, tuple(values))

    def corners(self) -> list[Any]:
        """Values that bound what the distribution can draw (validated before the sweep)."""
        if self.kind == "randint":
            return [self.values[0], self.values[1] - 1]
        return list(self.values)

    def to_tune(self):
        from ray import tune

        values = list(self.values)
        if self.kind == "choice":
            return tune.choice(values)
        if self.kind == "grid":
            return tune.grid_search(values)
        if self.kind == "uniform":
            return tune.uniform(*values)
        if self.kind == "loguniform":
            return tune.loguniform(*values)
        return tune.randint(*values)


@dataclass(frozen=True)
class SchedulerSection:
    type: str = "fifo"
    grace_period: int = 2  # asha: iterations before a trial may be stopped
    reduction_factor: float = 2.0
    max_t: int = 0  # asha: 0 means stop.iterations
    perturbation_interval: int = 4  # pbt: iterations between exploit/explore steps
    quantile_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.type not in SCHEDULERS:
            raise ConfigError(f"scheduler.type={self.type!r}: allowed values are {list(SCHEDULERS)}")
        for name in ("grace_period", "max_t", "perturbation_interval"):
            _check_int(f"scheduler.{name}", getattr(self, name), 0 if name == "max_t" else 1)
        _check_range("scheduler.reduction_factor", self.reduction_factor, 1.0, 100.0, low_open=True)
        _check_range("scheduler.quantile_fraction", self.quantile_fraction, 0.0, 0.5, low_open=True)


@dataclass(frozen=True)
class ResourcesSection:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self) -> None:
        _check_range("resources.cpus_per_trial", self.cpus_per_trial, 0.0, 1024.0)
        _check_range("resources.gpus_per_trial", self.gpus_per_trial, 0.0, 64.0)


@dataclass(frozen=True)
class EvalSection:
    episodes: int = 100
    seed: int = 5000  # held out: training draws 63-bit episode seeds, never these small integers
    workers: int = 2
    dr: str = "phase2"
    all_trials: bool = False  # evaluate every trial, not only the best (robustness sweeps)
    # Success that holds, as `rllib-paper eval --settle-steps` (30: 1 s after the first success);
    # 0 scores the first crossing, the way the pusher experiments are scored.
    settle_steps: int = 30

    def __post_init__(self) -> None:
        if not isinstance(self.all_trials, bool):
            raise ConfigError(f"eval.all_trials={self.all_trials!r}: expected true or false")
        for name in ("episodes", "workers"):
            _check_int(f"eval.{name}", getattr(self, name), 1)
        _check_int("eval.seed", self.seed, 0)
        _check_int("eval.settle_steps", self.settle_steps, 0, 10000)
        if self.dr not in DR_PRESETS:
            raise ConfigError(f"eval.dr={self.dr!r}: allowed presets are {sorted(DR_PRESETS)}")


@dataclass(frozen=True)
class SweepConfig:
    search: dict[str, Any]
    base: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    metric: str = "success_rolling"
    mode: str = "max"
    num_samples: int = 1
    max_concurrent_trials: int = 0  # 0: as many as the cluster fits
    stop: dict[str, Any] = field(default_factory=lambda: {"iterations": 10})
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self) -> None:
        if not isinstance(self.search, Mapping) or not self.search:
            raise ConfigError("search: expected at least one 'field: {distribution: [...]}' entry")
        if self.mode not in ("max", "min"):
            raise ConfigError(f"mode={self.mode!r}: allowed values are ['max', 'min']")
        _check_int("num_samples", self.num_samples, 1)
        _check_int("max_concurrent_trials", self.max_concurrent_trials, 0)
        from rllib_paper.training.metrics import METRIC_COLUMNS

        if self.metric not in METRIC_COLUMNS:
            raise ConfigError(f"metric={self.metric!r}: allowed metrics are {sorted(METRIC_COLUMNS)}")
        distributions = self.distributions()
        if self.scheduler.type == "pbt":
            bad = [d.key for d in distributions if d.key not in PBT_MUTABLE]
            if bad:
                raise ConfigError(f"search.{bad[0]}: PBT can only mutate {list(PBT_MUTABLE)} during a trial")
            if any(d.kind == "grid" for d in distributions):
                raise ConfigError("search: PBT takes choice/uniform/loguniform/randint, not grid")
        self.base_train_config()  # base + set + stop is a valid TrainConfig
        for values in self._corner_assignments(distributions):
            self.trial_config(values)  # every corner of the search space is a valid TrainConfig

    def distributions(self) -> list[Distribution]:
        return [Distribution.parse(key, spec) for key, spec in self.search.items()]

    def base_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.base is not None:
            data = yaml.safe_load(resolve_config_path(self.base).read_text(encoding="utf-8")) or {}
        data = apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in self.set.items()])
        data["stop"] = dict(self.stop)
        return data

    def base_train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.base_dict())

    def trial_config(self, values: Mapping[str, Any]) -> TrainConfig:
        """The TrainConfig of one trial: the base with the sampled ``{dotted key: value}``."""
        assignments = [f"{k}={json.dumps(v)}" for k, v in values.items()]
        try:
            return TrainConfig.from_dict(apply_overrides(self.base_dict(), assignments))
        except ConfigError as exc:
            raise ConfigError(f"search space: {exc}") from None

    @staticmethod
    def _corner_assignments(distributions: list[Distribution]) -> list[dict[str, Any]]:
        corners = [d.corners() for d in distributions]
        if math.prod(len(c) for c in corners) <= 256:
            combos = itertools.product(*corners)
        else:  # too many to build: each value at least once
            longest = max(len(c) for c in corners)
            combos = [tuple(c[i % len(c)] for c in corners) for i in range(longest)]
        return [{d.key: v for d, v in zip(distributions, combo, strict=True)} for combo in combos]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_sweep_config(path: str | Path, assignments: Sequence[str] = ()) -> SweepConfig:
    """A sweep file (or shipped sweep name); ``assignments`` (``--set k=v``) join its ``set:``."""
    from rllib_paper.config import from_dict, parse_value

    path = Path(path)
    if not path.is_file():
        shipped = TUNE_CONFIGS / f"{path.stem}.yaml"
        if path.parent == Path(".") and shipped.is_file():
            path = shipped
        else:
            raise ConfigError(f"sweep={str(path)!r}: no such file")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    fixed = dict(data.get("set") or {})
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. env.task.max_steps=60")
        key, text = item.split("=", 1)
        fixed[key.strip()] = parse_value(text)
    if fixed:
        data["set"] = fixed
    return from_dict(SweepConfig, data)
