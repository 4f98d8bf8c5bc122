"""An installed wheel finds its scene assets, shipped configs and sweep files outside the checkout.

The full acceptance check (a fresh venv, `pip install .` with constraints.txt, `rllib-paper eval`
from another directory with no environment variables) is the README's; this is its fast core:
the wheel's own files, imported from a directory that is not the checkout.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_runs_from_outside_the_checkout(tmp_path):
    # Build from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "source"
    skip = shutil.ignore_patterns(".venv", ".git", "runs", "results", "build", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=skip)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(source),
            "-w",
            str(wheels),
        ],
        check=True,
        cwd=tmp_path,
        timeout=300,
    )
    (wheel,) = wheels.glob("rllib_paper-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("assets/paper_scene.xml", "tune_configs/smoke.yaml", "configs/residual_scripted.yaml"):
        assert f"rllib_paper/{shipped}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(site)}  # no MUJOCO_GL, no RLLIB_PAPER_*
    script = (
        "import json, rllib_paper, os\n"
        "from rllib_paper.resources import shipped_dir\n"
        "from rllib_paper.training.config import load_train_config\n"
        "from rllib_paper.tuning.config import load_sweep_config\n"
        "assert rllib_paper.__file__.startswith(os.environ['PYTHONPATH']), rllib_paper.__file__\n"
        "print(json.dumps({n: str(shipped_dir(n)) for n in ('assets', 'configs', 'tune_configs')}))\n"
        "load_train_config('residual_scripted'); load_sweep_config('smoke')\n"
        "from rllib_paper.cli import main\n"
        "assert main(['rollout', '--episodes', '1', '--max-steps', '15', '--quiet']) == 0\n"
        # Headless by default: no MUJOCO_GL and no display, yet the cameras render.
        "raise SystemExit(main(['frames', '--mapping', 'so100', '--out', 'frames']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    paths = done.stdout.splitlines()[0]
    assert str(site) in paths and str(ROOT) not in paths and str(source) not in paths
    assert '"rollout": "scripted"' in done.stdout
    assert list((elsewhere / "frames").glob("*.png"))
