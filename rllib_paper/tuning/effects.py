"""What each searched setting does, read from a sweep whose every trial was evaluated on the same seeds.

A grid sweep with ``eval.all_trials`` holds one evaluation per trial on the same seeds. For
each searched key with two or more values this pools the episodes of the trials at each value
(success rate and Wilson interval over all of them), and for a key with exactly two values it
pairs every trial with the trial that differs from it in this key alone, episode by episode on
the same seed, and runs McNemar's exact test on those pairs. In a 2 x 2 x 2 factorial each
factor's effect is then read from all 8 trials (4 pairs x the evaluation seeds), not from two.

Written by ``rllib-paper tune`` beside the trials table (``effects.json``, ``effects.md``);
for a finished sweep directory: ``python -m rllib_paper.tuning.effects DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from rllib_paper.evaluation.report import mcnemar, rate
from rllib_paper.runtime.files import dump_json

PARAM_PREFIX = "param."


def param_column(key: str) -> str:
    """The trials table's column for a searched key."""
    return f"{PARAM_PREFIX}{key}"


def param_value(value: Any) -> Any:
    """A searched value as the trials table holds it: lists and mappings as JSON, others as is."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def factor_effects(
    table: pd.DataFrame, episodes: dict[str, pd.DataFrame], order: dict[str, list] | None = None
) -> list[dict[str, Any]]:
    """Per searched key (``param.*`` column of the trials table): pooled success per value and,
    for two values, the paired McNemar test (second value against the first); ``episodes`` maps
    trial id -> its evaluation's per-episode table (``seed``, ``success``); ``order`` lists a
    key's values in the sweep file's order (the first is the reference). Trials without an
    evaluation are left out."""
    table = table[table["trial_id"].isin(list(episodes))]
    columns = [c for c in table.columns if c.startswith(PARAM_PREFIX)]
    effects = []
    for column in columns:
        key = column[len(PARAM_PREFIX) :]
        present = table[column].dropna().unique().tolist()  # plain Python values
        listed = [v for v in (order or {}).get(key, []) if v in present]
        values = listed + sorted((v for v in present if v not in listed), key=str)
        if len(values) < 2:
            continue
        levels = []
        for value in values:
            frames = [episodes[t] for t in table.loc[table[column] == value, "trial_id"]]
            successes = sum(int(f["success"].astype(bool).sum()) for f in frames)
            levels.append({"value": value, "trials": len(frames), **rate(successes, sum(len(f) for f in frames))})
        effect: dict[str, Any] = {"key": key, "levels": levels}
        if len(values) == 2:
            effect["paired"] = _paired(table, episodes, key, values)
        effects.append(effect)
    return effects


def _paired(table: pd.DataFrame, episodes: dict[str, pd.DataFrame], key: str, values: list) -> dict[str, Any]:
    """Trials equal in every other key, one at each value of ``key``: their episodes on the
    same seeds, keyed by (pair, seed), compared by McNemar's exact test."""
    column = param_column(key)
    others = [c for c in table.columns if c.startswith(PARAM_PREFIX) and c != column]
    rest = table[others].astype(str).agg("|".join, axis=1) if others else pd.Series("", index=table.index)
    sides: dict[Any, list[pd.DataFrame]] = {values[0]: [], values[1]: []}
    pairs = 0
    for _, group in table.groupby(rest):
        by_value = {row[column]: row["trial_id"] for _, row in group.iterrows()}
        if set(by_value) != set(values):
            continue
        for value in values:
            source = episodes[by_value[value]]
            frame = source[[c for c in ("seed", "success", "base_policy_failed") if c in source]].copy()
            frame["seed"] = [f"{pairs}:{seed}" for seed in frame["seed"]]  # a pair's episodes, by seed
            sides[value].append(frame)
        pairs += 1
    if not pairs:
        return {"pairs": 0}
    a, b = (pd.concat(sides[v], ignore_index=True) for v in values)
    result = mcnemar(a, b, f"{key}={values[0]}", f"{key}={values[1]}")
    return {"pairs": pairs, **result}


def format_effects(effects: list[dict[str, Any]]) -> str:
    lines = ["| setting | value | trials | episodes | success | 95 % Wilson | paired difference (McNemar p) |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for effect in effects:
        paired = effect.get("paired", {})
        note = ""
        if paired.get("pairs"):
            note = f"{100 * paired['difference']:+.1f} points over {paired['episodes']} paired episodes "
            note += f"(p = {paired['mcnemar_exact_p']:.2g})"
        for i, level in enumerate(effect["levels"]):
            low, high = level["ci95"]
            lines.append(
                f"| {effect['key'] if i == 0 else ''} | {level['value']} | {level['trials']} | {level['episodes']} | "
                f"{100 * level['rate']:.1f} % | [{100 * low:.1f}, {100 * high:.1f}] | {note if i == 1 else ''} |"
            )
    return "\n".join(lines) + "\n"


def write_effects(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """effects.json and effects.md of a sweep directory (trials.parquet, trial_evals/ID/episodes.parquet)."""
    sweep_dir = Path(sweep_dir)
    table = pd.read_parquet(sweep_dir / "trials.parquet")
    episodes = {}
    for trial_id in table["trial_id"]:
        path = sweep_dir / "trial_evals" / str(trial_id) / "episodes.parquet"
        if path.exists():
            episodes[str(trial_id)] = pd.read_parquet(path)
    effects = factor_effects(table, episodes, _grid_order(sweep_dir / "sweep_config.json"))
    dump_json(effects, sweep_dir / "effects.json")
    (sweep_dir / "effects.md").write_text(format_effects(effects))
    return effects


def _grid_order(path: Path) -> dict[str, list]:
    """Each grid or choice key's values as the sweep file lists them, spelt as the trials table
    spells them (lists and mappings as JSON)."""
    if not path.exists():
        return {}
    search = json.loads(path.read_text()).get("search", {})
    order = {}
    for key, spec in search.items():
        kind, values = next(iter(spec.items()))
        if kind in ("grid", "choice"):
            order[key] = [param_value(v) for v in values]
    return order


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m rllib_paper.tuning.effects SWEEP_DIR", file=sys.stderr)
        return 2
    effects = write_effects(argv[0])
    print(format_effects(effects), end="")
    print(json.dumps({"effects": len(effects)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
