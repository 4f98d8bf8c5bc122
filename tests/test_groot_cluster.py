"""The GR00T stand-in (`rllib-paper serve-policy`, a subprocess with added latency) behind the
BasePolicyActor: the actor on a second node of a Ray cluster, reached by name from envs on the
head; and one residual PPO iteration on top of it, querying the base once per k env steps."""

import contextlib
import csv
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LATENCY_MS = 20
SMALL = {"image_size": [48, 64], "render_shadows": False, "render_samples": 0, "sim_state_key": "state.sim"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """`rllib-paper serve-policy` serving the scripted pusher as GR00T, +20 ms per reply.

    Yields (address, mapping path); small frames keep rendering cheap. Stopped by its PID.
    """
    import yaml

    from rllib_paper.policies.groot.client import GrootClient
    from rllib_paper.policies.groot.config import CONFIG_DIR

    mapping = tmp_path_factory.mktemp("groot") / "so100_small.yaml"
    mapping.write_text(yaml.safe_dump({**yaml.safe_load((CONFIG_DIR / "so100_dualcam.yaml").read_text()), **SMALL}))
    port = _free_port()
    cmd = [sys.executable, "-m", "rllib_paper.cli", "serve-policy", "--policy", "scripted", "--mapping", str(mapping)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--latency-ms", str(LATENCY_MS)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"tcp://127.0.0.1:{port}"
    client = GrootClient(address, timeout_s=60)
    try:
        if not client.ping():
            proc.kill()
            pytest.fail(f"serve-policy did not answer within 60 s: {proc.stderr.read().decode()[-2000:]}")
        yield address, mapping
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ---------------------------------------------------------------------------- two nodes
CLUSTER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import ray
    from ray.cluster_utils import Cluster

    address, mapping = sys.argv[1], sys.argv[2]
    # The head runs the envs; the second node stands for the GPU node: it alone carries the
    # custom resource "groot" and the label node-role=groot.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"envs": 2}})
    gpu_node = cluster.add_node(num_cpus=1, resources={"groot": 1}, labels={"node-role": "groot"})
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        inner = f"groot:tcp://{address.removeprefix('tcp://')}?config={mapping}&timeout=30"
        by_resource = f"actor:{inner}#name=groot-by-resource&resource=groot&timeout=120"
        by_label = f"actor:{inner}#name=groot-by-label&label=node-role=groot&timeout=120"

        @ray.remote(num_cpus=1, resources={"envs": 1})  # only the head has "envs"
        def run_env(spec, seed, steps):
            from rllib_paper.envs.residual import ResidualPaperEnv

            env = ResidualPaperEnv({"randomization": "phase2", "residual": {"base_policy": spec}})
            env.reset(seed=seed)
            failed = []
            for _ in range(steps):
                info = env.step(np.zeros(6))[4]
                failed.append(bool(info.get("base_policy_failed")))
            actor = ray.get(env.base_policy.handle.info.remote())
            env.close()
            return {
                "env_node": ray.get_runtime_context().get_node_id(),
                "actor_node": actor["node_id"],
                "actor_pid": actor["pid"],
                "base_calls": env.base_calls,
                "failed": any(failed),
            }

        out = {"head": cluster.head_node.node_id, "gpu_node": gpu_node.node_id, "runs": {}, "stats": {}}
        for spec in (by_resource, by_label):
            name = spec.rsplit("name=", 1)[1].split("&")[0]
            # Two envs at once on the head: the first creates the named actor, both share it.
            out["runs"][name] = ray.get([run_env.remote(spec, seed, 24) for seed in (1000, 1001)], timeout=300)
            handle = ray.get_actor(name, namespace="rllib_paper")  # the driver finds it by name too
            out["stats"][name] = ray.get(handle.stats.remote(), timeout=60)
            ray.kill(handle, no_restart=True)
        # A label no node has: the actor is never placed, and the env side says so within its timeout.
        from rllib_paper.config import EnvConfig
        from rllib_paper.policies.actor import BasePolicyError
        from rllib_paper.policies.registry import make_base_policy

        try:
            make_base_policy(f"actor:{inner}#name=groot-nowhere&label=node-role=none&timeout=3&detached=0", EnvConfig())
            out["unplaceable"] = "placed"
        except BasePolicyError as exc:
            out["unplaceable"] = str(exc)
        print(json.dumps(out))
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


def test_actor_on_the_gpu_node_serves_envs_on_the_head(stand_in, run_cluster_script):
    """BasePolicyActor placed by a custom resource and by a node label on the second node;
    envs in Ray tasks on the head find it by name and step through the slow stand-in."""
    address, mapping = stand_in
    out = run_cluster_script(CLUSTER_SCRIPT, address, str(mapping))
    assert out["head"] != out["gpu_node"]
    assert set(out["runs"]) == {"groot-by-resource", "groot-by-label"}
    for name, runs in out["runs"].items():
        stats = out["stats"][name]
        assert all(run["env_node"] == out["head"] for run in runs), name
        assert all(run["actor_node"] == out["gpu_node"] for run in runs), name  # reported from inside the actor
        assert len({run["actor_pid"] for run in runs}) == 1, "both envs must share one named actor"
        assert not any(run["failed"] for run in runs)
        # 24 steps at k = 8: one query at reset, then after steps 8, 16 and 24.
        assert [run["base_calls"] for run in runs] == [4, 4]
        assert stats["requests"] == 8 and stats["errors"] == 0
        assert stats["latency_ms_p50"] >= LATENCY_MS  # every answer came through the slow stand-in
    assert "did not start within 3 s" in out["unplaceable"]


def test_actor_label_option_is_a_ray_label_selector():
    from rllib_paper.config import ConfigError
    from rllib_paper.policies.actor import parse_actor_spec

    _, options = parse_actor_spec("actor:zero#label=node-role=groot;zone=a&resource=groot")
    assert options.label_selector() == {"node-role": "groot", "zone": "a"} and options.resource == "groot"
    assert parse_actor_spec("actor:zero")[1].label_selector() == {}
    with pytest.raises(ConfigError, match="label='groot'"):
        parse_actor_spec("actor:zero#label=groot")


# ---------------------------------------------------------------------------- PPO on the stand-in
def test_residual_ppo_iteration_on_the_groot_stand_in(ray_local, stand_in, tmp_path):
    """One PPO iteration whose base is GR00T (the stand-in) behind the actor: the env queries
    it once per k = 8 steps, so the actor sees at most one call per 8 env steps."""
    from rllib_paper.training.config import load_train_config
    from rllib_paper.training.loop import train

    address, mapping = stand_in
    name = "test-groot-ppo"
    spec = f"actor:groot:{address}?config={mapping}&timeout=30#name={name}&max_wait_ms=10&timeout=120"
    assignments = [
        f"env.residual.base_policy='{spec}'",
        "env.task.max_steps=40",  # a multiple of k: whole chunks per episode
        "env.residual.scale=0.05",
        "ppo.train_batch_size=160",
        "ppo.minibatch_size=80",
        "ppo.num_epochs=1",
        "ppo.hiddens=[16, 16]",
        "env_runners.num_env_runners=1",
        "env_runners.num_envs_per_env_runner=2",
        "learners.torch_threads=1",
        "stop={iterations: 1}",
    ]
    config = load_train_config(None, assignments)
    assert config.env.residual.base_policy == spec
    try:
        summary = train(config, tmp_path / "run", quiet=True)
        handle = ray_local.get_actor(name, namespace="rllib_paper")
        stats = ray_local.get(handle.stats.remote(), timeout=60)
        info = ray_local.get(handle.info.remote(), timeout=60)
    finally:
        with contextlib.suppress(ValueError):  # the detached actor outlives the run: end it
            ray_local.kill(ray_local.get_actor(name, namespace="rllib_paper"), no_restart=True)
    assert summary["iterations"] == 1 and summary["env_steps"] >= 160
    assert (tmp_path / "run" / "checkpoints" / "final").is_dir()
    with open(tmp_path / "run" / "episodes.csv", newline="") as fh:
        episodes = list(csv.DictReader(fh))
    assert episodes and all(int(e["length"]) == 40 for e in episodes)
    k = info["execution_horizon"]
    assert k == 8 and info["chunk_length"] == 16
    assert stats["errors"] == 0 and stats["requests"] > 0
    # Base calls (every env's, through the actor) per sampled env step: a query at each reset,
    # then one per 8 executed targets; 40-step episodes use whole chunks, so exactly 1/8 here.
    assert stats["requests"] / summary["env_steps"] <= 1 / k, (stats, summary["env_steps"])
    assert stats["latency_ms_p50"] >= LATENCY_MS


# ---------------------------------------------------------------------------- bench groot
def test_bench_groot_runs_all_phases_and_prints_json_last(ray_local, capsys):
    from rllib_paper.bench.groot import main

    main(envs=2, steps=16, frame_steps=8, latency_ms=5, image_size=(24, 32))
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["bench"] == "groot" and any("BasePolicyActor" in line for line in lines)
    assert result["base_failures"] == 0
    assert result["base_calls_per_env_step"] == 1 / 8  # 16 steps after the warm-up: 2 queries per env
    assert result["actor_requests"] == 4 and result["actor_mean_batch_size"] >= 1
    for key in ("scripted", "actor", "direct", "actor_frames"):
        assert result[f"{key}_env_steps_per_s"] > 0
    named = ray_local.util.list_named_actors(all_namespaces=True)
    assert not [a for a in named if a["name"].startswith("bench-groot")]  # the bench's actors are gone


def test_bench_groot_rejects_bad_arguments():
    from rllib_paper.bench.groot import run
    from rllib_paper.config import ConfigError

    with pytest.raises(ConfigError, match="envs=0"):
        run(envs=0)
