"""Statistics and reports for seeded evaluations: JSON summary, Markdown page, plot, paired tests.

Every number here is computed from the per-episode table alone, sorted by seed, so the
report is identical whatever the number of workers or nodes that produced the rows.
Timing and placement (wall seconds, node ids) stay in the table and in ``run``, never in
``results``. Episodes whose base policy failed (``base_policy_failed``: its server stopped
answering) stay in the table but are no result of the policy: ``results`` leaves them out,
``base_policy_failures`` lists them, and their report is marked incomplete.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rllib_paper.evaluation.failure_modes import format_breakdown, paired_failure_breakdown
from rllib_paper.evaluation.statistics import equal_width_bins, wilson_interval
from rllib_paper.runtime.files import dump_json

SCHEMA_VERSION = 1
DR_BINS = 5
MEAN_COLUMNS = (
    "final_distance",
    "final_corner_error_mm",
    "final_yaw_error_abs",
    "steps",
    "episode_return",
    "residual_abs_mean",
    "residual_abs_max",
)


def base_failed(episodes: pd.DataFrame) -> pd.Series:
    """Which rows' base policy failed (False for tables written before the column existed)."""
    if "base_policy_failed" not in episodes:
        return pd.Series(False, index=episodes.index)
    return episodes["base_policy_failed"].eq(True)


def base_failure_record(failed: pd.DataFrame, limit: int = 50) -> dict[str, Any]:
    """report.json's ``base_policy_failures``: the count and the first ``limit`` seeds with their errors."""
    failed = failed.sort_values("seed")
    errors = failed["base_policy_error"] if "base_policy_error" in failed else pd.Series(None, index=failed.index)
    return {
        "count": len(failed),
        "episodes": [
            {"seed": int(seed), "error": None if pd.isna(error) else str(error)}
            for seed, error in zip(failed["seed"].head(limit), errors.head(limit), strict=True)
        ],
    }


def rate(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, trials)
    return {
        "rate": successes / trials if trials else None,
        "successes": int(successes),
        "episodes": int(trials),
        "ci95": [low, high],
    }


def mean_interval(values: np.ndarray) -> dict[str, Any]:
    """Mean with a 95 % Student-t interval (None where it is undefined)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    mean = float(values.mean())
    if n < 2 or float(values.std()) == 0.0:
        return {"mean": mean, "ci95": [mean, mean], "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n}


def dr_breakdown(episodes: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> dict[str, list[dict]]:
    """Success by equal-width bins of each randomized parameter over its configured range."""
    out: dict[str, list[dict]] = {}
    for name, (low, high) in ranges.items():
        column = f"dr_{name}"
        if column not in episodes or high <= low:
            continue
        edges, index = equal_width_bins(episodes[column].to_numpy(), low, high, DR_BINS)
        rows = []
        for b in range(DR_BINS):
            mask = index == b
            rows.append(
                {
                    "bin": [float(edges[b]), float(edges[b + 1])],
                    **rate(int(episodes["success"][mask].sum()), int(mask.sum())),
                }
            )
        out[name] = rows
    return out


def summarize(episodes: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """The policy's figures over the episodes whose base policy did not fail."""
    episodes = episodes[~base_failed(episodes)].sort_values("seed").reset_index(drop=True)
    n = len(episodes)
    frame = episodes.assign(final_yaw_error_abs=episodes["final_yaw_error"].abs())
    return {
        "episodes": n,
        "success": rate(int(episodes["success"].sum()), n),  # the headline: success_at_end
        "headline": "success_at_end",
        "success_once": rate(int(episodes["success_once"].sum()), n),
        "success_at_end": rate(int(episodes["success_at_end"].sum()), n),
        "sim_unstable": int(episodes["sim_unstable"].sum()),
        "means": {c: mean_interval(frame[c].to_numpy()) for c in MEAN_COLUMNS},
        "success_step": mean_interval(episodes["success_step"].dropna().to_numpy()),
        "by_dr_bin": dr_breakdown(episodes, ranges),
    }


