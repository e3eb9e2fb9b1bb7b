"""`mtdqn train`: options from flags (over an optional YAML file) -> run folder -> Trainer.run()."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import tyro
import yaml

from agents.config import ConfigError, TrainConfig, from_yaml, validate
from envs import resolve_games
from scripts.cli import UsageError


@dataclass
class TrainArgs(TrainConfig):
    force: bool = False
    """Train into --out even if it already holds another run (its files are replaced)."""


def parse(argv: list[str]) -> TrainArgs:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    try:
        base = TrainArgs(**from_yaml(known.config)) if known.config else TrainArgs()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    args = tyro.cli(TrainArgs, args=argv, default=base, prog="mtdqn train",
                    description="Train one multi-head DQN across a suite of Atari games.")
    try:
        validate(args)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    return args


def prepare_run_dir(args: TrainArgs) -> Path:
    run_dir = Path(args.out)
    if (run_dir / "config.yaml").exists() and not args.force:
        raise UsageError(f"--out {str(run_dir)!r} already holds a run: choose another --out or pass --force")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {str(run_dir)!r} is a file, not a folder")
    return run_dir


def main(argv: list[str]) -> None:
    args = parse(argv)
    resolve_games(args.suite)  # unknown games fail here, before any folder or emulator exists
    run_dir = prepare_run_dir(args)
    cfg = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.field_names()})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (run_dir / "command.txt").write_text(shlex.join(["mtdqn", "train", *argv]) + "\n")

    from agents.runner import Trainer
    from agents.tracking import Tracker

    tracker = Tracker.start(run_dir, cfg.to_dict(), track=cfg.track, project=cfg.wandb_project,
                            entity=cfg.wandb_entity, group=cfg.wandb_group)
    try:
        result = Trainer(cfg, run_dir, tracker).run()
    finally:
        tracker.finish()
    from agents.evaluation import markdown_table

    print(markdown_table(result["report"]))
    print(f"run folder: {run_dir}\nfinal checkpoint: {result['checkpoint']}", file=sys.stderr)
    print(f"evaluate it with: mtdqn evaluate {result['checkpoint']}", file=sys.stderr)
