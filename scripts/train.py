"""`mtdqn train`: options from flags (over an optional YAML file and preset) -> run folder -> Trainer.run().

`--resume RUN` continues a run from its newest intact checkpoint with its saved config.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from mtdqn.agents.core.machine import record_segment
from mtdqn.agents.training.config import ConfigError, TrainConfig, from_yaml, preset_options
from mtdqn.agents.training.run_folder import LOCK
from mtdqn.agents.training.validate import validate
from mtdqn.scripts.cli import UsageError, exit_interrupted, parse_options, was_interrupted

# torch and ale-py load only after the arguments parse: `-h` and a typo answer at once

# where a run executes, not what it learns: a resume may change them (a checkpoint fits either backend)
BACKEND_OPTIONS = ("backend", "num_actors", "ray_address", "weight_publish_period", "chunk_steps")
# the machine's share of the work, not what is learned: a resume on another machine (or alone) may change it
HOST_OPTIONS = ("threads", "env_threads")
# a resumed run keeps its config; the budget may grow
RESUMABLE = ("frames_per_game", *BACKEND_OPTIONS, *HOST_OPTIONS)
RESUME_FLAGS = {"--resume", "--progress-interval", *(f"--{o.replace('_', '-')}" for o in RESUMABLE)}


@dataclass
class TrainArgs(TrainConfig):
    force: bool = False
    """Train into --out even if it already holds another run (its files are replaced)."""
    progress_interval: float = 60.0
    """Seconds between progress lines on stderr when it is not a terminal (a log file, a cluster job),
    where the progress bar is off: frames per game done / budget, agent steps/s, updates, epsilon,
    latest return per game, ETA. Not part of the run's config."""
    resume: str | None = None
    """Continue the run in this folder from its newest intact checkpoint, with its saved config
    (--frames-per-game may raise the budget; --threads, --env-threads and the backend may change).
    A folder of --seeds runs resumes its unfinished seeds together."""
    seeds: str | None = None
    """Train these seeds (e.g. 0,1,2) in one process, instead of --seed: seed s's run goes to OUT/seed<s>
    and learns what --seed s alone learns (to float rounding: docs/minatar.md, "Many seeds in one
    process"); every update and acting forward is one computation over all seeds. Hard sharing, fp32,
    --balance equal or weighted, --replay-balance equal, --on-nonfinite stop. On a CPU, separate processes
    (mtdqn study --jobs) cost about as much per seed (docs/minatar.md)."""


def _flags(argv: list[str]) -> set[str]:
    return {a.split("=")[0] for a in argv if a.startswith("--")}


def parse(argv: list[str]) -> TrainArgs:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--preset")
    known, _ = pre.parse_known_args(argv)
    try:  # defaults < preset < config file < flags
        options = preset_options(known.preset) if known.preset else {}
        options |= from_yaml(known.config) if known.config else {}
        base = TrainArgs(**options)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    args = parse_options(TrainArgs, argv, "mtdqn train", "Train one multi-head DQN across a suite of Atari games.",
                         default=base)
    if args.resume:
        extra = sorted(_flags(argv) - RESUME_FLAGS)
        if extra:
            raise UsageError(f"--resume continues with the run's saved config; drop {', '.join(extra)} "
                             "(only --frames-per-game, --threads, --env-threads and the backend options may change)")
    if args.seeds is not None:
        check_seeds(args, argv)
    if args.progress_interval < 0:
        raise UsageError(f"--progress-interval must be >= 0 seconds, got {args.progress_interval}")
    try:
        validate(args, _flags(argv))
    except ConfigError as e:
        raise UsageError(str(e)) from None
    return args


def seed_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; a clear error for anything but distinct integers >= 0."""
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"--seeds {text!r} must be integers >= 0 separated by commas, e.g. 0,1,2") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise UsageError(f"--seeds {text!r} must name 2 or more distinct integers >= 0, e.g. 0,1,2")
    return seeds


def check_seeds(args: TrainArgs, argv: list[str]) -> None:
    """--seeds: its list, no --seed beside it, and options one computation over seeds can run."""
    seed_list(args.seeds)
    if "--seed" in _flags(argv):
        raise UsageError(f"--seeds {args.seeds} trains several seeds: drop --seed")
    check_batchable(args, "--seeds")


def check_batchable(cfg: TrainConfig, what: str) -> None:
    """The options an update over all seeds at once can take (the same steps for every seed)."""
    refused = [name for name, bad in (
        (f"--sharing {cfg.sharing}", cfg.sharing != "shared"),
        (f"--balance {cfg.balance}", cfg.balance not in ("equal", "weighted")),
        ("--replay-balance proportional", cfg.replay_balance != "equal"),
        ("--precision bf16", cfg.precision != "fp32"), ("--reset-interval", cfg.reset_interval > 0),
        ("--on-nonfinite skip", cfg.on_nonfinite == "skip"), ("--backend ray", cfg.backend != "local")) if bad]
    if refused:
        raise UsageError(f"{what} cannot run with {', '.join(refused)}: an update over all seeds must take the same "
                         "steps for each (hard sharing, fp32, --balance equal or weighted); train those seeds one "
                         "by one, e.g. with mtdqn study")


def check_seed_folder(folder: Path) -> None:
    """A --seeds --out holds seed<k> runs only: never a file, a run, or a folder of other things."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {str(folder)!r} is a file, not a folder")
    if (folder / "config.yaml").exists():
        raise UsageError(f"--out {str(folder)!r} holds a single run: --seeds needs a folder of its own for its "
                         "seed<k> runs")
    other = sorted(p.name for p in folder.iterdir() if not re.fullmatch(r"seed\d+", p.name)) if folder.is_dir() else []
    if other:
        raise UsageError(f"--out {str(folder)!r} holds {other[0]!r}, which is not a seed<k> run of --seeds: choose a "
                         f"new or empty folder, e.g. {folder / 'NAME'}")