def mcnemar(a: pd.DataFrame, b: pd.DataFrame, label_a: str = "A", label_b: str = "B") -> dict[str, Any]:
    """Paired comparison on the same seeds with the exact (binomial) McNemar test."""
    for label, frame in ((label_a, a), (label_b, b)):
        failed = sorted(frame.loc[base_failed(frame), "seed"].tolist())
        if failed:
            raise ValueError(
                f"{label}: the base policy failed on {len(failed)} episodes (seeds {failed[:5]}...), which are no "
                "results to compare; rerun that evaluation with --resume once its server answers"
            )
    seeds_a, seeds_b = set(a["seed"]), set(b["seed"])
    if seeds_a != seeds_b:
        only_a = sorted(seeds_a - seeds_b)[:5]
        only_b = sorted(seeds_b - seeds_a)[:5]
        raise ValueError(
            f"the two evaluations must cover the same seeds; only in {label_a}: {only_a}..., "
            f"only in {label_b}: {only_b}..."
        )
    joined = a[["seed", "success"]].merge(b[["seed", "success"]], on="seed", suffixes=("_a", "_b"))
    sa, sb = joined["success_a"].astype(bool), joined["success_b"].astype(bool)
    both, only_a_n, only_b_n, neither = (
        int((sa & sb).sum()),
        int((sa & ~sb).sum()),
        int((~sa & sb).sum()),
        int((~sa & ~sb).sum()),
    )
    discordant = only_a_n + only_b_n
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(only_a_n, discordant, 0.5).pvalue)
    return {
        "a": label_a,
        "b": label_b,
        "episodes": len(joined),
        "table": {"both": both, "only_a": only_a_n, "only_b": only_b_n, "neither": neither},
        "success_a": rate(int(sa.sum()), len(joined)),
        "success_b": rate(int(sb.sum()), len(joined)),
        "difference": (int(sb.sum()) - int(sa.sum())) / len(joined) if len(joined) else None,
        "mcnemar_exact_p": p_value,
    }


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, label_a: str = "A", label_b: str = "B") -> dict[str, Any]:
    """McNemar's paired table and p-value, and which failure modes B fixes and which it makes."""
    result = mcnemar(a, b, label_a, label_b)
    result["failure_modes"] = paired_failure_breakdown(a, b)
    return result


def format_comparison(result: dict[str, Any]) -> str:
    t = result["table"]
    sa, sb = result["success_a"], result["success_b"]
    width = max(len(result["a"]), len(result["b"]), 8)
    return "\n".join(
        [
            f"paired comparison on {result['episodes']} seeds",
            f"  {'':{width}}  {'B succeeds':>11}  {'B fails':>8}",
            f"  {'A succeeds':{width}}  {t['both']:>11}  {t['only_a']:>8}",
            f"  {'A fails':{width}}  {t['only_b']:>11}  {t['neither']:>8}",
            f"  A = {result['a']}: {100 * sa['rate']:.1f} % [{100 * sa['ci95'][0]:.1f}, {100 * sa['ci95'][1]:.1f}]",
            f"  B = {result['b']}: {100 * sb['rate']:.1f} % [{100 * sb['ci95'][0]:.1f}, {100 * sb['ci95'][1]:.1f}]",
            f"  exact McNemar p = {result['mcnemar_exact_p']:.4g}",
            *([format_breakdown(result["failure_modes"])] if "failure_modes" in result else []),
        ]
    )


def _status(report: dict[str, Any]) -> str:
    if report["complete"]:
        return "complete"
    failed = report.get("base_policy_failures", {}).get("count", 0)
    extra = f"; base policy failed on {failed}" if failed else ""
    return f"INCOMPLETE ({report['episodes_done']}/{report['episodes_requested']} episodes with results{extra})"


def _failure_lines(report: dict[str, Any]) -> list[str]:
    failures = report.get("base_policy_failures", {"count": 0, "episodes": []})
    if not failures["count"]:
        return []
    lines = [f"base policy failed on {failures['count']} episodes (excluded from every figure):"]
    lines += [f"  seed {f['seed']}: {f['error']}" for f in failures["episodes"][:5]]
    if failures["count"] > 5:
        lines.append(f"  ... {failures['count'] - 5} more in report.json")
    return lines


def format_summary(report: dict[str, Any]) -> str:
    r = report["results"]
    head = f"evaluation {_status(report)}: policy {report['config']['policy']}, dr {report['config']['dr']}"
    if r is None:
        return "\n".join([head, "no episode has a result", *_failure_lines(report)])
    lines = [f"{'metric':<28} {'value':>10}   95 % interval"]

    def pct(entry):
        return f"{100 * entry['rate']:>9.1f}%   [{100 * entry['ci95'][0]:.1f}, {100 * entry['ci95'][1]:.1f}]"

    lines.append(f"{'success':<28} {pct(r['success'])}  ({r['success']['successes']}/{r['episodes']})")
    lines.append(f"{'success_once':<28} {pct(r['success_once'])}")
    lines.append(f"{'success_at_end':<28} {pct(r['success_at_end'])}")
    for name, entry in r["means"].items():
        if entry["mean"] is None:
            continue
        lines.append(f"{name:<28} {entry['mean']:>10.4g}   [{entry['ci95'][0]:.4g}, {entry['ci95'][1]:.4g}]")
    lines.append(f"{'sim_unstable episodes':<28} {r['sim_unstable']:>10d}")
    return "\n".join([head, *lines, *_failure_lines(report)])


