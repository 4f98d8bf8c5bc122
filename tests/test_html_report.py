"""report.html: one self-contained page, checked in a real headless browser (Debian's chromium).

`make test-setup` installs chromium where apt is usable (as root); elsewhere the browser test
skips and says so.
"""

import html
import re
import shutil
import subprocess

import pytest

from rllib_paper.config import EnvConfig, RandomizationConfig, ResidualConfig, TaskConfig
from rllib_paper.evaluation.distributed import EvalConfig, evaluate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The arm holds its home pose; seed 2 starts inside the frame (a success), the others do not.
ENV = EnvConfig(
    randomization=RandomizationConfig(paper_x=(0.15, 0.21), paper_y=(-0.01, 0.01), paper_yaw=(0.0, 0.0)),
    residual=ResidualConfig(base_policy="zero"),
    task=TaskConfig(max_steps=8),
)


@pytest.fixture(scope="module")
def run_dir(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "eval"
    config = EvalConfig(
        env=ENV,
        episodes=4,
        seed=0,
        workers=2,
        shard_size=2,
        settle_steps=3,
        out=str(out),
        progress=False,
        videos=2,
        video_size=(48, 64),
    )
    return out, evaluate(config)


def test_every_evaluation_writes_one_self_contained_page(run_dir):
    out, report = run_dir
    page = (out / "report.html").read_text(encoding="utf-8")
    # Nothing fetched from elsewhere: the plot is inline, the videos are relative links.
    assert 'src="data:image/png;base64,' in page and "http://" not in page and "https://" not in page
    sources = re.findall(r'<video src="([^"]+)"', page)
    assert sources == [v["file"] for v in report["videos"] if not v["success"]] + [
        v["file"] for v in report["videos"] if v["success"]
    ]
    assert all((out / s).is_file() and not s.startswith("/") for s in sources)
    for text in ("success at end", "Success by domain-randomization bin", "Failures", "Config", "Provenance"):
        assert text in page
    assert html.escape(report["provenance"]["git_commit"]) in page


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: `make test-setup` installs Debian's chromium where apt is usable (as root)",
)
def test_report_page_loads_in_a_headless_browser_with_its_headline_plot_and_video(run_dir, tmp_path):
    out, report = run_dir
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--mute-audio",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            (out / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    dom = result.stdout
    assert "<body" in dom, result.stderr[-2000:]
    head = report["results"]["success_at_end"]
    expected = f"{100 * head['rate']:.1f} % [{100 * head['ci95'][0]:.1f}, {100 * head['ci95'][1]:.1f}]"
    assert re.search(r'id="headline"[^>]*>([^<]+)<', dom).group(1) == expected
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert "data-failed" not in body, body
    assert 'data-loaded="1"' in body, body  # the plot image loaded and every video fired loadeddata
    assert dom.count("<video") == len(report["videos"]) >= 1 and 'id="dr-plot"' in dom