def same_configuration(runs: list[tuple[TrainConfig, dict | None, Path]], folder: Path) -> None:
    """Resumed together, seeds must be one configuration: their configs may differ in seed, folder and W&B only."""
    own = {"seed", "out", "wandb_group", "wandb_tags"}
    first = {k: v for k, v in runs[0][0].to_dict().items() if k not in own}
    for cfg, _, run_dir in runs[1:]:
        differ = sorted(k for k, v in cfg.to_dict().items() if k not in own and first.get(k) != v)
        if differ:
            raise UsageError(f"{run_dir} differs from {runs[0][2]} in {', '.join(differ)}: the runs of {folder} are "
                             "not one configuration; resume them one by one")


def warn_if_cannot_learn(cfg: TrainConfig) -> None:
    """A budget at or below learning_starts trains nothing, silently: say so before the run starts."""
    if cfg.frames_per_game <= cfg.learning_starts:
        print(f"mtdqn: warning: --frames-per-game {cfg.frames_per_game:,} <= --learning-starts "
              f"{cfg.learning_starts:,}: no gradient update will happen; lower --learning-starts or raise "
              "--frames-per-game", file=sys.stderr)


def saved_config(run_dir: Path, changes: dict) -> TrainConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise UsageError(f"--resume {str(run_dir)!r} is not a run folder (no config.yaml)")
    try:
        saved = yaml.safe_load(path.read_text())
        if isinstance(saved, dict) and saved.get("algorithm") == "sb3-dqn":
            raise UsageError(f"--resume {str(run_dir)!r} is an SB3 baseline (mtdqn baseline), which does not "
                             f"checkpoint to resume: train it again with mtdqn baseline --out {run_dir} --force")
        cfg = TrainConfig(**{**saved, "out": str(run_dir)})
    except (TypeError, yaml.YAMLError) as e:
        raise UsageError(f"{path} is not a config this mtdqn can read: {str(e).splitlines()[0]}") from None
    for name, value in changes.items():
        setattr(cfg, name, value)
    return validate(cfg)


def check_out(run_dir: Path, force: bool) -> None:
    """--out must be new, empty, or a run (replaced only with --force): never a folder of other things,
    such as runs/ itself."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {str(run_dir)!r} is a file, not a folder")
    blocked = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"--out {str(run_dir)!r} lies under {str(blocked)!r}, which is a file, not a folder")
    if (run_dir / "config.yaml").exists():
        if not force:
            raise UsageError(f"--out {str(run_dir)!r} already holds a run: choose another --out, "
                             f"continue it with --resume {run_dir}, or replace it with --force")
    elif run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
        raise UsageError(f"--out {str(run_dir)!r} is not empty and holds no run (no config.yaml): choose a new "
                         f"or empty folder, e.g. {run_dir / 'NAME'}")


def interrupted(run_dir: Path, owned: bool, existed: bool) -> None:
    """Ctrl-C before the loop took over signals: what a new run wrote before its first checkpoint is
    removed (it would only block its --out; an empty folder given as --out stays), anything else is
    left resumable. One line, exit code 130, no traceback."""
    from mtdqn.agents.core import checkpoint

    if owned and checkpoint.latest(run_dir) is None:
        remove_new(run_dir, existed)
        exit_interrupted(f"interrupted before the first checkpoint: nothing kept in {run_dir}")
    exit_interrupted(f"interrupted: resume with mtdqn train --resume {run_dir}")


def hold(run_dir: Path, argv: list[str]):
    """This process becomes the run folder's one writer, or the user hears who is (exit 2)."""
    from mtdqn.agents.training.run_folder import RunLock, RunLocked

    try:
        return RunLock(run_dir).acquire(shlex.join(["mtdqn", "train", *argv]))
    except RunLocked as e:
        raise UsageError(str(e)) from None