def write_plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = report["results"]["by_dr_bin"]
    if not bins:
        return
    ncols = min(3, len(bins))
    nrows = math.ceil(len(bins) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(bins) :]:
        ax.set_visible(False)
    for ax, (name, rows) in zip(axes.flat, bins.items(), strict=False):
        centres = [(r["bin"][0] + r["bin"][1]) / 2 for r in rows]
        rates = [r["rate"] if r["rate"] is not None else np.nan for r in rows]
        low = [r["rate"] - r["ci95"][0] if r["rate"] is not None else 0 for r in rows]
        high = [r["ci95"][1] - r["rate"] if r["rate"] is not None else 0 for r in rows]
        width = (rows[0]["bin"][1] - rows[0]["bin"][0]) * 0.85
        ax.bar(centres, rates, width=width, yerr=[low, high], capsize=3, color="#4878a8")
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for row in axes:
        row[0].set_ylabel("success (95 % Wilson)", fontsize=8)
    fig.suptitle(f"success by DR bin: {report['config']['policy']} on {report['config']['dr']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(report: dict[str, Any], path: Path, plot_name: str | None) -> None:
    r = report["results"]
    lines = [
        f"# Evaluation: {report['config']['policy']} on {report['config']['dr']}",
        "",
        f"Status: **{'complete' if report['complete'] else 'INCOMPLETE'}** "
        f"({report['episodes_done']}/{report['episodes_requested']} episodes with results). "
        f"Schema v{report['schema_version']}, git {report['provenance']['git_commit']}.",
        "",
    ]
    failures = report.get("base_policy_failures", {"count": 0, "episodes": []})
    if failures["count"]:
        lines += [
            f"**The base policy failed on {failures['count']} episodes**: they are no results of the policy and "
            "are left out of every figure below; `--resume` reruns them.",
            "",
            *(f"* seed {f['seed']}: {f['error']}" for f in failures["episodes"]),
            "",
        ]
    if r is None:
        path.write_text("\n".join([*lines, "No episode has a result."]), encoding="utf-8")
        return
    lines += ["| metric | value | 95 % interval |", "| --- | --- | --- |"]
    for key in ("success", "success_once", "success_at_end"):
        e = r[key]
        lines.append(
            f"| {key} | {100 * e['rate']:.1f} % ({e['successes']}/{e['episodes']}) | "
            f"[{100 * e['ci95'][0]:.1f}, {100 * e['ci95'][1]:.1f}] |"
        )
    for name, e in r["means"].items():
        if e["mean"] is not None:
            lines.append(f"| mean {name} | {e['mean']:.4g} | [{e['ci95'][0]:.4g}, {e['ci95'][1]:.4g}] |")
    lines += ["", "## Success by domain-randomization bin", ""]
    if plot_name:
        lines += [f"![success by DR bin]({plot_name})", ""]
    for name, rows in r["by_dr_bin"].items():
        lines.append(
            f"**{name}**: "
            + ", ".join(f"[{b['bin'][0]:.3g}, {b['bin'][1]:.3g}) {b['successes']}/{b['episodes']}" for b in rows)
        )
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def load_episodes(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "episodes.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `rllib-paper eval ... --out {run_dir}` first")
    return pd.read_parquet(path)


def compare_main(dir_a: str, dir_b: str, out: str | None = None, plot: str | None = None) -> int:
    """`rllib-paper eval --compare A B`: print the paired table and p-value, draw the paired figure
    (``plot``; default beside ``out`` as .png, else compare.png here), then one JSON line."""
    from rllib_paper.evaluation.compare_plot import write_compare_plot

    result = paired_comparison(load_episodes(dir_a), load_episodes(dir_b), label_a=str(dir_a), label_b=str(dir_b))
    print(format_comparison(result))
    if out:
        dump_json(result, Path(out))
    figure = Path(plot) if plot else (Path(out).with_suffix(".png") if out else Path("compare.png"))
    write_compare_plot(result, figure)
    print(f"wrote {figure}")
    print(json.dumps({"compare": result}))
    return 0
