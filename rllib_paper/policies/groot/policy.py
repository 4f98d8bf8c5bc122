"""GR00T as a base policy: spec strings, backends, and the BasePolicy that uses them.

Spec syntax (``residual.base_policy``, ``--policy``)::

    groot:tcp://HOST:PORT?config=MAPPING[&token=T][&timeout=S][&horizon=K][&sim_state=KEY][&task=TEXT]
    groot-local:/path/to/model?config=MAPPING[&device=cuda][&denoising_steps=4][&data_config=NAME]
                                            [&embodiment=TAG][&horizon=K][&task=TEXT]

``MAPPING`` is a shipped mapping name (``so100``, ``so100_dualcam``, ``arm0_dualcam``) or a
path to a mapping YAML (``policies/groot/configs/``). ``token`` may instead come from the
``GROOT_API_TOKEN`` environment variable (keeps tokens out of configs and logs); ``timeout``
is seconds per request (default 10); ``horizon`` overrides the mapping's execution horizon
k; ``sim_state`` sends our sim state under that key (stand-in server only: a real GR00T
model gets exactly its modality keys). Percent-encode spaces in ``task`` (``%20``).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from rllib_paper.config import ConfigError, EnvConfig
from rllib_paper.policies.groot.config import GrootMappingConfig, load_mapping
from rllib_paper.policies.groot.mapping import GrootMapping, frame_key
from rllib_paper.policies.groot.render import CameraPose, EnvFrames
from rllib_paper.policies.sessions import EPISODE_KEY
from rllib_paper.policies.spec import PolicySpec, parse_policy_spec
from rllib_paper.sim.observation import QPOS

SERVER_KEYS = ("config", "token", "timeout", "horizon", "sim_state", "task", "batched")
LOCAL_KEYS = ("config", "device", "denoising_steps", "data_config", "embodiment", "horizon", "task")


class Backend(Protocol):
    def infer(self, observation: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GrootSpec:
    kind: str  # "groot" (server) or "groot-local" (in-process)
    target: str  # tcp://host:port or a model path
    mapping: GrootMappingConfig
    options: dict[str, str] = field(default_factory=dict)

    @property
    def timeout_s(self) -> float:
        return float(self.options.get("timeout", 10.0))


def parse_groot_spec(text: str | PolicySpec) -> GrootSpec:
    parsed = text if isinstance(text, PolicySpec) else parse_policy_spec(text)
    spec, kind, target, options = parsed.text, parsed.kind, parsed.target, parsed.option_dict()
    if kind not in ("groot", "groot-local") or not target:
        raise ConfigError(
            f"residual.base_policy={spec!r}: expected 'groot:tcp://HOST:PORT?config=MAPPING' or "
            "'groot-local:/path/to/model?config=MAPPING'"
        )
    allowed = SERVER_KEYS if kind == "groot" else LOCAL_KEYS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"residual.base_policy={spec!r}: unknown option {unknown[0]!r}; allowed are {list(allowed)}")
    if kind == "groot":
        parts = urlsplit(target if "://" in target else f"tcp://{target}")
        if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
            raise ConfigError(f"residual.base_policy={spec!r}: the server address must look like tcp://HOST:PORT")
        target = f"tcp://{parts.hostname}:{parts.port}"
    elif not target:
        raise ConfigError(f"residual.base_policy={spec!r}: give the model path after 'groot-local:'")
    mapping = load_mapping(options.get("config", "so100_dualcam"))
    changes: dict[str, Any] = {}
    if "horizon" in options:
        changes["execution_horizon"] = _int(spec, "horizon", options["horizon"])
    if "task" in options:
        changes["task_description"] = options["task"]
    if options.get("sim_state"):
        changes["sim_state_key"] = options["sim_state"]
    if changes:
        mapping = mapping.replace(**changes)
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 3600:  # NaN fails this too
            raise ConfigError(f"residual.base_policy={spec!r}: timeout={options['timeout']!r}: allowed range (0, 3600]")
    return GrootSpec(kind=kind, target=target, mapping=mapping, options=options)


def _int(spec: str, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"residual.base_policy={spec!r}: {name}={value!r}: expected an integer") from None


def make_backend(spec: GrootSpec) -> Backend:
    if spec.kind == "groot":
        from rllib_paper.policies.groot.client import GrootClient

        client = GrootClient(spec.target, api_token=_token(spec), timeout_s=spec.timeout_s)
        return _ClientBackend(client)
    from rllib_paper.policies.groot.local import LocalGrootBackend

    return LocalGrootBackend(
        spec.target,
        spec.mapping,
        data_config=spec.options.get("data_config"),
        embodiment_tag=spec.options.get("embodiment"),
        denoising_steps=int(spec.options.get("denoising_steps", 4)),
        device=spec.options.get("device", "cuda"),
    )


def _token(spec: GrootSpec) -> str | None:
    return spec.options.get("token") or os.environ.get("GROOT_API_TOKEN") or None


def ping_groot(spec: str | PolicySpec) -> None:
    """Ask a GR00T server for ``ping`` within the spec's request timeout; raise BasePolicyFailed
    (one sentence naming the address) when it does not answer or refuses (a wrong token)."""
    from rllib_paper.policies.base import BasePolicyFailed
    from rllib_paper.policies.groot.client import GrootClient, GrootError, GrootTimeout

    parsed = parse_groot_spec(spec)
    if parsed.kind != "groot":  # an in-process model has no server to reach
        return
    port = urlsplit(parsed.target).port
    with GrootClient(parsed.target, api_token=_token(parsed), timeout_s=parsed.timeout_s) as client:
        try:
            client.call("ping")
        except GrootTimeout:
            raise BasePolicyFailed(
                f"base policy groot:{parsed.target} is unreachable: its GR00T server did not answer a ping within "
                f"{parsed.timeout_s:g} s (is `rllib-paper serve-policy --port {port}` or Isaac-GR00T's inference "
                "service running there?); nothing was run"
            ) from None
        except GrootError as exc:
            raise BasePolicyFailed(
                f"base policy groot:{parsed.target} refused a ping ({exc}); nothing was run"
            ) from None


class _ClientBackend:
    def __init__(self, client) -> None:
        self.client = client

    def infer(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        return self.client.get_action(observation)


class GrootBasePolicy:
    """A GR00T model (server or in-process) behind our base-policy protocol.

    Needs the env's camera frames: the residual env calls ``extra_observations(env)``
    before each query, which renders the mapping's cameras from the env's MuJoCo data.
    Stateless (the model's memory is its observation), so rows of any envs batch together.
    """

    stateless = True

    def __init__(self, mapping: GrootMappingConfig, backend: Backend, *, batched_requests: bool = True) -> None:
        self.mapping = GrootMapping(mapping)
        self.backend = backend
        self.chunk_length = mapping.action_horizon
        self.execution_horizon = mapping.execution_horizon
        self.batched_requests = batched_requests
        height, width = mapping.image_size
        cameras = [c.camera for c in mapping.cameras]
        poses = tuple(
            CameraPose(c.camera, c.pos, None if c.quat() is None else tuple(c.quat()), c.fovy)
            for c in mapping.cameras
            if (c.pos, c.xyaxes, c.fovy) != (None, None, None)
        )
        self.frames = EnvFrames(
            height, width, cameras, mapping.render_shadows, mapping.render_samples, mapping.render_detail, poses
        )
        self.calls = 0
        self._episode = 0

    def reset(self, seed: int | None = None) -> None:
        # An id per episode, sent only to our stand-in server (sim_state_key) for stateful policies.
        self._episode = secrets.randbits(62)

    def extra_observations(self, env) -> dict[str, np.ndarray]:
        """Camera frames (1, H, W, 3) RGB of a PaperSquareEnv, keyed ``camera/<name>``."""
        frames = self.frames(env.model, env.data)
        return {frame_key(camera): image[None] for camera, image in frames.items()}

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        state = np.atleast_2d(np.asarray(observations["state"], dtype=np.float64))
        batch = state.shape[0]
        qpos = state[:, QPOS]
        frames = {}
        for cam in self.mapping.config.cameras:
            key = frame_key(cam.camera)
            if key not in observations:
                raise ValueError(
                    f"GR00T needs camera frames under {key!r}: call extra_observations(env) "
                    "(ResidualPaperEnv does) or render them into the observations"
                )
            frames[cam.camera] = np.asarray(observations[key])
        episodes = observations.get(EPISODE_KEY)
        if episodes is None:
            episodes = np.full(batch, self._episode, dtype=np.int64)
        target = observations.get("target")
        if self.batched_requests or batch == 1:
            obs = self.mapping.encode_observation(
                qpos, frames, batched=batch > 1, sim_state=state, sim_target=target, episode_ids=episodes
            )
            self.calls += 1
            return self.mapping.decode_action(self.backend.infer(obs), qpos, batch > 1)
        rows = []
        for row in range(batch):
            obs = self.mapping.encode_observation(
                qpos[row : row + 1],
                {c: f[row : row + 1] for c, f in frames.items()},
                batched=False,
                sim_state=state[row : row + 1],
                sim_target=None if target is None else np.asarray(target)[row : row + 1],
                episode_ids=np.asarray(episodes)[row : row + 1],
            )
            self.calls += 1
            rows.append(self.mapping.decode_action(self.backend.infer(obs), qpos[row : row + 1], False)[0])
        return np.stack(rows)


def _batched(parsed: GrootSpec) -> bool:
    return parsed.options.get("batched", "1") not in ("0", "false", "no")


def make_groot_policy(spec: str | PolicySpec, config: EnvConfig | None = None) -> GrootBasePolicy:
    parsed = parse_groot_spec(spec)
    return GrootBasePolicy(parsed.mapping, make_backend(parsed), batched_requests=_batched(parsed))


def resolve_groot(spec: str | PolicySpec) -> dict[str, Any]:
    """The model, the whole mapping (keys, units, cameras, horizons) and the request settings.

    The token is left out: it guards the server, it does not change the policy, and a
    checkpoint's record must hold no secret.
    """
    parsed = parse_groot_spec(spec)
    options = {k: v for k, v in parsed.options.items() if k not in ("token", "config")}
    return {
        "kind": parsed.kind,
        "target": parsed.target,
        "mapping": dataclasses.asdict(parsed.mapping),
        "batched": _batched(parsed),
        "timeout_s": parsed.timeout_s,
        "options": dict(sorted(options.items())),
    }
