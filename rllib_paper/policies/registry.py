"""Base policies by name: the one table from a spec's kind to the code that builds it.

| kind          | spec                                                   | what it is                               |
|---------------|--------------------------------------------------------|------------------------------------------|
| `zero`        | `zero`                                                 | hold the previous target (pure RL)       |
| `scripted`    | `scripted[?PARAM=VALUE&...]`                           | the press-and-drag pusher (PusherParams) |
| `bc`          | `bc:RUN_DIR[?execute=N&device=cpu]`                    | a chunked BC network (`rllib-paper bc`)  |
| `groot`       | `groot:tcp://HOST:PORT?config=MAPPING[&token=..&...]`  | a GR00T inference service (or stand-in)  |
| `groot-local` | `groot-local:MODEL_PATH?config=MAPPING[&device=..]`    | Gr00tPolicy in this process (GPU node)   |
| `actor`       | `actor:SPEC[#name=..&num_gpus=..&max_batch=..]`        | SPEC in a shared, batching Ray actor     |

The grammar is ``policies/spec.py``'s; each kind's module documents its own options. A kind
is added by a row here: nothing registers itself on import. Builders import their module
when called, so naming ``scripted`` never loads ZeroMQ or Ray. A kind that talks to a server
may offer a ``ping``: ``ping_base_policy`` runs it in the driver before any episode, so an
unreachable server is one line at start-up, not a run of failed episodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rllib_paper.config import ConfigError, EnvConfig
from rllib_paper.policies.base import BasePolicy, ZeroBasePolicy
from rllib_paper.policies.spec import PolicySpec, parse_policy_spec


@dataclass(frozen=True)
class BasePolicyKind:
    build: Callable[[PolicySpec, EnvConfig], BasePolicy]
    # Every parameter at the value the built policy uses (what a checkpoint records), and raises
    # the kind's ConfigError for bad options, so a spec can be checked without building it.
    resolve: Callable[[PolicySpec], dict[str, Any]]
    # A cheap reachability check (None: nothing to reach); raises BasePolicyFailed naming the address.
    ping: Callable[[PolicySpec], None] | None = None


def _build_zero(spec: PolicySpec, config: EnvConfig) -> BasePolicy:
    return ZeroBasePolicy()


def _resolve_zero(spec: PolicySpec) -> dict[str, Any]:
    if spec.target or spec.options:
        raise spec.error("'zero' takes no target and no options")
    return {}


def _build_scripted(spec: PolicySpec, config: EnvConfig) -> BasePolicy:
    from rllib_paper.policies.scripted import make_scripted

    return make_scripted(spec, config)


def _resolve_scripted(spec: PolicySpec) -> dict[str, Any]:
    from rllib_paper.policies.scripted import resolve_scripted

    return resolve_scripted(spec)


def _build_bc(spec: PolicySpec, config: EnvConfig) -> BasePolicy:
    from rllib_paper.policies.bc import make_bc_policy

    return make_bc_policy(spec, config)


def _resolve_bc(spec: PolicySpec) -> dict[str, Any]:
    from rllib_paper.policies.bc import resolve_bc

    return resolve_bc(spec)


def _build_groot(spec: PolicySpec, config: EnvConfig) -> BasePolicy:
    from rllib_paper.policies.groot.policy import make_groot_policy

    return make_groot_policy(spec, config)


def _resolve_groot(spec: PolicySpec) -> dict[str, Any]:
    from rllib_paper.policies.groot.policy import resolve_groot

    return resolve_groot(spec)


def _ping_groot(spec: PolicySpec) -> None:
    from rllib_paper.policies.groot.policy import ping_groot

    ping_groot(spec)


def _build_actor(spec: PolicySpec, config: EnvConfig) -> BasePolicy:
    from rllib_paper.policies.actor import make_actor_policy

    return make_actor_policy(spec, config, build_inner=make_base_policy)


def _resolve_actor(spec: PolicySpec) -> dict[str, Any]:
    from rllib_paper.policies.actor import resolve_actor

    # Where the policy runs does not change what it does: the record is the inner policy's,
    # with the actor's options beside it.
    return {"actor": resolve_actor(spec), "inner": resolve_base_policy(spec.inner)}


def _ping_actor(spec: PolicySpec) -> None:
    ping_base_policy(spec.inner)  # the actor serves the inner policy: reach what it would reach


BASE_POLICIES: dict[str, BasePolicyKind] = {
    "zero": BasePolicyKind(_build_zero, _resolve_zero),
    "scripted": BasePolicyKind(_build_scripted, _resolve_scripted),
    "bc": BasePolicyKind(_build_bc, _resolve_bc),
    "groot": BasePolicyKind(_build_groot, _resolve_groot, _ping_groot),
    "groot-local": BasePolicyKind(_build_groot, _resolve_groot),
    "actor": BasePolicyKind(_build_actor, _resolve_actor, _ping_actor),
}


def _kind(spec: PolicySpec) -> BasePolicyKind:
    try:
        return BASE_POLICIES[spec.kind]
    except KeyError:
        raise ConfigError(
            f"residual.base_policy={spec.text!r}: unknown kind {spec.kind!r}; allowed: {sorted(BASE_POLICIES)}"
        ) from None


def as_spec(spec: str | PolicySpec) -> PolicySpec:
    return spec if isinstance(spec, PolicySpec) else parse_policy_spec(spec)


def make_base_policy(spec: str | PolicySpec, config: EnvConfig) -> BasePolicy:
    """Build the base policy ``spec`` names, for envs built from ``config``."""
    spec = as_spec(spec)
    return _kind(spec).build(spec, config)


def resolve_base_policy(spec: str | PolicySpec) -> dict[str, Any]:
    """The base policy with every parameter at its value: ``{"spec", "kind", "params"}``.

    Two specs that resolve equal build the same policy; a checkpoint stores this record so
    that what it corrects cannot change when a default does. Raises ConfigError for a bad spec.
    """
    spec = as_spec(spec)
    return {"spec": spec.text, "kind": spec.kind, "params": _kind(spec).resolve(spec)}


# Settings that change where or how patiently a policy is asked, not what it answers.
_NOT_IDENTITY = {"groot": ("target", "timeout_s", "batched"), "bc": ("run_dir",)}


def policy_identity(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What makes two resolved bases the same policy: the kind and its parameters, the actor
    wrapper unwrapped (serving a policy from an actor does not change it) and, for a GR00T
    server, the address left out (the same model may be served from another host)."""
    if record["kind"] == "actor":
        return policy_identity(record["params"]["inner"])
    params = {k: v for k, v in record["params"].items() if k not in _NOT_IDENTITY.get(record["kind"], ())}
    return record["kind"], json.loads(json.dumps(params))  # tuples and lists compare as JSON does


def ping_base_policy(spec: str | PolicySpec) -> None:
    """Check that the server ``spec`` talks to answers (within its request timeout), before Ray
    starts or any episode runs; raises BasePolicyFailed naming the address. Kinds with nothing
    to reach (scripted, zero, an in-process model) pass at once."""
    spec = as_spec(spec)
    ping = _kind(spec).ping
    if ping is not None:
        ping(spec)


def base_policy_label(spec: str | PolicySpec) -> str:
    """The policy's kind and target without its options (``groot:tcp://HOST:PORT``): names it in
    an error message without printing a token."""
    spec = as_spec(spec)
    if spec.inner is not None:
        return f"{spec.kind}:{base_policy_label(spec.inner)}"
    return f"{spec.kind}:{spec.target}" if spec.target else spec.kind
