"""`rllib-paper` console entry point: one subcommand per job, thin wrappers over library calls."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from rllib_paper.config import DR_PRESETS, ConfigError, EnvConfig
from rllib_paper.runtime.storage import is_uri, run_directory


# ---------------------------------------------------------------------- one env syntax
def _add_set(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def _add_env_options(p: argparse.ArgumentParser, *, dr_default_help: str) -> None:
    """The env options every env-building command shares: a run YAML, --set, and shorthands."""
    p.add_argument("--config", default=None, help="run config YAML or shipped name (e.g. residual_scripted)")
    _add_set(p, "override one field, e.g. --set env.residual.alpha=0.5 --set env.task.max_steps=60 (repeatable)")
    p.add_argument("--policy", default=None, help="base policy spec; short for --set env.residual.base_policy=SPEC")
    p.add_argument(
        "--dr",
        default=None,
        choices=sorted(DR_PRESETS),
        help=f"DR preset, short for env.randomization ({dr_default_help})",
    )
    p.add_argument("--max-steps", type=int, default=None, help="episode length; short for --set env.task.max_steps=N")


def _add_video_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--video-size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"), help="per camera view (even)"
    )


def _add_settle(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--settle-steps",
        type=int,
        default=30,
        help="success that holds: control steps an episode continues after its first success (base and residual "
        "acting); success then needs the sheet still inside and slower than env.task.settle_max_speed "
        "(default 0.02 m/s). Default 30 (1 s); 0 ends at the first success, as training does",
    )


def _add_residual_actions(p: argparse.ArgumentParser) -> None:
    from rllib_paper.residual.checkpoint import RESIDUAL_ACTIONS  # no torch or Ray at import

    p.add_argument(
        "--residual-actions",
        choices=RESIDUAL_ACTIONS,
        default="mean",
        help="the residual's actions: its Gaussian's mean (default), or sampled as in training, the noise "
        "seeded by the episode (same episode for the same seed on any worker)",
    )


def _shorthands(args: argparse.Namespace) -> list[str]:
    """The flags as --set assignments (JSON-quoted: a spec is a string, never YAML)."""
    out = []
    if getattr(args, "policy", None) is not None:
        out.append(f"env.residual.base_policy={json.dumps(args.policy)}")
    if getattr(args, "dr", None) is not None:
        out.append(f"env.randomization={json.dumps(args.dr)}")
    if getattr(args, "max_steps", None) is not None:
        out.append(f"env.task.max_steps={args.max_steps}")
    return out


def _env_from_args(args: argparse.Namespace, default: EnvConfig) -> EnvConfig:
    """An env-only command's EnvConfig: ``default`` (or --config's env section), then the
    shorthand flags, then --set; keys outside ``env.`` are refused (they configure training)."""
    from rllib_paper.config import apply_overrides
    from rllib_paper.training.config import load_train_config

    env = load_train_config(args.config).env if args.config else default
    assignments = [*_shorthands(args), *args.assignments]
    for item in assignments:
        key = item.split("=", 1)[0].strip()
        if not key.startswith("env."):
            raise ConfigError(f"--set {key}: {args.command} builds only an env; its keys start with env.")
    data = apply_overrides({"env": env.to_dict()}, assignments)
    return EnvConfig.from_dict(data["env"])


def _train_assignments(args: argparse.Namespace) -> list[str]:
    return [*_shorthands(args), *args.assignments, *([f"address={args.address}"] if args.address else [])]


def _add_rollout(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="run seeded episodes of a base policy serially and print the success rate")
    _add_env_options(p, dr_default_help="default phase2")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="first episode seed; episodes use seed, seed+1, ...")
    p.add_argument("--json", dest="json_out", default=None, help="also write per-episode records to this file")
    p.add_argument("--quiet", action="store_true", help="no per-episode lines")
    _add_settle(p)
    p.add_argument("--video", default=None, metavar="PATH", help="write the first episode (--seed) as an MP4 here")
    _add_video_size(p)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks; the last printed line is JSON")
    bsub = p.add_subparsers(dest="bench", required=True)
    env = bsub.add_parser("env", help="env step rate against raw MuJoCo with the fingertip pressing the sheet")
    env.add_argument("--steps", type=int, default=300)
    env.add_argument("--rounds", type=int, default=9)
    pusher = bsub.add_parser("pusher", help="scripted pusher compute per control step vs the env step")
    pusher.add_argument("--episodes", type=int, default=5)
    ev = bsub.add_parser("eval", help="evaluation episodes/s with 1 and 2 Ray workers")
    ev.add_argument("--episodes", type=int, default=32)
    ev.add_argument("--rounds", type=int, default=2, help="alternating 1- and 2-worker runs, pooled")
    tr = bsub.add_parser("train", help="whole training iterations of the shipped config vs the physics ceiling")
    tr.add_argument("--runners", type=int, default=None, help="env runners (default: the config's)")
    tr.add_argument("--envs-per-runner", type=int, default=None, help="envs per runner (default: the config's)")
    tr.add_argument("--iterations", type=int, default=5, help="timed iterations after two warm-up ones")
    tr.add_argument("--steps-per-runner", type=int, default=2400, help="steps per runner of the sampling-only rounds")
    tr.add_argument("--config", default=None, help="training config to time (default residual_scripted)")
    _add_set(tr, "time a variant of the config, e.g. --set algorithm=appo --set ppo.minibatch_size=512")
    gr = bsub.add_parser(
        "groot", help="env steps/s through the BasePolicyActor + serve-policy stand-in (added latency) vs scripted"
    )
    gr.add_argument(
        "--envs",
        type=int,
        default=16,
        help="envs stepping in parallel, one Ray actor each (default 16: the shipped training's 2 runners x 8 envs)",
    )
    gr.add_argument("--steps", type=int, default=320, help="timed steps per env (state-only phases)")
    gr.add_argument("--frame-steps", type=int, default=96, help="timed steps per env with camera frames rendered")
    gr.add_argument("--latency-ms", type=float, default=50.0, help="added delay per stand-in reply")
    gr.add_argument(
        "--image-size", type=int, nargs=2, default=None, metavar=("H", "W"), help="default: the mapping's (224 x 224)"
    )
    gr.add_argument("--max-wait-ms", type=float, default=5.0, help="the actor's batching wait")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="distributed seeded evaluation into episodes.parquet + report.json")
    _add_env_options(p, dr_default_help="default phase2, or the checkpoint's own")
    p.add_argument("--checkpoint", default=None, help="residual checkpoint: evaluates base + residual in its own env")
    p.add_argument(
        "--allow-base-mismatch",
        action="store_true",
        help="evaluate the checkpoint over a --policy other than the base it was trained over (an ablation)",
    )
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="first seed; episodes use seed .. seed+episodes-1")
    p.add_argument("--seeds-file", default=None, help="file of seeds (one per line or a JSON list); overrides --seed")
    p.add_argument("--workers", type=int, default=2, help="Ray actors (each takes one CPU)")
    p.add_argument("--shard-size", type=int, default=8, help="episodes per task; each finished shard is saved")
    p.add_argument("--out", default="results/eval", help="run directory")
    p.add_argument("--resume", action="store_true", help="run only the seeds the run directory lacks")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray, or RAY_ADDRESS)")
    p.add_argument("--no-progress", action="store_true")
    _add_settle(p)
    _add_residual_actions(p)
    p.add_argument(
        "--videos",
        type=int,
        default=0,
        metavar="N",
        help="MP4s of N episodes (the first failures and successes by seed) under DIR/videos/, top and wrist views",
    )
    p.add_argument("--video-seeds", default=None, metavar="S1,S2,...", help="videos of exactly these seeds")
    _add_video_size(p)
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("DIR_A", "DIR_B"),
        help="paired comparison of two evaluations on the same seeds (exact McNemar test)",
    )
    p.add_argument("--compare-out", default=None, help="also write the comparison JSON here")
    p.add_argument(
        "--compare-plot",
        default=None,
        help="the paired figure (rates with Wilson intervals, discordant counts); default beside --compare-out "
        "as .png, else compare.png",
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="residual PPO on Ray RLlib into a run directory (checkpoints, metrics)")
    _add_env_options(p, dr_default_help="default the config's")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--address", default=None, help="Ray address ('auto' joins a running cluster; default local)")
    p.add_argument("--quiet", action="store_true")


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="train a residual, then evaluate base vs base + residual on the same seeds")
    _add_env_options(p, dr_default_help="default the config's")
    p.add_argument("--out", required=True, help="experiment directory (train/, eval_base/, eval_residual/)")
    p.add_argument("--episodes", type=int, default=200, help="evaluation episodes for each policy")
    p.add_argument("--seed", type=int, default=1000, help="first held-out evaluation seed")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--checkpoint", choices=("final", "best"), default="final")
    p.add_argument(
        "--reference",
        default=None,
        help="a trained checkpoint (e.g. the shipped headline's) evaluated over its own base on the same seeds",
    )
    _add_settle(p)
    _add_residual_actions(p)
    p.add_argument("--address", default=None)
    p.add_argument("--no-progress", action="store_true")


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="Ray Tune sweep from a tune_configs/*.yaml file, then a held-out eval of the best")
    p.add_argument("sweep", help="sweep YAML (e.g. tune_configs/smoke.yaml) or a shipped sweep name")
    p.add_argument("--out", required=True, help="sweep directory (trials table, best_eval/, Tune storage)")
    p.add_argument("--resume", action="store_true", help="restore the interrupted sweep in --out")
    p.add_argument("--storage", default=None, help="Tune storage (a shared path or s3://, gs:// URI); default --out")
    _add_set(p, "fix one field in every trial (added to the sweep's set:), e.g. --set env.task.max_steps=60")


def _add_serve_policy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve-policy", help="serve a base policy over the Isaac-GR00T inference protocol (ZeroMQ, msgpack)"
    )
    _add_env_options(p, dr_default_help="default phase2")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, default=5555)
    p.add_argument("--api-token", default=None, help="require this token in every request (or GROOT_API_TOKEN)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added delay per reply (a slow model stand-in)")
    p.add_argument("--mapping", default="so100_dualcam", help="GR00T mapping YAML or shipped name (keys, units)")
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=None,
        help="largest request accepted (ZeroMQ MAXMSGSIZE; a bigger one drops that client's connection); "
        "default 4 MiB: two 480x640 frames and 64 state rows with headroom",
    )
    p.add_argument("--max-batch", type=int, default=None, help="most rows in one get_action request (default 64)")
    p.add_argument(
        "--allow-kill", action="store_true", help="honour the 'kill' endpoint without a token (with one it needs it)"
    )


def _add_frames(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("frames", help="write a GR00T mapping's camera frames after a seeded reset as PNGs")
    p.add_argument("--mapping", default="arm0_dualcam", help="GR00T mapping YAML or shipped name (its cameras)")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--dr", default="phase2", choices=sorted(DR_PRESETS))
    p.add_argument("--out", required=True, help="directory for the PNGs")


def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record a base policy's seeded episodes as a LeRobot dataset (v3.0 or v2.1)")
    _add_env_options(p, dr_default_help="default phase2")
    p.add_argument("--episodes", type=int, default=10, help="seeds tried: --seed .. --seed+N-1")
    p.add_argument("--seed", type=int, default=500, help="first seed (development seeds 0..999 by convention)")
    p.add_argument("--out", required=True, help="dataset directory")
    p.add_argument("--format", default="v3.0", choices=("v3.0", "v2.1"), help="v3.0: current LeRobot; v2.1: GR00T")
    p.add_argument("--only-success", action="store_true", help="keep only episodes whose success held to the end")
    p.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        help="std (rad) of Gaussian noise on the executed (and recorded) targets: demonstrations of recovering "
        "from perturbations, for a BC policy a residual can explore around (docs/bc.md)",
    )
    p.add_argument("--cameras", default="", help="comma-separated camera videos to record: top,wrist")
    p.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    _add_settle(p)
    p.add_argument("--workers", type=int, default=2, help="Ray actors (each takes one CPU)")
    p.add_argument("--shard-size", type=int, default=5)
    p.add_argument("--resume", action="store_true", help="continue an interrupted recording in --out")
    p.add_argument("--address", default=None, help="Ray address (default: start a local Ray)")
    p.add_argument("--no-progress", action="store_true")


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="drive the sim with a dataset episode's actions; per-joint tracking error")
    p.add_argument("dataset", help="LeRobot dataset directory (v2.1 or v3.0, local)")
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--layout", default="rllib_paper", help="key names and joint order: rllib_paper or paper_return")
    p.add_argument(
        "--sheet-start",
        default=None,
        metavar="X,Y,YAW",
        help="sheet start (m, m, rad) for a dataset without a sheet pose (a real robot's)",
    )
    p.add_argument("--json", dest="json_out", default=None, help="also write the result here")


def _add_bc(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bc", help="behaviour cloning of a chunked base policy from a LeRobot dataset")
    bsub = p.add_subparsers(dest="bc", required=True)
    tr = bsub.add_parser("train", help="train bc:RUN from a dataset (rllib-paper record ... --only-success)")
    tr.add_argument("dataset", help="LeRobot dataset directory")
    tr.add_argument("--out", required=True, help="run directory; then use --policy bc:RUN")
    _add_set(tr, "override a BCConfig field, e.g. --set epochs=200 --set network.hidden=[256,256] (repeatable)")
    tr.add_argument("--no-progress", action="store_true")


def _add_submit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="run a command as a Ray job on a cluster: submit [options] -- train ... (ray job submit --working-dir .)",
    )
    p.add_argument("--address", default=None, help="dashboard URL, e.g. http://head:8265 (or RAY_ADDRESS)")
    p.add_argument("--runtime-env", default=None, help="runtime env YAML (e.g. cluster/runtime_env.yaml)")
    p.add_argument("--working-dir", default=".", help="directory uploaded as the job's working dir (default .)")
    p.add_argument("--pip", action="store_true", help="pip-install the project's dependencies in the job's env")
    p.add_argument("--allow-relative-paths", action="store_true", help="accept a relative --out (lost with the job)")
    p.add_argument("--no-wait", action="store_true", help="return after submitting instead of following the logs")
    p.add_argument("--job-timeout-s", type=float, default=None, help="stop the job if it runs longer than this")
    p.add_argument("--request-timeout-s", type=float, default=120.0, help="timeout of each call to the job server")
    p.add_argument("--submission-id", default=None)
    p.add_argument("job", nargs=argparse.REMAINDER, help="-- then the rllib-paper command and its arguments")


def _add_local_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "local-cluster", help="a real two-node Ray cluster on this machine (ray start on loopback) to try cluster runs"
    )
    p.add_argument("action", choices=("up", "down", "env"))
    p.add_argument("--dir", default="/tmp/rllib-paper-cluster", help="cluster directory (short path; logs, token)")
    p.add_argument("--head-cpus", type=int, default=1)
    p.add_argument("--worker-cpus", type=int, default=1)


def _add_pack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack", help="copy a finished run or experiment into a small committable result dir, renamed to where it goes"
    )
    p.add_argument("run", help="run or experiment directory (e.g. runs/parity_seed0)")
    p.add_argument("--to", required=True, help="result directory, as it will be committed (e.g. results/NAME)")
    p.add_argument("--force", action="store_true", help="replace an existing result directory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rllib-paper", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_rollout(sub)
    _add_eval(sub)
    _add_train(sub)
    _add_experiment(sub)
    _add_tune(sub)
    _add_bench(sub)
    _add_serve_policy(sub)
    _add_frames(sub)
    _add_record(sub)
    _add_replay(sub)
    _add_bc(sub)
    _add_submit(sub)
    _add_local_cluster(sub)
    _add_pack(sub)
    return parser


def _run_rollout(args: argparse.Namespace) -> int:
    from rllib_paper.evaluation.distributed import default_eval_env
    from rllib_paper.evaluation.episodes import rollout_main

    env = _env_from_args(args, default_eval_env())
    env = dataclasses.replace(env, task=dataclasses.replace(env.task, settle_after_success_steps=args.settle_steps))
    return rollout_main(
        env,
        episodes=args.episodes,
        seed=args.seed,
        json_out=args.json_out,
        quiet=args.quiet,
        video=args.video,
        video_size=tuple(args.video_size),
    )


def _run_eval(args: argparse.Namespace) -> int:
    if args.compare:
        from rllib_paper.evaluation.report import compare_main

        return compare_main(args.compare[0], args.compare[1], args.compare_out, args.compare_plot)
    from rllib_paper.evaluation.distributed import EvalConfig, default_eval_env, eval_main, trained_env_config
    from rllib_paper.evaluation.videos import parse_seed_list
    from rllib_paper.residual.checkpoint import check_checkpoint

    # A checkpoint is evaluated in the env it was trained in (its alpha, scale, exact base) unless told otherwise.
    if args.checkpoint:
        check_checkpoint(args.checkpoint)
    default = trained_env_config(args.checkpoint) if args.checkpoint and not args.config else default_eval_env()
    config = EvalConfig(
        env=_env_from_args(args, default),
        checkpoint=args.checkpoint,
        allow_base_mismatch=args.allow_base_mismatch,
        episodes=args.episodes,
        seed=args.seed,
        seeds_file=args.seeds_file,
        workers=args.workers,
        out=args.out,
        resume=args.resume,
        shard_size=args.shard_size,
        address=args.address,
        progress=not args.no_progress,
        settle_steps=args.settle_steps,
        residual_actions=args.residual_actions,
        videos=args.videos,
        video_seeds=parse_seed_list(args.video_seeds) if args.video_seeds else None,
        video_size=tuple(args.video_size),
    )
    config.check()  # a bad spec or a checkpoint over another base: one line now, not after Ray starts
    # Shards are saved as they finish; for a URI they reach it with the next mirror pass.
    with run_directory(args.out, resume=args.resume, interval_s=30.0) as out:
        return eval_main(dataclasses.replace(config, out=str(out)))


def _run_train(args: argparse.Namespace) -> int:
    import json

    from rllib_paper.training.config import load_train_config
    from rllib_paper.training.loop import train

    assignments = _train_assignments(args)
    with run_directory(args.out, resume=args.resume) as out:
        config_path = args.config
        if config_path is None and args.resume and (out / "config.yaml").is_file():
            config_path = out / "config.yaml"  # resume the run as it was configured
        config = load_train_config(config_path, assignments)
        summary = train(config, str(out), resume=args.resume, quiet=args.quiet)
    # Report where the results live, not the staging directory of a URI run.
    print(json.dumps({"train": summary}).replace(str(out), args.out.rstrip("/")))
    return 0


def _run_experiment(args: argparse.Namespace) -> int:
    from rllib_paper.experiment import ExperimentConfig, experiment_main
    from rllib_paper.training.config import load_train_config

    assignments = _train_assignments(args)
    if args.episodes < 1:
        raise ConfigError(f"episodes={args.episodes}: allowed range is [1, inf)")
    config = ExperimentConfig(
        train=load_train_config(args.config or "residual_scripted", assignments),
        out=args.out,
        episodes=args.episodes,
        seed=args.seed,
        workers=args.workers,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
        reference=args.reference,
        settle_steps=args.settle_steps,
        residual_actions=args.residual_actions,
    )
    with run_directory(args.out) as out:
        return experiment_main(dataclasses.replace(config, out=str(out)))


def _run_tune(args: argparse.Namespace) -> int:
    from rllib_paper.tuning.sweep import tune_main

    storage = args.storage
    if storage is None and is_uri(args.out):
        storage = f"{args.out.rstrip('/')}/tune"  # Tune writes trials to the URI itself
    with run_directory(args.out, resume=args.resume) as out:
        return tune_main(args.sweep, str(out), resume=args.resume, storage=storage, assignments=args.assignments)


def _run_record(args: argparse.Namespace) -> int:
    from rllib_paper.datasets.record import RecordConfig, record
    from rllib_paper.evaluation.distributed import default_eval_env

    env = _env_from_args(args, default_eval_env())
    env = dataclasses.replace(env, task=dataclasses.replace(env.task, settle_after_success_steps=args.settle_steps))
    summary = record(
        RecordConfig(
            env=env,
            out=args.out,
            episodes=args.episodes,
            seed=args.seed,
            format=args.format,
            only_success=args.only_success,
            action_noise=args.action_noise,
            cameras=tuple(c.strip() for c in args.cameras.split(",") if c.strip()),
            image_size=tuple(args.image_size),
            workers=args.workers,
            shard_size=args.shard_size,
            resume=args.resume,
            address=args.address,
            progress=not args.no_progress,
        )
    )
    print(
        f"recorded {summary['episodes_tried']} episodes ({summary['successes']} succeeded), kept "
        f"{summary['episodes_kept']} in {args.out} (LeRobot {summary['format']}) in {summary['record_seconds']} s"
    )
    print(json.dumps({k: summary[k] for k in ("episodes_tried", "successes", "episodes_kept", "format")}))
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    from rllib_paper.datasets.replay import format_replay, replay_episode
    from rllib_paper.runtime.files import dump_json

    sheet = None
    if args.sheet_start:
        try:
            sheet = tuple(float(v) for v in args.sheet_start.split(","))
        except ValueError:
            sheet = ()
        if len(sheet) != 3:
            raise ConfigError(f"--sheet-start {args.sheet_start!r}: expected X,Y,YAW (metres, metres, radians)")
    result = replay_episode(args.dataset, args.episode, layout=args.layout, sheet_start=sheet)
    print(format_replay(result))
    if args.json_out:
        dump_json(result.to_dict(), args.json_out)
    return 0 if result.exact is not False else 1


def _run_bc(args: argparse.Namespace) -> int:
    from rllib_paper.config import apply_overrides, from_dict
    from rllib_paper.imitation.bc_train import BCConfig, train_bc

    config = from_dict(BCConfig, apply_overrides(dataclasses.asdict(BCConfig()), args.assignments))
    summary = train_bc(args.dataset, args.out, config, progress=not args.no_progress)
    print(json.dumps({"bc": summary}))
    return 0


def _run_submit(args: argparse.Namespace) -> int:
    from rllib_paper.runtime.submit import SubmitConfig, submit

    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    _, status = submit(
        SubmitConfig(
            command=job,
            address=args.address,
            runtime_env_file=args.runtime_env,
            working_dir=args.working_dir,
            install_dependencies=args.pip,
            allow_relative_paths=args.allow_relative_paths,
            wait=not args.no_wait,
            job_timeout_s=args.job_timeout_s,
            request_timeout_s=args.request_timeout_s,
            submission_id=args.submission_id,
        )
    )
    return 0 if status in ("SUCCEEDED", "PENDING", "RUNNING") else 1


def _run_local_cluster(args: argparse.Namespace) -> int:
    from rllib_paper.runtime import local_cluster

    if args.action == "up":
        state = local_cluster.up(
            local_cluster.LocalClusterConfig(root=args.dir, head_cpus=args.head_cpus, worker_cpus=args.worker_cpus)
        )
        print(f"# two-node Ray cluster up: dashboard {state.dashboard_url}, GCS {state.gcs_address}", file=sys.stderr)
        print(f"# stop it with: rllib-paper local-cluster down --dir {args.dir}", file=sys.stderr)
        print(state.shell_exports())
    elif args.action == "env":
        print(local_cluster.load_state(args.dir).shell_exports())
    else:
        pids = local_cluster.down(args.dir)
        print(f"stopped the local cluster in {args.dir} (ray start PIDs {pids})", file=sys.stderr)
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    if args.bench == "env":
        from rllib_paper.bench.env import main as bench_env

        bench_env(steps=args.steps, rounds=args.rounds)
    elif args.bench == "pusher":
        from rllib_paper.bench.pusher import main as bench_pusher

        bench_pusher(episodes=args.episodes)
    elif args.bench == "eval":
        from rllib_paper.bench.eval import main as bench_eval

        bench_eval(episodes=args.episodes, rounds=args.rounds)
    elif args.bench == "train":
        from rllib_paper.bench.train import main as bench_train

        bench_train(
            runners=args.runners,
            envs_per_runner=args.envs_per_runner,
            iterations=args.iterations,
            steps_per_runner=args.steps_per_runner,
            config=args.config,
            assignments=tuple(args.assignments),
        )
    elif args.bench == "groot":
        from rllib_paper.bench.groot import main as bench_groot

        bench_groot(
            envs=args.envs,
            steps=args.steps,
            frame_steps=args.frame_steps,
            latency_ms=args.latency_ms,
            image_size=tuple(args.image_size) if args.image_size else None,
            max_wait_ms=args.max_wait_ms,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "rollout":
            return _run_rollout(args)
        if args.command == "bench":
            return _run_bench(args)
        if args.command == "eval":
            return _run_eval(args)
        if args.command == "train":
            return _run_train(args)
        if args.command == "experiment":
            return _run_experiment(args)
        if args.command == "tune":
            return _run_tune(args)
        if args.command == "serve-policy":
            import os

            from rllib_paper.evaluation.distributed import default_eval_env
            from rllib_paper.policies.groot.server import serve_main

            env = _env_from_args(args, default_eval_env())
            token = args.api_token or os.environ.get("GROOT_API_TOKEN") or None
            return serve_main(
                env,
                args.host,
                args.port,
                token,
                args.latency_ms,
                args.mapping,
                max_message_bytes=args.max_message_bytes,
                max_batch=args.max_batch,
                allow_kill=args.allow_kill,
            )
        if args.command == "frames":
            from rllib_paper.envs.frames import save_reset_frames

            for path in save_reset_frames(args.out, seed=args.seed, dr=args.dr, mapping=args.mapping):
                print(path)
            return 0
        if args.command == "record":
            return _run_record(args)
        if args.command == "replay":
            return _run_replay(args)
        if args.command == "bc":
            return _run_bc(args)
        if args.command == "submit":
            return _run_submit(args)
        if args.command == "pack":
            from rllib_paper.pack import pack_main

            return pack_main(args.run, args.to, force=args.force)
        if args.command == "local-cluster":
            return _run_local_cluster(args)
    except ConfigError as exc:
        print(f"rllib-paper: configuration error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"rllib-paper: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        from rllib_paper.datasets.lerobot import DatasetError

        if not isinstance(exc, DatasetError):
            raise
        print(f"rllib-paper: dataset error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"rllib-paper: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