def remove_new(run_dir: Path, existed: bool) -> None:
    """Undo a new run that never reached its first checkpoint: its files go, and its folder if we made it."""
    from mtdqn.agents.training.run_folder import replace_contents

    if run_dir.is_dir():
        replace_contents(run_dir)
        (run_dir / LOCK).unlink(missing_ok=True)
    if not existed and run_dir.exists():
        run_dir.rmdir()


def main(argv: list[str]) -> None:
    args = parse(argv)
    from mtdqn.agents.core import checkpoint
    from mtdqn.agents.training.run_folder import set_aside_corrupt
    from mtdqn.envs import resolve_games

    if args.seeds or (args.resume and seed_runs(Path(args.resume))):
        try:
            return train_seeds(args, argv)
        except KeyboardInterrupt:
            exit_interrupted(f"interrupted: resume with mtdqn train --resume {args.resume or args.out}")
    if args.resume:
        run_dir = Path(args.resume)
        given = _flags(argv)
        cfg = saved_config(run_dir, {name: getattr(args, name) for name in RESUMABLE
                                     if f"--{name.replace('_', '-')}" in given})
        lock = hold(run_dir, argv)
        path, state = checkpoint.newest_intact(run_dir, warn=lambda m: print(f"mtdqn: {m}", file=sys.stderr),
                                               on_corrupt=set_aside_corrupt)
        done = min(state["frames"]) if state else 0
        # a run killed during its final evaluation falls through: run() then only evaluates
        if done >= cfg.frames_per_game and (run_dir / "evals" / f"frames_{done:09d}" / "eval.json").is_file():
            print(f"run {run_dir} already finished: {done:,} frames per game "
                  f"(budget {cfg.frames_per_game:,}); nothing to do. Raise --frames-per-game to train on.")
            return lock.release()
        print(f"resuming {run_dir} from {path.name if path else 'the start (no intact checkpoint)'}", file=sys.stderr)
        owned = existed = False
    else:
        resolve_games(args.suite)  # unknown games fail here, before any folder or emulator exists
        run_dir = Path(args.out)
        check_out(run_dir, args.force)
        cfg, state = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.field_names()}), None
        owned, existed = not (run_dir / "config.yaml").exists(), run_dir.exists()
        lock = hold(run_dir, argv)
        check_out(run_dir, args.force)  # again, now that no other process can write it
    warn_if_cannot_learn(cfg)
    try:
        train(cfg, state, run_dir, args, argv)
    except KeyboardInterrupt:
        interrupted(run_dir, owned, existed)
    except UsageError:  # refused before training began (e.g. an unreachable Ray cluster): leave no new folder
        if owned:
            remove_new(run_dir, existed)
        raise
    except Exception:
        if not was_interrupted():  # e.g. numpy half imported when Ctrl-C cut its import
            raise
        interrupted(run_dir, owned, existed)
    finally:
        lock.release()


def start(cfg: TrainConfig, state: dict | None, run_dir: Path, args: TrainArgs, argv: list[str]):
    """config.yaml, command.txt, this segment's machine.jsonl line (--force removes the old run first); the tracker."""
    if args.force and not args.resume and (run_dir / "config.yaml").exists():
        from mtdqn.agents.training.run_folder import replace_contents

        removed = replace_contents(run_dir)  # nothing of the old run may mix with the new one's files
        print(f"--force: replaced the run in {run_dir} (removed {', '.join(removed)})", file=sys.stderr)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    with (run_dir / "command.txt").open("a" if args.resume else "w") as f:
        f.write(shlex.join(["mtdqn", "train", *argv]) + "\n")
    record_segment(run_dir, cfg.device, cfg.threads, resumed=bool(args.resume))
    from mtdqn.agents.core.tracking import Tracker

    return Tracker.start(run_dir, cfg.to_dict(), track=cfg.track, project=cfg.wandb_project,
                         entity=cfg.wandb_entity, group=cfg.wandb_group,
                         previous=state.get("wandb") if state else None)


def train(cfg: TrainConfig, state: dict | None, run_dir: Path, args: TrainArgs, argv: list[str]) -> None:
    from mtdqn.agents.training.runner import Trainer, TrainingStopped

    trainer_class = Trainer
    if cfg.backend == "ray":  # join or start Ray now: an unreachable cluster fails before the folder exists
        from mtdqn.agents.distributed.ray_trainer import RayTrainer as trainer_class
        from mtdqn.agents.distributed.ray_trainer import connect

        try:
            connect(cfg.ray_address, cfg.num_actors)
        except ConfigError as e:
            raise UsageError(str(e)) from None
    tracker = start(cfg, state, run_dir, args, argv)
    try:
        progress = None if sys.stderr.isatty() else args.progress_interval
        result = trainer_class(cfg, run_dir, tracker, state, progress_interval=progress).run()
    except TrainingStopped as e:
        print(f"mtdqn: error: {e}", file=sys.stderr)
        sys.exit(3)
    finally:
        tracker.finish()
    report(result, run_dir)


