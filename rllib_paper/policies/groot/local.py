"""In-process GR00T N1.5: ``gr00t.model.policy.Gr00tPolicy`` on this process's GPU.

The ``gr00t`` package is not on PyPI; it comes from NVIDIA's Isaac-GR00T repository and
needs CUDA. Where it does not import we raise one error that says what to do.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from rllib_paper.policies.groot.config import GrootMappingConfig

INSTALL_HINT = (
    "the in-process GR00T backend needs NVIDIA's `gr00t` package (not on PyPI): on a GPU node run "
    "`pip install -e '.[groot]'` and then `pip install -e .` inside a clone of "
    "https://github.com/NVIDIA/Isaac-GR00T (with its CUDA and flash-attn requirements); or serve "
    "the model with Isaac-GR00T's inference service and use the server backend, "
    "--policy 'groot:tcp://HOST:5555?config=...'"
)


class GrootUnavailable(RuntimeError):
    """The in-process backend was asked for where ``gr00t`` does not import."""


def _import_gr00t():
    try:
        policy_module = importlib.import_module("gr00t.model.policy")
    except ImportError as exc:
        raise GrootUnavailable(f"{INSTALL_HINT} ({exc})") from None
    return policy_module


def _data_config(name: str) -> Any:
    """A data config from upstream's DATA_CONFIG_MAP, or ``module:Class`` for a custom one."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        return getattr(importlib.import_module(module_name), attr)()
    data_configs = importlib.import_module("gr00t.experiment.data_config")
    table = getattr(data_configs, "DATA_CONFIG_MAP", {})
    if name not in table:
        raise GrootUnavailable(
            f"data_config={name!r} is not in gr00t's DATA_CONFIG_MAP ({sorted(table)}); give 'module:ClassName' "
            "of a data config class for a custom layout (e.g. the arm_0 layout of the paper_return fine-tune)"
        )
    return table[name]


class LocalGrootBackend:
    """Holds a Gr00tPolicy; ``infer`` takes and returns GR00T modality dicts like the server."""

    def __init__(
        self,
        model_path: str,
        mapping: GrootMappingConfig,
        *,
        data_config: str | None = None,
        embodiment_tag: str | None = None,
        denoising_steps: int = 4,
        device: str = "cuda",
    ) -> None:
        policy_module = _import_gr00t()
        config = _data_config(data_config or mapping.data_config)
        self.policy = policy_module.Gr00tPolicy(
            model_path=model_path,
            embodiment_tag=embodiment_tag or mapping.embodiment_tag,
            modality_config=config.modality_config(),
            modality_transform=config.transform(),
            denoising_steps=denoising_steps,
            device=device,
        )
        self.model_path = model_path

    def infer(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.policy.get_action(dict(observation)))

    def close(self) -> None:
        return None
