"""One grammar for every base-policy spec (``residual.base_policy``, ``--policy``).

::

    KIND[:TARGET][?KEY=VALUE&KEY=VALUE...]       a policy, e.g. scripted?drag_speed=0.12
    actor:SPEC[#KEY=VALUE&KEY=VALUE...]          a wrapper: SPEC served by a shared Ray actor

``TARGET`` is what the kind talks to (a server address, a model path, a BC run directory);
the options after ``?`` are the policy's parameters and the options after ``#`` the
wrapper's own, so ``actor:groot:tcp://h:5555?config=so100#num_gpus=1`` reads as "GR00T at
h:5555 with mapping so100, in an actor that takes a GPU". Values are percent-decoded
(``task=push%20it``). Parsing checks only the shape; each kind checks its own keys and
values (``policies/registry.py`` lists the kinds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qsl

from rllib_paper.config import ConfigError

WRAPPERS = ("actor",)


@dataclass(frozen=True)
class PolicySpec:
    text: str  # the spec as written
    kind: str
    target: str = ""
    options: tuple[tuple[str, str], ...] = ()
    inner: PolicySpec | None = None  # a wrapper's wrapped spec

    def option_dict(self) -> dict[str, str]:
        return dict(self.options)

    def error(self, message: str) -> ConfigError:
        """A ConfigError that names the spec, for the kinds' own checks."""
        return ConfigError(f"residual.base_policy={self.text!r}: {message}")


def _parse_options(spec_text: str, query: str) -> tuple[tuple[str, str], ...]:
    pairs = parse_qsl(query, keep_blank_values=True)
    keys = [key for key, _ in pairs]
    duplicate = next((key for key in keys if keys.count(key) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"residual.base_policy={spec_text!r}: option {duplicate!r} is given twice")
    return tuple(pairs)


def parse_policy_spec(text: str) -> PolicySpec:
    """Split a spec into kind, target, options (and a wrapper's inner spec); shape errors only."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            f"residual.base_policy={text!r}: expected a spec such as 'scripted' or 'groot:tcp://HOST:PORT?...'"
        )
    text = text.strip()
    kind_end = min((i for i in (text.find(":"), text.find("?"), text.find("#")) if i >= 0), default=len(text))
    kind = text[:kind_end]
    rest = text[kind_end:]
    if not kind:
        raise ConfigError(f"residual.base_policy={text!r}: the spec must start with a policy kind")
    if kind in WRAPPERS:
        if not rest.startswith(":") or len(rest) == 1:
            raise ConfigError(f"residual.base_policy={text!r}: expected '{kind}:SPEC[#KEY=VALUE&...]'")
        body = rest[1:]
        inner_text, _, own = body.rpartition("#") if "#" in body else (body, "", "")
        inner = parse_policy_spec(inner_text)
        if inner.kind in WRAPPERS:
            raise ConfigError(f"residual.base_policy={text!r}: a {kind} cannot wrap another {inner.kind}")
        return PolicySpec(text, kind, inner.text, _parse_options(text, own), inner)
    if "#" in rest:
        raise ConfigError(f"residual.base_policy={text!r}: '#' options belong to a wrapper (actor:SPEC#...)")
    target, _, query = rest.partition("?")
    if target.startswith(":"):
        target = target[1:]
        if not target:
            raise ConfigError(f"residual.base_policy={text!r}: nothing after '{kind}:'")
    return PolicySpec(text, kind, target, _parse_options(text, query))


def parse_number(spec: PolicySpec, key: str, value: str, kind: type = float) -> float | int:
    """A finite int or float option value, or one error naming the spec, key and value."""
    try:
        number = int(value) if kind is int else float(value)
    except ValueError:
        raise spec.error(f"{key}={value!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(number):
        raise spec.error(f"{key}={value!r}: expected a finite number")
    return number
