"""The residual's PPO learner: a critic warm-up that leaves the actor untouched, a critic with
its own optimizer, separate actor and critic networks, and RLlib's learner when both are off."""

import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from test_train import TINY

from rllib_paper.config import ConfigError
from rllib_paper.training.algorithm import build_algorithm_config, keep_trainable_logs_in
from rllib_paper.training.config import load_train_config


def _algo(overrides, tmp_path):
    keep_trainable_logs_in(tmp_path / "rllib")  # RLlib's logs under the test's dir, not ~/ray_results
    return build_algorithm_config(load_train_config(None, overrides)).build_algo()


def _weights(algo) -> dict[str, torch.Tensor]:
    module = algo.learner_group._learner.module[DEFAULT_MODULE_ID]
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _changed(before: dict, after: dict, prefix: str) -> bool:
    names = [n for n in before if n.startswith(prefix)]
    assert names, prefix
    return any(not torch.equal(before[n], after[n]) for n in names)


def test_critic_warmup_trains_the_value_function_only_then_the_actor(ray_local, tmp_path):
    # About 160 env steps an iteration: iterations 1 and 2 fall inside 400 warm-up steps, 3 not.
    overrides = [*TINY, "ppo.critic_warmup_steps=400", "ppo.vf_share_layers=false"]
    algo = _algo(overrides, tmp_path)
    try:
        start = _weights(algo)
        learner = algo.learner_group._learner
        kl_coeff = float(learner.curr_kl_coeffs_per_module[DEFAULT_MODULE_ID])
        for _ in range(2):
            algo.train()
        warm = _weights(algo)
        assert learner.warming_up
        for prefix in ("pi.", "encoder.actor_encoder."):  # the mean, the std and the actor's features
            assert not _changed(start, warm, prefix)
        assert _changed(start, warm, "vf.") and _changed(start, warm, "encoder.critic_encoder.")
        assert float(learner.curr_kl_coeffs_per_module[DEFAULT_MODULE_ID]) == kl_coeff  # not halved to nothing
        algo.train()
        assert not learner.warming_up
        assert _changed(warm, _weights(algo), "pi.")
    finally:
        algo.stop()


def test_critic_lr_scale_gives_the_critic_its_own_optimizer(ray_local, tmp_path):
    overrides = [*TINY, "ppo.critic_lr_scale=4", "ppo.vf_share_layers=false", "ppo.lr=0.001"]
    algo = _algo(overrides, tmp_path)
    try:
        learner = algo.learner_group._learner
        named = dict(learner.get_optimizers_for_module(DEFAULT_MODULE_ID))
        assert set(named) == {"actor", "critic"}
        lrs = {name: opt.param_groups[0]["lr"] for name, opt in named.items()}
        assert lrs["actor"] == pytest.approx(0.001) and lrs["critic"] == pytest.approx(0.004)
        critic_ids = {id(p) for group in named["critic"].param_groups for p in group["params"]}
        module = learner.module[DEFAULT_MODULE_ID]
        for name, p in module.named_parameters():
            assert (id(p) in critic_ids) == name.startswith(("vf.", "encoder.critic_encoder.")), name
        before = _weights(algo)
        algo.train()
        after = _weights(algo)
        assert _changed(before, after, "pi.") and _changed(before, after, "vf.")
    finally:
        algo.stop()


def test_defaults_are_rllibs_ppo_one_optimizer_and_separate_networks(ray_local, tmp_path):
    # The module's model config replaces the one PPOConfig builds, so our default must be what
    # RLlib's PPO puts there (PPOConfig adds vf_share_layers=False to every model config); a
    # shared stack by default cost the Dec 1 residuals several points (docs/experiments.md).
    from ray.rllib.algorithms.ppo import PPOConfig

    algo = _algo(TINY, tmp_path)
    try:
        learner = algo.learner_group._learner
        assert [name for name, _ in learner.get_optimizers_for_module(DEFAULT_MODULE_ID)] == ["default_optimizer"]
        assert not learner.warming_up
        names = list(_weights(algo))
        assert not any(n.startswith("encoder.encoder.") for n in names)
        assert any(n.startswith("encoder.actor_encoder.") for n in names)
        assert any(n.startswith("encoder.critic_encoder.") for n in names)
        module_config = learner.module[DEFAULT_MODULE_ID].model_config
        assert module_config["vf_share_layers"] is PPOConfig().model_config["vf_share_layers"]
    finally:
        algo.stop()


