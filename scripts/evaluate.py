"""`mtdqn evaluate CHECKPOINT`: per-game raw scores and HNS, rliable aggregates, table, chart, videos.

It says as it plays how each episode ended, and a Ctrl-C stops it at once: its files are written into a
staging folder beside OUT and moved into place only when all of them are there, so an interrupted
evaluation leaves no partial eval.json (nor videos) that would read as a finished one."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import tyro

from mtdqn.agents.core import checkpoint
from mtdqn.agents.training.config import ConfigError
from mtdqn.agents.training.validate import check_device
from mtdqn.agents.core.evaluation import markdown_table, record_video, run_episodes, summarize, write_report
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.envs import PROTOCOLS, Protocol, check_game
from mtdqn.scripts.cli import UsageError, exit_interrupted, parse_options, was_interrupted


@dataclass
class EvaluateArgs:
    checkpoint: tyro.conf.Positional[str]
    """A .pt file from a run's checkpoints/ folder, or a run folder (its newest checkpoint)."""
    episodes: int = 10
    """Episodes per game."""
    games: str | None = None
    """Comma-separated subset of the checkpoint's games (default: all of them)."""
    epsilon: float = 0.001
    """Exploration rate while evaluating."""
    protocol: Literal["checkpoint", "machado", "classic", "minatar", "minatar_full"] = "checkpoint"
    """Protocol to evaluate under; `checkpoint` uses the one the agent was trained with. Another protocol
    changes the emulator (sticky actions, no-op starts, episode cap) but keeps the agent's frame-stack
    restart at a lost life, which belongs to how the agent was trained to see."""
    max_episode_frames: int | None = None
    """Override the protocol's episode cap in emulator frames (recorded in the report)."""
    video: bool = False
    """Also write one MP4 episode per game into OUT/videos/."""
    out: str | None = None
    """Output folder, replaced if it holds an earlier evaluation. Default: a new folder per evaluation,
    <run>/evals/<checkpoint name>-evaluate/episodes10-eps0.001-seed0-all/ (-2, -3, ... if that exists);
    for a checkpoint outside a run's checkpoints/ folder, <checkpoint name>-evaluate/ beside it."""
    seed: int = 0
    """Seed for the evaluation emulators and exploration."""
    device: str = "cpu"
    """Torch device: cpu, cuda or cuda:N."""
    threads: int = 1
    """Torch intra-op threads."""
    progress_interval: float = 30.0
    """Seconds between the lines that show an unfinished episode's frames so far (each finished episode
    gets its line as it ends)."""


