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

One more, about cost rather than learning: ``foreach_update`` (``learners.foreach_update``, on by
default) makes the same update in fewer tensor operations. Our network is small (2 x 256), so a
minibatch update is dominated by per-tensor work around it, not by its matrix products: RLlib
checks every gradient for NaN twice (two host syncs per parameter), clips by one norm per tensor
and steps Adam's per-tensor loop. With the option on, one finite check covers all gradients (the
same decision; a non-finite gradient still takes RLlib's own path, which zeroes it), the global
norm and the clip use torch's foreach kernels with RLlib's formula, and Adam runs its foreach
implementation. The arithmetic is the same; results agree with RLlib's to float rounding
(tests/test_residual_learner.py), not necessarily to the bit.
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
FOREACH_KEY = "foreach_update"
CRITIC_PREFIXES = ("encoder.critic_encoder.", "vf.")  # DefaultPPOTorchRLModule's value network


def scaled_schedule(lr: float | list, factor: float) -> float | list:
    """An RLlib learning rate (a constant or [[step, value], ...]) times ``factor``."""
    if isinstance(lr, (int, float)):
        return float(lr) * factor
    return [[step, float(value) * factor] for step, value in lr]


def foreach_clip_by_global_norm(gradients_dict: dict, *, grad_clip: float | None = None, grad_clip_by: str = "value"):
    """RLlib's ``clip_gradients`` (torch_utils) with torch's foreach kernels for "global_norm":
    the same formula (non-finite per-tensor norms mapped as RLlib maps them, the coefficient
    ``grad_clip / max(norm + 1e-6, grad_clip)``), two kernels instead of two ops per tensor."""
    from ray.rllib.utils.torch_utils import clip_gradients

    if grad_clip is None or grad_clip_by != "global_norm":
        return clip_gradients(gradients_dict, grad_clip=grad_clip, grad_clip_by=grad_clip_by)
    grads = [g.detach() for g in gradients_dict.values() if g is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack(torch._foreach_norm(grads, 2.0)).nan_to_num(neginf=-10e8, posinf=10e8)
    total_norm = torch.norm(norms, 2.0).nan_to_num(neginf=-10e8, posinf=10e8)
    coeff = torch.clamp(grad_clip / torch.clamp(total_norm + 1e-6, min=grad_clip), max=1.0)
    torch._foreach_mul_(grads, coeff)
    return total_norm


class ResidualPPOTorchLearner(PPOTorchLearner):
    def build(self) -> None:
        options = self.config.learner_config_dict
        self.critic_warmup_steps = int(options.get(WARMUP_KEY, 0))
        self.critic_lr_scale = options.get(CRITIC_LR_KEY)
        self.foreach_update = bool(options.get(FOREACH_KEY, False))
        self._env_steps_sampled = 0
        super().build()

    @property
    def warming_up(self) -> bool:
        return self._env_steps_sampled < self.critic_warmup_steps

    def _adam(self, params) -> torch.optim.Adam:
        return torch.optim.Adam(params, foreach=True) if self.foreach_update else torch.optim.Adam(params)

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self._module[module_id]
        if self.critic_lr_scale is None:
            if not self.foreach_update:
                return super().configure_optimizers_for_module(module_id, config)
            params = self.get_parameters(module)  # as RLlib's default: one Adam over the module
            self.register_optimizer(
                module_id=module_id, optimizer=self._adam(params), params=params, lr_or_lr_schedule=config.lr
            )
            return None
        named = list(module.named_parameters())
        critic = [p for name, p in named if name.startswith(CRITIC_PREFIXES)]
        actor = [p for name, p in named if not name.startswith(CRITIC_PREFIXES)]
        if not critic or not actor or any(name.startswith("encoder.encoder.") for name, _ in named):
            raise ValueError(f"critic_lr_scale: module {module_id!r} shares layers between actor and critic")
        self.register_optimizer(
            module_id=module_id,
            optimizer_name="actor",
            optimizer=self._adam(actor),
            params=actor,
            lr_or_lr_schedule=config.lr,
        )
        self.register_optimizer(
            module_id=module_id,
            optimizer_name="critic",
            optimizer=self._adam(critic),
            params=critic,
            lr_or_lr_schedule=scaled_schedule(config.lr, float(self.critic_lr_scale)),
        )

    def _set_optimizer_lr(self, optimizer, lr) -> None:
        # RLlib hands a scheduled lr over as a tensor; torch's foreach Adam takes a float only.
        super()._set_optimizer_lr(optimizer, lr=float(lr) if self.foreach_update else lr)

    def _get_clip_function(self):
        if self.foreach_update:
            return foreach_clip_by_global_norm
        return super()._get_clip_function()

    def apply_gradients(self, gradients_dict) -> None:
        grads = [g for g in gradients_dict.values() if g is not None]
        plain = self._grad_scalers is None and self._lr_scheduler_classes is None
        if not (self.foreach_update and plain and grads) or self.config.torch_skip_nan_gradients:
            return super().apply_gradients(gradients_dict)
        if not bool(torch.isfinite(torch.cat([g.reshape(-1) for g in grads])).all()):
            return super().apply_gradients(gradients_dict)  # RLlib's path: warns, zeroes, steps
        for param_id, grad in gradients_dict.items():
            self._params[param_id].grad = grad
        for module_id, optimizer_names in self._module_optimizers.items():
            for optimizer_name in optimizer_names:
                self.get_optimizer(module_id, optimizer_name).step()
        return None

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
