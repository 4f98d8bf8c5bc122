"""The cluster path: launcher and KubeRay files checked against what Ray and the code expect, and
real `ray job submit` runs (train, then eval) on a two-node cluster started with `ray start`."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rllib_paper.runtime.local_cluster import (
    CPU_NODE_RESOURCE,
    GROOT_RESOURCE,
    LocalClusterConfig,
    alive_node_ids,
    down,
    up,
)
from rllib_paper.runtime.submit import SubmitConfig, build_runtime_env, check_paths_are_shared, project_dependencies

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"


# ---------------------------------------------------------------- static files


def test_aws_launcher_config_passes_ray_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    config = prepare_config(raw)  # what `ray up` does before validating: defaults filled in
    validate_config(config)
    types = config["available_node_types"]
    assert config["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}, "env runners must not land on the head"
    assert types["gpu_worker"]["resources"][GROOT_RESOURCE] >= 1
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith(("g", "p"))  # a GPU instance family
    assert types["cpu_worker"]["resources"][CPU_NODE_RESOURCE] >= 1
    setup = "\n".join(config["setup_commands"])
    assert setup.index("torch") < setup.index('pip install -e "~/rllib-paper'), "torch must be installed first"
    assert config["file_mounts"]["~/rllib-paper"] == "."
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_aws_launcher_config_rejected_when_broken():
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    raw["available_node_types"]["gpu_worker"]["resources"] = "groot"  # must be a mapping
    with pytest.raises(ValidationError):
        validate_config(prepare_config(raw))


def _kuberay(name: str) -> dict:
    return yaml.safe_load((CLUSTER / "kuberay" / name).read_text())


def _ray_start_resources(group: dict) -> dict:
    # KubeRay passes rayStartParams.resources to `ray start --resources` as a quoted JSON string.
    return json.loads(json.loads(group["rayStartParams"]["resources"]))


def test_kuberay_raycluster_carries_the_fields_we_rely_on():
    doc = _kuberay("raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    spec = doc["spec"]
    assert spec["rayVersion"].split(".")[:2] == __import__("ray").__version__.split(".")[:2]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    assert _ray_start_resources(groups["cpu-workers"])[CPU_NODE_RESOURCE] > 0
    gpu = groups["gpu-workers"]
    assert _ray_start_resources(gpu)[GROOT_RESOURCE] >= 1
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    (container,) = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-gpu")
    # Every Ray pod mounts the shared run storage at the same path.
    pods = [head["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        (c,) = pod["containers"]
        assert {"name": "runs", "mountPath": "/mnt/runs"} in c["volumeMounts"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == _kuberay("runs-pvc.yaml")["metadata"]["name"]
    assert "ReadWriteMany" in _kuberay("runs-pvc.yaml")["spec"]["accessModes"]


def test_kuberay_rayjob_runs_the_experiment_on_the_same_cluster_spec():
    job = _kuberay("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["rayClusterSpec"] == _kuberay("raycluster.yaml")["spec"], "rayjob.yaml drifted from raycluster.yaml"
    assert spec["shutdownAfterJobFinishes"] is True
    entry = spec["entrypoint"].split()
    assert entry[:4] == ["python", "-m", "rllib_paper", "experiment"]
    assert entry[entry.index("--out") + 1].startswith("/mnt/runs/"), "results must land on the shared volume"
    # The entrypoint's arguments are valid for our CLI and TrainConfig.
    import shlex

    from rllib_paper.cli import build_parser
    from rllib_paper.training.config import load_train_config

    args = build_parser().parse_args(shlex.split(spec["entrypoint"])[3:])
    config = load_train_config(args.config, args.assignments)
    assert config.env_runners.custom_resources_per_env_runner == {CPU_NODE_RESOURCE: 0.01}


def test_dockerfile_base_matches_the_manifests_ray_version():
    ray_version = _kuberay("raycluster.yaml")["spec"]["rayVersion"]
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    bases = re.findall(r"rayproject/ray:([0-9.]+)-", dockerfile)
    assert bases and set(bases) == {ray_version}


def test_runtime_env_file_is_a_valid_ray_runtime_env():
    from ray.runtime_env import RuntimeEnv

    env = build_runtime_env(SubmitConfig(command=["train"], runtime_env_file=str(CLUSTER / "runtime_env.yaml")))
    RuntimeEnv(**env)  # raises on unknown fields
    assert env["working_dir"] == "."
    with_pip = build_runtime_env(SubmitConfig(command=["train"], install_dependencies=True))
    assert any(dep.startswith("mujoco") for dep in with_pip["pip"])
    assert not any(dep.startswith("ray") for dep in project_dependencies()), "pip must not replace the cluster's Ray"


@pytest.mark.parametrize(
    ("command", "ok"),
    [
        (["train", "--out", "/mnt/runs/x"], True),
        (["train", "--out", "s3://bucket/runs/x"], True),
        (["eval", "--checkpoint", "results/experiment_scripted_phase2/train/checkpoints/final", "--out", "/x"], True),
        (["train", "--out", "runs/x"], False),
        (["eval", "--out=runs/eval"], False),
        (["tune", "smoke", "--out", "/x", "--storage", "relative/dir"], False),
    ],
)
def test_submit_rejects_outputs_that_would_vanish_with_the_job(command, ok):
    from rllib_paper.config import ConfigError

    root = Path(__file__).resolve().parents[1]  # the working directory a job uploads
    if ok:
        check_paths_are_shared(command, root)
    else:
        with pytest.raises(ConfigError, match="relative path on a cluster"):
            check_paths_are_shared(command, root)


def _submit_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rllib_paper", "submit", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_to_a_silent_server_fails_within_its_timeout():
    """A head that accepts connections but never answers (hung, or a dead tunnel) must not hang us."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel accepts connections; nobody ever answers them
    try:  # a hang would run into the subprocess timeout (TimeoutExpired): the error is what counts
        done = _submit_cli(
            "--address",
            f"http://127.0.0.1:{server.getsockname()[1]}",
            "--request-timeout-s",
            "2",
            "--",
            "train",
            "--out",
            "/tmp/x",
            timeout=60,
        )
        assert done.returncode == 3, done.stderr
        assert "no Ray job server answered within 2 s" in done.stderr
    finally:
        server.close()


