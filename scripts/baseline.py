"""`mtdqn baseline --game G`: SB3 DQN on one game, same protocol and frame budget, scored by our evaluation.

Writes a run folder like `mtdqn train` (config, metrics, checkpoints/, evals/), so `mtdqn evaluate`
and `mtdqn compare` take it as they take ours; SB3's own model file is kept beside it.
"""

from __future__ import annotations

import shlex
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
from mtdqn.agents.training.validate import check_device
from mtdqn.envs import PROTOCOLS, check_game
from mtdqn.scripts.cli import UsageError, parse_options


@dataclass(kw_only=True)
class BaselineArgs(BaselineSettings):
    game: str
    """One game id, e.g. pong."""
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


def main(argv: list[str]) -> None:
    args = parse_options(BaselineArgs, argv, "mtdqn baseline",
                         "Train SB3's single-task DQN on one game and evaluate it with mtdqn's evaluation.")
    check_game(args.game)
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
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"algorithm": "sb3-dqn", **{k: v for k, v in vars(args).items() if k != "force"}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "command.txt").write_text(shlex.join(["mtdqn", "baseline", *argv]) + "\n")
    report = train_and_evaluate(args, run_dir)
    from mtdqn.agents.core.evaluation import markdown_table

    print(markdown_table(report))


def train_and_evaluate(args: BaselineArgs, run_dir: Path) -> dict:
    from stable_baselines3.common.callbacks import BaseCallback

    from mtdqn.agents.bench import baseline
    from mtdqn.agents.core.evaluation import run_episodes, summarize, write_report
    from mtdqn.agents.training.build import auto_env_threads, library_versions
    from mtdqn.agents.core.tracking import Tracker
    from mtdqn.envs import FRAMESKIP, num_actions
    from mtdqn.envs.sb3 import make_sb3_env

    torch.set_num_threads(args.threads)
    protocol = replace(PROTOCOLS[args.protocol], max_frames_per_episode=args.max_episode_frames)
    settings = baseline.BaselineSettings(**args.to_dict())
    env = make_sb3_env(args.game, args.envs, protocol, num_threads=auto_env_threads(1, args.envs), seed=args.seed)
    model = baseline.sb3_dqn(env, settings, args.seed, args.device)
    tracker = Tracker(run_dir)
    tracker.truncate_after(0)
    episodes = baseline.EpisodeLog()
    start = time.perf_counter()

    class Log(BaseCallback):
        next_log = args.log_interval

        def _on_step(self) -> bool:
            episodes.collect(self.locals["infos"])
            frames = baseline.frames_of(self.model)
            if frames >= self.next_log:
                ret = episodes.flush()
                metrics = {"perf/frames_per_second": frames / (time.perf_counter() - start)}
                if ret is not None:
                    metrics[f"train/{args.game}/episodic_return"] = ret
                tracker.log(metrics, frames)
                self.next_log = (frames // args.log_interval + 1) * args.log_interval
            return True

    model.learn(total_timesteps=-(-args.frames_per_game // FRAMESKIP), callback=Log(), progress_bar=False)
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
    path = checkpoint.save(state, run_dir / "checkpoints" / f"frames_{frames:09d}.pt")
    returns = run_episodes(network, [args.game], [0], protocol, args.eval_episodes, args.eval_epsilon, args.seed)
    report = summarize(returns, protocol=protocol, epsilon=args.eval_epsilon, frames={args.game: frames},
                       source=f"{path} (SB3 DQN, {wall:.0f} s of training)")
    write_report(report, run_dir / "evals" / f"frames_{frames:09d}")
    print(f"SB3 DQN on {args.game}: {frames:,} frames in {wall:.0f} s; checkpoint {path}", file=sys.stderr)
    return report