def load_network(state: dict, path: str, device) -> MultiHeadQNetwork:
    """Rebuild the checkpoint's network; a state that does not fit is another architecture."""
    try:
        spec = state.get("network") or {"action_counts": state["action_counts"],
                                         "dueling": bool(state["config"]["dueling"])}
        if list(spec["action_counts"]) != list(state["action_counts"]):
            raise ValueError(f"network heads {spec['action_counts']} differ from the games' actions "
                             f"{state['action_counts']}")
        network = MultiHeadQNetwork(**spec)
        network.load_state_dict(state["learner"]["online"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise checkpoint.CheckpointError(
            f"checkpoint {path!r} does not fit this mtdqn's network ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        ) from None
    return network.to(device)


def default_out(ckpt: Path, args: EvaluateArgs) -> Path:
    """A folder of its own for this evaluation: named by its settings, numbered if one exists already,
    so an earlier evaluation (and its videos) is never replaced without --out."""
    in_run = ckpt.parent.name == "checkpoints"
    base = (ckpt.parent.parent / "evals" if in_run else ckpt.parent) / f"{ckpt.stem}-evaluate"
    games = args.games.replace(",", "+").replace(" ", "") if args.games else "all"
    name = f"episodes{args.episodes}-eps{args.epsilon:g}-seed{args.seed}-{games}"
    if args.protocol != "checkpoint":
        name += f"-{args.protocol}"
    if args.max_episode_frames is not None:
        name += f"-cap{args.max_episode_frames}"
    out, n = base / name, 1
    while out.exists():
        n += 1
        out = base / f"{name}-{n}"
    return out


def not_a_checkpoint(path: Path) -> str | None:
    """What a file that is no torch checkpoint is (a YAML file, a zip such as an SB3 model), to say so
    instead of calling it corrupt; None if it may be a checkpoint."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("data.pkl") for n in names):
            return None  # torch's own zip format
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"a zip file of {shown}" if names else "an empty zip file"
    head = path.read_bytes()[:65536]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return "a text file"
    if isinstance(data, (dict, list)):
        return "a JSON file" if text.lstrip()[:1] in "{[" else "a YAML file"
    return "a text file"


def resolve_checkpoint(given: str) -> Path:
    """The .pt file to evaluate: the file itself, or a run folder's newest checkpoint."""
    path = Path(given)
    if path.is_dir():  # a corrupt newest checkpoint does not stand for the run: the newest that loads does
        newest, _ = checkpoint.newest_intact(path, warn=lambda m: print(f"mtdqn: {m}", file=sys.stderr))
        if newest is None:
            raise UsageError(f"run folder {given!r} has no checkpoints/frames_*.pt"
                             f"{' that loads' if checkpoint.latest(path) else ''} yet")
        return newest
    if not path.exists():
        raise UsageError(f"{given!r} does not exist: give a .pt file from a run's checkpoints/ folder, "
                         "or a run folder (its newest checkpoint is evaluated)")
    what = not_a_checkpoint(path) if path.is_file() else None
    if what:
        raise UsageError(f"{given!r} is not an mtdqn checkpoint (it is {what}): give a .pt file from a run's "
                         "checkpoints/ folder, or a run folder")
    return path


def evaluate(network, state: dict, games: list[str], protocol: Protocol, ckpt: Path, stage: Path, out: Path,
             args: EvaluateArgs) -> tuple[dict, dict[str, Path]]:
    """Play, score and write into `stage`, then move it to `out`; the report and its files' final paths."""
    trained = list(state["games"])
    game_ids = [trained.index(g) for g in games]
    returns = run_episodes(network, games, game_ids, protocol, args.episodes, args.epsilon, args.seed, args.device,
                           progress=True, progress_interval=args.progress_interval)
    frames = dict(zip(trained, state["frames"]))
    report = summarize(returns, protocol=protocol, epsilon=args.epsilon,
                       frames={g: frames[g] for g in games}, source=str(ckpt))
    shutil.rmtree(stage, ignore_errors=True)  # a staging folder a killed evaluation left
    paths = write_report(report, stage)
    if args.video:
        for g, gid in zip(games, game_ids):
            record_video(network, g, gid, protocol, args.epsilon, args.seed, stage / "videos" / f"{g}.mp4", args.device)
    publish(stage, out)
    return report, {k: out / p.name for k, p in paths.items()}


def publish(stage: Path, out: Path) -> None:
    """Move the finished files from `stage` into `out` (the folder itself when `out` is new; file by file
    into a given --out, whose earlier videos go: none may stay beside the new report). A Ctrl-C meanwhile
    waits the milliseconds this takes, then ends the command with the evaluation complete."""
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        if not out.exists():
            stage.rename(out)
        else:
            shutil.rmtree(out / "videos", ignore_errors=True)
            for item in stage.iterdir():
                os.replace(item, out / item.name)
            stage.rmdir()
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        exit_interrupted(f"interrupted: the evaluation was complete and is in {out}")


def main(argv: list[str]) -> None:
    args = parse_options(EvaluateArgs, argv, "mtdqn evaluate",
                         "Evaluate a checkpoint per game: raw score, HNS, IQM/median/mean with CIs.")
    if args.episodes <= 0:
        raise UsageError(f"--episodes must be a positive integer, got {args.episodes}")
    if not 0.0 <= args.epsilon <= 1.0:
        raise UsageError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    try:
        check_device(args.device)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.progress_interval < 0:
        raise UsageError(f"--progress-interval must be >= 0 seconds, got {args.progress_interval}")
    args.checkpoint = str(resolve_checkpoint(args.checkpoint))
    state = checkpoint.load(args.checkpoint)
    trained = list(state["games"])
    games = trained
    if args.games:
        games = [g.strip() for g in args.games.split(",")]
        twice = list(dict.fromkeys(g for g in games if games.count(g) > 1))
        if twice:
            raise UsageError(f"--games {args.games!r} lists {', '.join(twice)} twice: name each game once")
        for g in games:
            check_game(g)
            if g not in trained:
                raise UsageError(f"game {g!r} is not in this checkpoint; it was trained on: {','.join(trained)}")
    torch.set_num_threads(args.threads)
    network = load_network(state, args.checkpoint, args.device)
    protocol = Protocol(**state["protocol"])
    if args.protocol != "checkpoint":  # another protocol's emulator; the agent keeps its stack restarts
        if PROTOCOLS[args.protocol].family != protocol.family:
            raise UsageError(f"--protocol {args.protocol} is for {PROTOCOLS[args.protocol].family} games and the "
                             f"checkpoint was trained on {protocol.family} games: choose one of "
                             + ", ".join(p for p, v in PROTOCOLS.items() if v.family == protocol.family))
        protocol = replace(PROTOCOLS[args.protocol], life_loss_reset=protocol.life_loss_reset)
    if args.max_episode_frames is not None:
        if args.max_episode_frames <= 0:
            raise UsageError(f"--max-episode-frames must be a positive integer, got {args.max_episode_frames}")
        protocol = replace(protocol, max_frames_per_episode=args.max_episode_frames)
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else default_out(ckpt, args)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    stage = out.parent / f".{out.name}.partial"
    try:
        report, paths = evaluate(network, state, games, protocol, ckpt, stage, out, args)
    except BaseException as e:  # nothing staged stays behind, whatever stopped it
        shutil.rmtree(stage, ignore_errors=True)
        # an Exception after Ctrl-C: e.g. a library whose import it cut
        if isinstance(e, KeyboardInterrupt) or (isinstance(e, Exception) and was_interrupted()):
            exit_interrupted(f"interrupted: evaluation stopped, nothing written to {out}")
        raise
    print(markdown_table(report))
    print(f"wrote {', '.join(str(p) for p in paths.values())}" + (f" and {out / 'videos'}/" if args.video else ""),
          file=sys.stderr)
