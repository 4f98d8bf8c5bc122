"""`rllib-paper` console entry point: one subcommand per job, thin wrappers over library calls."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rllib_paper.config import DR_PRESETS, ConfigError


def _add_rollout(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="run seeded episodes of a base policy serially and print the success rate")
    p.add_argument("--policy", default="scripted", help="base policy spec (zero, scripted)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="first episode seed; episodes use seed, seed+1, ...")
    p.add_argument("--dr", default="phase2", choices=sorted(DR_PRESETS), help="domain-randomization preset")
    p.add_argument("--json", dest="json_out", default=None, help="also write per-episode records to this file")
    p.add_argument("--quiet", action="store_true", help="no per-episode lines")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks; the last printed line is JSON")
    bsub = p.add_subparsers(dest="bench", required=True)
    env = bsub.add_parser("env", help="env step rate against raw MuJoCo with the fingertip pressing the sheet")
    env.add_argument("--steps", type=int, default=300)
    env.add_argument("--rounds", type=int, default=5)
    pusher = bsub.add_parser("pusher", help="scripted pusher compute per control step vs the env step")
    pusher.add_argument("--episodes", type=int, default=5)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rllib-paper", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_rollout(sub)
    _add_bench(sub)
    return parser


def _run_rollout(args: argparse.Namespace) -> int:
    from rllib_paper.rollout import rollout_main

    return rollout_main(
        policy=args.policy, episodes=args.episodes, seed=args.seed, dr=args.dr, json_out=args.json_out, quiet=args.quiet
    )


def _run_bench(args: argparse.Namespace) -> int:
    if args.bench == "env":
        from rllib_paper.bench.env import main as bench_env

        bench_env(steps=args.steps, rounds=args.rounds)
    elif args.bench == "pusher":
        from rllib_paper.bench.pusher import main as bench_pusher

        bench_pusher(episodes=args.episodes)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "rollout":
            return _run_rollout(args)
        if args.command == "bench":
            return _run_bench(args)
    except ConfigError as exc:
        print(f"rllib-paper: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