def report(result: dict, run_dir: Path) -> None:
    """A finished run's score table and where it is; an interrupted one's resume command."""
    if result["interrupted"]:
        print(f"stopped by {result['interrupted']}: checkpoint {result['checkpoint']}\n"
              f"resume with: mtdqn train --resume {run_dir}", file=sys.stderr)
        return
    from mtdqn.agents.core.evaluation import markdown_table

    print(markdown_table(result["report"]))
    print(f"run folder: {run_dir}\nfinal checkpoint: {result['checkpoint']}\n"
          f"evaluate it with: mtdqn evaluate {result['checkpoint']}", file=sys.stderr)


def seed_runs(folder: Path) -> list[Path]:
    """The seed<k> run folders of a --seeds folder, by seed (none in a run folder)."""
    if (folder / "config.yaml").exists() or not folder.is_dir():
        return []
    runs = [p for p in folder.iterdir() if re.fullmatch(r"seed\d+", p.name) and (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda p: int(p.name[4:]))


def train_seeds(args: TrainArgs, argv: list[str]) -> None:
    """--seeds: one run folder per seed under --out, trained together; --resume OUT: its unfinished seeds."""
    runs, locks = [], []  # (config, checkpoint state, folder) of each seed to train; their folders' locks
    try:
        _train_seeds(args, argv, runs, locks)
    finally:
        for lock in locks:
            lock.release()


def _train_seeds(args: TrainArgs, argv: list[str], runs: list, locks: list) -> None:
    from mtdqn.agents.core import checkpoint
    from mtdqn.agents.training.run_folder import set_aside_corrupt
    from mtdqn.envs import resolve_games

    if args.resume:
        folder, given = Path(args.resume), _flags(argv)
        locks.extend(hold(run_dir, argv) for run_dir in seed_runs(folder))  # every seed's, before any is touched
        for run_dir in seed_runs(folder):
            cfg = saved_config(run_dir, {name: getattr(args, name) for name in RESUMABLE
                                         if f"--{name.replace('_', '-')}" in given})
            _, state = checkpoint.newest_intact(run_dir, warn=lambda m: print(f"mtdqn: {m}", file=sys.stderr),
                                                on_corrupt=set_aside_corrupt)
            done = min(state["frames"]) if state else 0
            if not (done >= cfg.frames_per_game and (run_dir / "evals" / f"frames_{done:09d}" / "eval.json").is_file()):
                runs.append((cfg, state, run_dir))
        if not runs:
            print(f"every seed in {folder} already finished; nothing to do. Raise --frames-per-game to train on.")
            return
        if len(runs) > 1:
            same_configuration(runs, folder)
            check_batchable(runs[0][0], f"--resume {folder} (its seeds together)")
        print(f"resuming {', '.join(d.name for _, _, d in runs)} of {folder}", file=sys.stderr)
    else:
        folder = Path(args.out)
        check_seed_folder(folder)
        resolve_games(args.suite)
        options = {k: getattr(args, k) for k in TrainConfig.field_names()}
        for seed in seed_list(args.seeds):
            run_dir = folder / f"seed{seed}"
            check_out(run_dir, args.force)
            runs.append((TrainConfig(**options | {"seed": seed, "out": str(run_dir),
                                                  "wandb_group": args.wandb_group or folder.name}), None, run_dir))
        locks.extend(hold(run_dir, argv) for _, _, run_dir in runs)
        for _, _, run_dir in runs:
            check_out(run_dir, args.force)  # again, now that no other process can write them
    warn_if_cannot_learn(runs[0][0])
    if len(runs) == 1:  # one seed left to finish: it goes on alone
        return train(*runs[0], args, argv)
    from mtdqn.agents.training.runner import Trainer, TrainingStopped
    from mtdqn.agents.training.seed_runner import SeedBatchTrainer

    trackers = [start(cfg, state, run_dir, args, argv) for cfg, state, run_dir in runs]
    progress = None if sys.stderr.isatty() else args.progress_interval
    try:  # progress lines: the first seed's (the others step with it)
        trainers = [Trainer(cfg, run_dir, tracker, state, progress_interval=progress if i == 0 else None)
                    for i, ((cfg, state, run_dir), tracker) in enumerate(zip(runs, trackers))]
        results = SeedBatchTrainer(trainers).run()
    except TrainingStopped as e:
        print(f"mtdqn: error: {e}", file=sys.stderr)
        sys.exit(3)
    finally:
        for tracker in trackers:
            tracker.finish()
    for result, (_, _, run_dir) in zip(results, runs):
        report(result, run_dir)
