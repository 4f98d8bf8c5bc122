"""The residual policy network: RLlib's default PPO (or APPO) module, started as "no correction".

Two changes to ``DefaultPPOTorchRLModule`` (and ``DefaultAPPOTorchRLModule``, the same
networks plus APPO's target copies), both about iteration 0 behaving like the base:

* The mean's output layer is zero-initialised and the log-std is a free parameter set to
  ``log(init_std)``. The mean residual is then exactly 0 for any observation, and the
  exploration noise is small, so the first episodes are the base policy's episodes with a
  little jitter, and PPO's advantages measure what a correction changes. (A default
  initialisation gives random mean corrections of order 1, i.e. the full residual range,
  and the first iterations are spent unlearning them.)
* Observations are standardised by a fixed affine map (``obs_center``, ``obs_scale`` in the
  model config, from ``sim.observation.observation_normalizer``). Sheet and fingertip
  positions differ by millimetres in metres; unscaled, a tanh network barely sees them. A
  fixed map (not a running filter) lives inside the module, so a checkpoint alone is the
  whole policy: evaluation workers need no connector state.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.algorithms.appo.torch.default_appo_torch_rl_module import DefaultAPPOTorchRLModule
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns


class ResidualStartMixin:
    """The residual initialisation and the fixed observation map, for any module built like
    RLlib's default PPO module (``pi.net`` ending in the mean layer, a free ``pi.log_std``).
    Listed before the RLlib class, so every forward pass sees normalised observations."""

    def setup(self) -> None:
        super().setup()
        config = self.model_config
        center = config.get("obs_center")
        scale = config.get("obs_scale")
        dim = self.observation_space.shape[0]
        self.register_buffer(
            "obs_center", torch.as_tensor(center if center is not None else [0.0] * dim, dtype=torch.float32)
        )
        self.register_buffer(
            "obs_inv_scale",
            1.0 / torch.as_tensor(scale if scale is not None else [1.0] * dim, dtype=torch.float32),
        )
        init_std = float(config.get("init_std", 0.3))
        last = [m for m in self.pi.net.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
            if hasattr(self.pi, "log_std"):
                self.pi.log_std.fill_(math.log(init_std))

    def _normalized(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        batch[Columns.OBS] = (batch[Columns.OBS] - self.obs_center) * self.obs_inv_scale
        return batch

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return super()._forward(self._normalized(batch), **kwargs)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return super()._forward_train(self._normalized(batch), **kwargs)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Any:
        if embeddings is None:
            batch = self._normalized(batch)
        return super().compute_values(batch, embeddings)


class ResidualPPOTorchRLModule(ResidualStartMixin, DefaultPPOTorchRLModule):
    pass


class ResidualAPPOTorchRLModule(ResidualStartMixin, DefaultAPPOTorchRLModule):
    """APPO's learner copies ``encoder`` and ``pi`` into target networks after ``setup`` (so the
    target starts as the base too); the target's forward pass needs the same observation map."""

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return super().forward_target(self._normalized(batch))