def test_vf_share_layers_true_builds_one_stack(ray_local, tmp_path):
    algo = _algo([*TINY, "ppo.vf_share_layers=true"], tmp_path)
    try:
        names = list(_weights(algo))
        assert any(n.startswith("encoder.encoder.") for n in names)
        assert not any(n.startswith("encoder.critic_encoder.") for n in names)
    finally:
        algo.stop()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["ppo.critic_warmup_steps=-1"], r"ppo.critic_warmup_steps=-1: allowed range is \[0, inf\]"),
        (["ppo.critic_lr_scale=0", "ppo.vf_share_layers=false"], r"ppo.critic_lr_scale=0: allowed range"),
        (
            ["ppo.critic_lr_scale=3", "ppo.vf_share_layers=true"],
            r"ppo.critic_lr_scale=3 needs ppo.vf_share_layers=false",
        ),
        (["ppo.vf_share_layers=maybe"], r"ppo.vf_share_layers='maybe': expected true or false"),
        (["learners.foreach_update=maybe"], r"learners.foreach_update=.maybe.: expected true or false"),
        (["algorithm=appo", "ppo.critic_warmup_steps=1000"], r"algorithm='appo' does not support them"),
    ],
)
def test_bad_learner_options_are_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, overrides)


def test_foreach_update_is_rllibs_update_to_float_rounding(ray_local, tmp_path):
    """Same seed, same sampled batches: one iteration with learners.foreach_update on and off
    moves every weight the same way (equal to float rounding), with foreach Adam and clipping."""
    weights = {}
    for foreach in (False, True):
        # With an lr schedule: RLlib then sets the lr as a tensor, which foreach Adam refuses.
        schedule = ["ppo.lr_final=1e-4", "ppo.lr_decay_steps=1000"]
        overrides = [*TINY, *schedule, f"learners.foreach_update={str(foreach).lower()}"]
        algo = _algo(overrides, tmp_path / str(foreach))
        try:
            learner = algo.learner_group._learner
            assert learner.foreach_update is foreach
            optimizer = dict(learner.get_optimizers_for_module(DEFAULT_MODULE_ID))["default_optimizer"]
            assert optimizer.defaults["foreach"] is (True if foreach else None)
            start = _weights(algo)
            algo.train()
            algo.train()  # the second update runs at the scheduled (lowered) lr
            weights[foreach] = _weights(algo)
        finally:
            algo.stop()
    assert _changed(start, weights[True], "pi.")
    for name, value in weights[False].items():
        torch.testing.assert_close(weights[True][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_foreach_clip_matches_rllibs_clip_including_non_finite_norms():
    from ray.rllib.utils.torch_utils import clip_gradients

    from rllib_paper.residual.learner import foreach_clip_by_global_norm

    torch.manual_seed(0)
    for scale in (0.01, 10.0):  # below the clip (untouched) and above it (scaled)
        grads = {i: torch.randn(7, 5) * scale for i in range(3)}
        ours = {k: v.clone() for k, v in grads.items()}
        norm = clip_gradients(grads, grad_clip=0.5, grad_clip_by="global_norm")
        our_norm = foreach_clip_by_global_norm(ours, grad_clip=0.5, grad_clip_by="global_norm")
        torch.testing.assert_close(our_norm, norm)
        for k in grads:
            torch.testing.assert_close(ours[k], grads[k])
    with_nan = {0: torch.tensor([float("nan"), 1.0]), 1: torch.tensor([3.0, 4.0])}
    ours = {k: v.clone() for k, v in with_nan.items()}
    torch.testing.assert_close(
        foreach_clip_by_global_norm(ours, grad_clip=0.5, grad_clip_by="global_norm"),
        clip_gradients(with_nan, grad_clip=0.5, grad_clip_by="global_norm"),
    )
    torch.testing.assert_close(ours[1], with_nan[1])