# ---------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def two_node_cluster():
    root = tempfile.mkdtemp(prefix="rpc", dir="/tmp")  # short: Ray's socket paths stay < 107 bytes
    state = up(LocalClusterConfig(root=root))
    try:
        yield state
    finally:
        pids = down(root)
        for pid in pids:  # everything `up` started is gone, and nothing else was touched
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.cluster
def test_train_then_eval_as_ray_jobs_on_two_nodes(two_node_cluster):
    state = two_node_cluster
    runs = Path(state.root) / "runs"
    train = _submit_cli(
        "--job-timeout-s",
        "300",
        "--",
        "train",
        "--config",
        "demo",
        "--set",
        "stop.iterations=1",
        "--set",
        "env.task.max_steps=40",
        "--set",
        "ppo.train_batch_size=400",
        "--set",
        "ppo.minibatch_size=100",
        "--set",
        "env_runners.num_env_runners=2",
        "--set",
        "env_runners.num_envs_per_env_runner=2",
        "--set",
        f"env_runners.custom_resources_per_env_runner={{{CPU_NODE_RESOURCE}: 1}}",
        "--out",
        str(runs / "train"),
        env=state.client_env(),
    )
    assert train.returncode == 0, train.stdout[-4000:] + train.stderr[-4000:]
    assert re.search(r"iter +1 \|", train.stdout), "the job's log lines stream back to the submitter"
    assert "SUCCEEDED" in train.stdout
    final = runs / "train" / "checkpoints" / "final"
    assert final.is_dir(), "the job wrote its run directory to the shared path"
    nodes = alive_node_ids(state)
    assert len(nodes) == 2
    episodes_csv = pd.read_csv(runs / "train" / "episodes.csv")
    assert set(episodes_csv["node_id"]) == nodes, "the two env runners (one CPU per node) sampled on both nodes"

    evaluation = _submit_cli(
        "--job-timeout-s",
        "300",
        "--",
        "eval",
        "--checkpoint",
        str(final),
        "--episodes",
        "4",
        "--seed",
        "1000",
        "--workers",
        "2",
        "--shard-size",
        "1",
        "--max-steps",
        "40",
        "--no-progress",
        "--out",
        str(runs / "eval"),
        env=state.client_env(),
    )
    assert evaluation.returncode == 0, evaluation.stdout[-4000:] + evaluation.stderr[-4000:]
    report = json.loads((runs / "eval" / "report.json").read_text())
    assert report["complete"] is True and report["episodes_done"] == 4
    episodes = pd.read_parquet(runs / "eval" / "episodes.parquet")
    assert sorted(episodes["seed"]) == [1000, 1001, 1002, 1003]
    assert set(episodes["node_id"]) == nodes, "evaluation workers ran on both nodes"


@pytest.mark.cluster
def test_a_failing_job_is_reported_as_failed_with_its_error(two_node_cluster):
    done = _submit_cli(
        "--",
        "train",
        "--config",
        "demo",
        "--set",
        "ppo.lr=-1",
        "--out",
        str(Path(two_node_cluster.root) / "runs" / "bad"),
        env=two_node_cluster.client_env(),
    )
    assert done.returncode == 1
    assert "FAILED" in done.stdout
    assert "ppo.lr=-1" in done.stdout, "the job's own error message reaches the submitter"
