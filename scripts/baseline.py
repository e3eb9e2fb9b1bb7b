"""`mtdqn baseline --game G`: SB3 DQN on one game, same protocol and frame budget, scored by our evaluation.

Writes a run folder like `mtdqn train` (config, metrics, checkpoints/, evals/), so `mtdqn evaluate`
and `mtdqn compare` take it as they take ours; SB3's own model file is kept beside it. It says what it does
as train does (a bar or progress lines in frames, metrics.jsonl, W&B with --track), because a 400k-frame
baseline takes about 25 minutes on a CPU; and as it cannot resume, a Ctrl-C ends it at once and removes
what it wrote before its checkpoint, which would only block its --out.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import yaml

from mtdqn.agents.core import checkpoint
from mtdqn.agents.bench.baseline import BaselineSettings
from mtdqn.agents.training.config import ConfigError
from mtdqn.agents.training.run_folder import LOCK, RunLock, RunLocked, replace_contents
from mtdqn.agents.training.validate import check_device
from mtdqn.envs import PROTOCOLS, check_game
from mtdqn.scripts.cli import UsageError, exit_interrupted, parse_options, was_interrupted


@dataclass(kw_only=True)
class BaselineArgs(BaselineSettings):
    game: str
    """One game id, e.g. pong (a run per game: mtdqn compare joins runs with +)."""
    frames_per_game: int = 400_000
    """Emulator frames to train on (4 per agent step)."""
    seed: int = 0
    """Seed for SB3, torch and the emulators."""
    protocol: Literal["machado", "classic"] = "machado"
    """Evaluation protocol, as for mtdqn train."""
    max_episode_frames: int = 108_000
    """Episode cap in emulator frames."""
    envs: int = 4
    """Parallel emulators (SB3's n_envs); updates stay at one per --train-frequency agent steps."""
    eval_episodes: int = 10
    """Episodes of the final evaluation (our evaluation code)."""
    eval_epsilon: float = 0.001
    """Exploration rate while evaluating."""
    log_interval: int = 10_000
    """Frames between metric logs."""
    threads: int = 1
    """Torch intra-op threads."""
    device: str = "cpu"
    """Torch device for SB3: cpu, cuda or cuda:N."""
    out: str | None = None
    """Run folder (default: runs/sb3-<game>)."""
    force: bool = False
    """Replace a run already in --out."""
    track: bool = False
    """Log to Weights & Biases as `mtdqn train --track` does (online with credentials, else offline)."""
    wandb_project: str = "mtdqn"
    """W&B project."""
    wandb_entity: str | None = None
    """W&B entity (user or team)."""
    wandb_group: str | None = None
    """W&B group, e.g. to gather a baseline with the runs it is compared with."""
    wandb_tags: str | None = None
    """Comma-separated W&B tags, e.g. baseline,seed:0."""
    progress_interval: float = 60.0
    """Seconds between progress lines on stderr when it is not a terminal (a log file), where the progress
    bar is off: frames done / budget, agent steps/s, updates, epsilon, latest return, ETA. Not part of the
    run's config."""


NOT_CONFIG = ("force", "progress_interval")  # how this invocation behaves, not what the run is


def main(argv: list[str]) -> None:
    args = parse_options(BaselineArgs, argv, "mtdqn baseline",
                         "Train SB3's single-task DQN on one game and evaluate it with mtdqn's evaluation.")
    check_one_game(args.game)
    for name in ("frames_per_game", "envs", "buffer_size", "batch_size", "train_frequency", "eval_episodes",
                 "target_update_period", "log_interval", "threads", "max_episode_frames"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.learning_starts < 0:
        raise UsageError(f"--learning-starts must be >= 0, got {args.learning_starts}")
    for name in ("gamma", "exploration_fraction", "exploration_final_eps", "eval_epsilon"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if not args.learning_rate > 0:
        raise UsageError(f"--learning-rate must be > 0, got {args.learning_rate}")
    if args.progress_interval < 0:
        raise UsageError(f"--progress-interval must be >= 0 seconds, got {args.progress_interval}")
    try:
        check_device(args.device)
        from mtdqn.agents.bench.benchmark import sb3_train_freq

        sb3_train_freq(args.train_frequency, args.envs)
    except (ConfigError, ValueError) as e:
        raise UsageError(str(e)) from None
    run_dir = Path(args.out or f"runs/sb3-{args.game}")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {str(run_dir)!r} is a file, not a folder")
    if (run_dir / "config.yaml").exists() and not args.force:
        raise UsageError(f"--out {str(run_dir)!r} already holds a run: choose another --out or replace it with --force")
    existed = run_dir.is_dir()
    try:  # one writer per run folder, as `mtdqn train` (agents/training/run_folder.py)
        lock = RunLock(run_dir).acquire(shlex.join(["mtdqn", "baseline", *argv]))
    except RunLocked as e:
        raise UsageError(str(e)) from None
    before = {p.name for p in run_dir.iterdir()} - {LOCK} if existed else None
    done: dict[str, Path | bool] = {}  # what this invocation has written: "started", then "checkpoint"
    try:
        report = train_and_evaluate(args, run_dir, argv, done)
    except KeyboardInterrupt:
        interrupted(run_dir, before, done)
    except Exception:
        if not was_interrupted():  # e.g. a library whose import Ctrl-C cut fails later
            raise
        interrupted(run_dir, before, done)
    finally:
        lock.release()
    from mtdqn.agents.core.evaluation import markdown_table

    print(markdown_table(report))


def check_one_game(game: str) -> None:
    """One game id: a list or a suite is refused as such (check_game would call 'pong,breakout' an unknown
    game and suggest one of its parts)."""
    from mtdqn.envs import suites

    if game in suites() or "," in game:
        games = list(suites().get(game, [])) or [g.strip() for g in game.split(",") if g.strip()]
        what = f"{'is a suite of' if game in suites() else 'lists'} {len(games)} game{'s' * (len(games) != 1)}"
        raise UsageError(f"--game {game!r} {what}: mtdqn baseline trains one game per run; give one, e.g. "
                         f"--game {games[0] if games else 'pong'} (a run per game; mtdqn compare joins them with +)")
    check_game(game)
    if game.startswith("minatar/"):  # SB3's Atari wrappers need ALE's colour frames and autoreset
        raise UsageError(f"--game {game!r} is a MinAtar game: mtdqn baseline trains SB3's DQN on ALE games only; "
                         f"for MinAtar, mtdqn train --suite {game} --preset minatar-dqn is the DQN baseline")


RUN_FILES = ("config.yaml", "command.txt", "machine.jsonl", "metrics.jsonl", "sb3_model.zip", "checkpoints", "evals",
             "wandb")


def interrupted(run_dir: Path, before: set[str] | None, done: dict) -> None:
    """Ctrl-C: one line, exit code 130. Before its checkpoint a baseline has nothing to resume from, so what
    it wrote is removed (it would only block its --out; a folder that existed stays); a checkpoint, once
    written, is kept, with the command that evaluates it."""
    if done.get("checkpoint"):
        exit_interrupted(f"interrupted during the final evaluation: checkpoint kept, evaluate it with "
                         f"mtdqn evaluate {done['checkpoint']}")
    if not done.get("started"):
        if before is None:  # the folder holds only the lock this process made
            shutil.rmtree(run_dir, ignore_errors=True)
        exit_interrupted(f"interrupted before anything was written to {run_dir}")
    if before is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif run_dir.is_dir():
        for item in run_dir.iterdir():
            if item.name not in before or item.name in RUN_FILES:  # the replaced run's files went with --force
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    exit_interrupted(f"interrupted before training finished: nothing kept in {run_dir}")


def start(args: BaselineArgs, run_dir: Path, argv: list[str], done: dict):
    """The run folder (--force clears the replaced run's results first), its config.yaml, command.txt and
    machine.jsonl, and its tracker (W&B with --track, as `mtdqn train`)."""
    from mtdqn.agents.core.machine import record_segment
    from mtdqn.agents.core.tracking import Tracker

    done["started"] = True
    if args.force and (run_dir / "config.yaml").exists():
        replace_contents(run_dir)  # nothing of the replaced run stays beside the new one
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"algorithm": "sb3-dqn", **{k: v for k, v in vars(args).items() if k not in NOT_CONFIG}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "command.txt").write_text(shlex.join(["mtdqn", "baseline", *argv]) + "\n")
    record_segment(run_dir, args.device, args.threads, resumed=False)
    return Tracker.start(run_dir, config, track=args.track, project=args.wandb_project, entity=args.wandb_entity,
                         group=args.wandb_group, job_type="baseline")


def train_and_evaluate(args: BaselineArgs, run_dir: Path, argv: list[str], done: dict) -> dict:
    torch.set_num_threads(args.threads)
    protocol = replace(PROTOCOLS[args.protocol], max_frames_per_episode=args.max_episode_frames)
    settings = BaselineSettings(**args.to_dict())
    tracker = start(args, run_dir, argv, done)
    try:
        return run(args, run_dir, protocol, settings, tracker, done)
    finally:
        if not was_interrupted():  # an interrupted run's folder goes; W&B shows its run as not finished
            tracker.finish()


def run(args: BaselineArgs, run_dir: Path, protocol, settings, tracker, done: dict) -> dict:
    from mtdqn.agents.bench import baseline
    from mtdqn.agents.core.evaluation import run_episodes, summarize, write_report
    from mtdqn.agents.training.build import auto_env_threads, library_versions
    from mtdqn.envs import FRAMESKIP, num_actions
    from mtdqn.envs.sb3 import make_sb3_env

    env = make_sb3_env(args.game, args.envs, protocol, num_threads=auto_env_threads(1, args.envs), seed=args.seed)
    model = baseline.sb3_dqn(env, settings, args.seed, args.device)
    print(f"SB3 DQN on {args.game}: {args.frames_per_game:,} frames, {args.envs} envs; Ctrl-C stops it "
          f"(a baseline does not resume)", file=sys.stderr)
    callback = baseline.progress_callback(args.game, args.frames_per_game, args.learning_starts, tracker,
                                          args.log_interval, None if sys.stderr.isatty() else args.progress_interval)
    start = time.perf_counter()
    try:  # log_interval=None: SB3 never dumps (and so never clears) its logger's values, which the callback reads
        model.learn(total_timesteps=-(-args.frames_per_game // FRAMESKIP), callback=callback, log_interval=None,
                    progress_bar=False)
    finally:
        if hasattr(callback, "bar"):
            callback.bar.close()  # a Ctrl-C's line starts on a line of its own
    wall = time.perf_counter() - start
    frames = baseline.frames_of(model)
    tracker.log({"perf/wall_time_s": wall}, frames)
    env.close()
    model.save(run_dir / "sb3_model.zip")
    network = baseline.to_network(model)
    action_counts = [num_actions(args.game, protocol)]
    state = {"config": {"algorithm": "sb3-dqn", "settings": settings.to_dict(), "dueling": False},
             "games": [args.game], "action_counts": action_counts, "network": network.spec(),
             "protocol": protocol.to_dict(), "learner": {"online": network.state_dict()},
             "frames": [frames], "versions": library_versions()}
    path = done["checkpoint"] = checkpoint.save(state, run_dir / "checkpoints" / f"frames_{frames:09d}.pt")
    returns = run_episodes(network, [args.game], [0], protocol, args.eval_episodes, args.eval_epsilon, args.seed)
    report = summarize(returns, protocol=protocol, epsilon=args.eval_epsilon, frames={args.game: frames},
                       source=f"{path} (SB3 DQN, {wall:.0f} s of training)")
    paths = write_report(report, run_dir / "evals" / f"frames_{frames:09d}")
    tracker.log_evaluation(report, paths, frames)
    tracker.log_checkpoint(path, frames)
    print(f"SB3 DQN on {args.game}: {frames:,} frames in {wall:.0f} s; checkpoint {path}", file=sys.stderr)
    return report
