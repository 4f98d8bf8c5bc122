"""Where the shipped data folders are: the scene assets, the training configs and the sweep files.

A wheel (`pip install .`) carries ``assets/`` and ``tune_configs/`` inside the package
(``pyproject.toml`` maps them there); a source checkout keeps them at the top level of the
repository, beside ``pyproject.toml``. ``RLLIB_PAPER_<NAME>`` (e.g. ``RLLIB_PAPER_ASSETS``)
points at another copy. One rule, in one place, so no module guesses its way up the tree.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED = ("assets", "tune_configs", "configs")


def shipped_dir(name: str) -> Path:
    """The directory of shipped data folder ``name`` (one of SHIPPED)."""
    if name not in SHIPPED:
        raise ValueError(f"shipped_dir({name!r}): allowed names are {list(SHIPPED)}")
    override = os.environ.get(f"RLLIB_PAPER_{name.upper()}")
    if override:
        return Path(override)
    installed = PACKAGE_DIR / name
    if installed.is_dir():
        return installed
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    raise FileNotFoundError(
        f"cannot find the shipped folder {name!r}: not in the installed package ({installed}) nor in a source "
        f"checkout; reinstall rllib-paper or set RLLIB_PAPER_{name.upper()} to the folder"
    )
