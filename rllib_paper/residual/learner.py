"""PPO's torch learner with two options residual RL asks for: a critic warm-up and a critic
learning rate of its own.

Why. The residual starts as "no correction" (rl_module.py), but its value function starts as
noise. PPO's first updates then follow advantages from a critic that knows nothing about the
base policy's returns, and over a brittle base (a chunked BC policy) a few such updates are
enough to move the residual somewhere it has to unlearn. Both options make the critic good
before (or faster than) the actor moves:

* ``critic_warmup_steps``: until this many env steps have been sampled, updates train the value
  function only (its loss alone; the actor, its std and PPO's KL coefficient stay as they
  are), on rollouts of the base plus the initial exploration noise.
* ``critic_lr_scale``: the critic gets its own Adam optimizer with the actor's learning-rate
  schedule times this factor, and its own gradient clipping. With one optimizer the global
  gradient norm is mostly the value loss's (returns are tens, the policy loss about 0.1), so
  ``grad_clip`` scales the policy gradient down whenever the critic is wrong; two optimizers
  clip each network by its own norm.

Both default to off (0 and None), and then every update is RLlib's PPOTorchLearner's, to the
bit. The settings reach the learner in ``learner_config_dict`` (training/algorithm.py).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

WARMUP_KEY = "critic_warmup_steps"
CRITIC_LR_KEY = "critic_lr_scale"
CRITIC_PREFIXES = ("encoder.critic_encoder.", "vf.")  # DefaultPPOTorchRLModule's value network


def scaled_schedule(lr: float | list, factor: float) -> float | list:
    """An RLlib learning rate (a constant or [[step, value], ...]) times ``factor``."""
    if isinstance(lr, (int, float)):
        return float(lr) * factor
    return [[step, float(value) * factor] for step, value in lr]


class ResidualPPOTorchLearner(PPOTorchLearner):
    def build(self) -> None:
        options = self.config.learner_config_dict
        self.critic_warmup_steps = int(options.get(WARMUP_KEY, 0))
        self.critic_lr_scale = options.get(CRITIC_LR_KEY)
        self._env_steps_sampled = 0
        super().build()

    @property
    def warming_up(self) -> bool:
        return self._env_steps_sampled < self.critic_warmup_steps

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        if self.critic_lr_scale is None:
            return super().configure_optimizers_for_module(module_id, config)
        module = self._module[module_id]
        named = list(module.named_parameters())
        critic = [p for name, p in named if name.startswith(CRITIC_PREFIXES)]
        actor = [p for name, p in named if not name.startswith(CRITIC_PREFIXES)]
        if not critic or not actor or any(name.startswith("encoder.encoder.") for name, _ in named):
            raise ValueError(f"critic_lr_scale: module {module_id!r} shares layers between actor and critic")
        self.register_optimizer(
            module_id=module_id,
            optimizer_name="actor",
            optimizer=torch.optim.Adam(actor),
            params=actor,
            lr_or_lr_schedule=config.lr,
        )
        self.register_optimizer(
            module_id=module_id,
            optimizer_name="critic",
            optimizer=torch.optim.Adam(critic),
            params=critic,
            lr_or_lr_schedule=scaled_schedule(config.lr, float(self.critic_lr_scale)),
        )

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self._env_steps_sampled = int(timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        total = super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
        if not self.warming_up:
            return total
        # The value loss alone (as PPO computes it, masks and clip included): no gradient
        # reaches the actor's mean or std.
        module = self.module[module_id].unwrapped()
        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        loss = torch.clamp(torch.pow(values - batch[Postprocessing.VALUE_TARGETS], 2.0), 0, config.vf_clip_param)
        if Columns.LOSS_MASK in batch:
            mask = batch[Columns.LOSS_MASK]
            return config.vf_loss_coeff * torch.sum(loss[mask]) / torch.sum(mask)
        return config.vf_loss_coeff * torch.mean(loss)

    def _update_module_kl_coeff(self, *, module_id, config, kl_loss: float) -> None:
        # The actor does not move while the critic warms up: a KL of 0 would halve the
        # coefficient every iteration and leave PPO without its KL penalty afterwards.
        if not self.warming_up:
            super()._update_module_kl_coeff(module_id=module_id, config=config, kl_loss=kl_loss)
