"""The paired figure of ``eval --compare``: the two success rates with their Wilson intervals and
the paired table's discordant counts (only A succeeds, only B succeeds) with the exact McNemar p."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_compare_plot(result: dict[str, Any], path: str | Path) -> Path:
    """Draw ``report.mcnemar``'s result into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rllib_paper.runtime.files import atomic_write

    rates = [result["success_a"], result["success_b"]]
    labels = [f"A: {result['a']}", f"B: {result['b']}"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    values = [r["rate"] if r["rate"] is not None else 0.0 for r in rates]
    errors = [
        [v - r["ci95"][0] for v, r in zip(values, rates, strict=True)],
        [r["ci95"][1] - v for v, r in zip(values, rates, strict=True)],
    ]
    left.barh([1, 0], values, xerr=errors, capsize=4, color=["#8c8c8c", "#4878a8"])
    for y, (v, r) in zip([1, 0], zip(values, rates, strict=True), strict=True):
        low, high = r["ci95"]
        text = f"{100 * v:.1f} % [{100 * low:.1f}, {100 * high:.1f}]  ({r['successes']}/{r['episodes']})"
        inside = high > 0.55  # past the interval's end there is no room: write inside the bar, from its start
        left.text(
            0.02 if inside else high + 0.03,
            y,
            text,
            va="center",
            ha="left",
            fontsize=7,
            color="white" if inside and v > 0.5 else "black",
        )
    left.set_yticks([1, 0], [label[:48] for label in labels], fontsize=7)
    left.set_xlim(0, 1)
    left.set_xlabel("success (95 % Wilson interval)", fontsize=8)
    left.tick_params(axis="x", labelsize=7)
    t = result["table"]
    right.bar([0, 1], [t["only_a"], t["only_b"]], color=["#8c8c8c", "#4878a8"])
    right.set_xticks([0, 1], ["only A succeeds", "only B succeeds"], fontsize=7)
    for x, n in enumerate((t["only_a"], t["only_b"])):
        right.text(x, n, str(n), ha="center", va="bottom", fontsize=8)
    right.set_ylabel("discordant seeds", fontsize=8)
    right.tick_params(axis="y", labelsize=7)
    right.set_title(
        f"both {t['both']}, neither {t['neither']}; exact McNemar p = {result['mcnemar_exact_p']:.3g}", fontsize=8
    )
    fig.suptitle(f"paired comparison on {result['episodes']} seeds", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
