"""GR00T N1.5 as the base policy: mapping, wire protocol client and server, in-process backend.

Importing this package registers three base-policy specs (cheaply: the heavy modules load
when a spec is used):

* ``groot:tcp://HOST:PORT?config=MAPPING...``  a GR00T inference service (or our stand-in);
* ``groot-local:/path/to/model?config=MAPPING...``  Gr00tPolicy in this process (GPU node);
* ``actor:INNER[#name=..,num_gpus=..,...]``  any spec served by a shared BasePolicyActor.

See ``policy.py`` for the options and ``docs/groot.md`` for a walk-through.
"""

from __future__ import annotations

from rllib_paper.config import ConfigError, EnvConfig
from rllib_paper.policies.base import BasePolicy, register_base_policy


def _spec_of(config: EnvConfig, prefix: str) -> str:
    # The base-policy registry hands factories the EnvConfig only; the full spec is in it.
    spec = config.residual.base_policy
    if not spec.startswith(prefix + ":"):
        raise ConfigError(f"residual.base_policy={spec!r}: expected a '{prefix}:...' spec")
    return spec


def _groot_factory(config: EnvConfig) -> BasePolicy:
    from rllib_paper.policies.groot.policy import make_groot_policy

    return make_groot_policy(_spec_of(config, "groot"), config)


def _groot_local_factory(config: EnvConfig) -> BasePolicy:
    from rllib_paper.policies.groot.policy import make_groot_policy

    return make_groot_policy(_spec_of(config, "groot-local"), config)


def _actor_factory(config: EnvConfig) -> BasePolicy:
    from rllib_paper.policies.actor import make_actor_policy

    return make_actor_policy(_spec_of(config, "actor"), config)


register_base_policy("groot", _groot_factory)
register_base_policy("groot-local", _groot_local_factory)
register_base_policy("actor", _actor_factory)
