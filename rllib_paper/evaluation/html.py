"""``report.html``: one self-contained page per evaluation (tables and plots inline, videos linked).

The headline is ``success_at_end`` with its Wilson interval; then success by DR bin (the
plot, inlined as a data URI, and the table), the failures with their videos (linked relative
to the page, so the run directory can be moved or served as it is), the successes that have
videos, and the config and provenance. No external resource is fetched. A small inline
script marks ``<body data-loaded="1">`` once the plot image and every video have loaded
(what the headless-browser test reads).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

MAX_FAILURE_ROWS = 100  # failures listed in the table (the first by seed); all are in episodes.parquet

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.headline{font-size:2em;font-weight:600;margin:.2em 0} .muted{color:#666}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
video{max-width:100%;display:block;margin:.3em 0 1em} .incomplete{color:#b00;font-weight:600}
"""

_SCRIPT = """
(function(){
  var body = document.body, pending = 0;
  function done(){ if (--pending <= 0) body.dataset.loaded = "1"; }
  function failed(el){ body.dataset.failed = (body.dataset.failed || "") + " " + (el.currentSrc || el.src); }
  function watch(el, ready, event){
    pending++;
    if (ready(el)) { setTimeout(done, 0); return; }
    el.addEventListener(event, done, {once: true});
    el.addEventListener("error", function(){ failed(el); }, {once: true});
  }
  document.querySelectorAll("img").forEach(function(img){
    watch(img, function(e){ return e.complete && e.naturalWidth > 0; }, "load");
  });
  document.querySelectorAll("video").forEach(function(v){
    watch(v, function(e){ return e.readyState >= 2; }, "loadeddata");
  });
  if (pending === 0) body.dataset.loaded = "1";
})();
"""


def _pct(entry: dict[str, Any]) -> str:
    if entry.get("rate") is None:
        return "n/a"
    low, high = entry["ci95"]
    return f"{100 * entry['rate']:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{value}</{tag}>"

    head = "".join(cell("th", i, html.escape(str(h))) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _video(entry: dict[str, Any]) -> str:
    src = html.escape(entry["file"], quote=True)
    return (
        f"<p>seed {entry['seed']}: {'success' if entry['success'] else 'failure'}, {entry['steps']} steps "
        f'(<a href="{src}">{src}</a>)</p><video src="{src}" controls muted preload="auto"></video>'
    )


def render_html(report: dict[str, Any], episodes=None, plot_png: bytes | None = None) -> str:
    """The page for ``report`` (and its episodes table, for the failures list)."""
    config, results = report["config"], report["results"]
    esc = html.escape
    title = f"Evaluation: {config['policy']} on {config['dr']}"
    parts = [f"<h1>{esc(title)}</h1>"]
    if not report["complete"]:
        parts.append(
            f'<p class="incomplete">INCOMPLETE: {report["episodes_done"]}/{report["episodes_requested"]} episodes</p>'
        )
    if results is None:
        parts.append("<p>No episode finished.</p>")
    else:
        head = results.get("success_at_end", results["success"])
        parts += [
            f'<p class="headline" id="headline" data-rate="{head["rate"]}">{esc(_pct(head))}</p>',
            f'<p class="muted">success at end (after settling): {head["successes"]}/{head["episodes"]} episodes, '
            "95 % Wilson interval. Seeds "
            f"{config['seeds']['first']}..{config['seeds']['last']} ({config['seeds']['count']}); "
            f"settle {config['env']['task'].get('settle_after_success_steps', 0)} steps, "
            f"max sheet speed {config['env']['task'].get('settle_max_speed', 'n/a')} m/s.</p>",
        ]
        rows = [
            [esc(key), esc(_pct(results[key])), f"{results[key]['successes']}/{results[key]['episodes']}"]
            for key in ("success_at_end", "success_once")
            if key in results
        ]
        rows.append(["sim_unstable episodes", str(results["sim_unstable"]), ""])
        for name, entry in results["means"].items():
            if entry["mean"] is not None:
                rows.append(
                    [f"mean {esc(name)}", f"{entry['mean']:.4g}", f"[{entry['ci95'][0]:.4g}, {entry['ci95'][1]:.4g}]"]
                )
        parts.append(_table(["metric", "value", "95 % interval / count"], rows))
        parts.append("<h2>Success by domain-randomization bin</h2>")
        if plot_png:
            data = base64.b64encode(plot_png).decode("ascii")
            parts.append(f'<img id="dr-plot" alt="success by DR bin" src="data:image/png;base64,{data}">')
        for name, bins in results["by_dr_bin"].items():
            parts.append(f"<p><b>{esc(name)}</b></p>")
            parts.append(
                _table(
                    ["bin", "success", "95 % Wilson", "episodes"],
                    [
                        [
                            f"[{b['bin'][0]:.3g}, {b['bin'][1]:.3g})",
                            "n/a" if b["rate"] is None else f"{100 * b['rate']:.1f} %",
                            "" if b["rate"] is None else f"[{100 * b['ci95'][0]:.1f}, {100 * b['ci95'][1]:.1f}]",
                            f"{b['successes']}/{b['episodes']}",
                        ]
                        for b in bins
                    ],
                )
            )
    videos = {v["seed"]: v for v in report.get("videos", [])}
    parts.append("<h2>Failures</h2>")
    if episodes is not None and len(episodes):
        failed = episodes[~episodes["success"].astype(bool)].sort_values("seed")
        rows = []
        for r in failed.head(MAX_FAILURE_ROWS).to_dict("records"):
            seed = int(r["seed"])
            link = f'<a href="{esc(videos[seed]["file"], quote=True)}">video</a>' if seed in videos else ""
            rows.append(
                [
                    str(seed),
                    "yes" if r.get("success_once") else "no",
                    str(int(r["steps"])),
                    f"{100 * r['final_distance']:.1f}",
                    f"{r['final_corner_excess_mm']:.1f}",
                    "yes" if r["sim_unstable"] else "",
                    link,
                ]
            )
        more = len(failed) - len(rows)
        parts.append(f"<p>{len(failed)} failures{f' (the first {len(rows)} by seed listed)' if more > 0 else ''}.</p>")
        if rows:
            parts.append(
                _table(
                    ["seed", "crossed once", "steps", "final distance (cm)", "corner excess (mm)", "unstable", "video"],
                    rows,
                )
            )
    parts += [_video(v) for v in videos.values() if not v["success"]]
    successes = [v for v in videos.values() if v["success"]]
    if successes:
        parts.append("<h2>Successes with videos</h2>")
        parts += [_video(v) for v in successes]
    parts += [
        "<h2>Config</h2>",
        f"<pre>{esc(json.dumps(config, indent=1))}</pre>",
        "<h2>Provenance</h2>",
        f"<pre>{esc(json.dumps({'provenance': report['provenance'], 'run': report['run']}, indent=1))}</pre>",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(parts)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(report: dict[str, Any], out: str | Path, plot_name: str | None, episodes=None) -> Path:
    """Write ``out/report.html`` (atomically) beside report.json and return its path."""
    from rllib_paper.runtime.files import write_text_atomic

    out = Path(out)
    plot = (out / plot_name).read_bytes() if plot_name and (out / plot_name).is_file() else None
    return write_text_atomic(out / "report.html", render_html(report, episodes, plot))
