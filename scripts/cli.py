"""`mtdqn` entry point: dispatch to a subcommand; bad input ends in one line and exit code 2."""

from __future__ import annotations

import sys

COMMANDS = {
    "train": "Train one agent across a suite of games.",
    "evaluate": "Evaluate a checkpoint: per-game scores, HNS and aggregates.",
    "suites": "List the named suites (and, with --all, every game id).",
    "bench": "Measure acting, training and scaling throughput and replay memory against references.",
    "affinity": "Average a run's gradient-conflict and inter-task-affinity measurements.",
    "group": "Choose which games to train together from an affinity matrix.",
    "sharing": "Show what a --sharing learned run shares: channels per game, overlaps, groups.",
    "compare": "Put runs' per-game HNS side by side: ratios, aggregates, negative transfer.",
    "baseline": "Train SB3's single-task DQN on one game under the same protocol, for comparison.",
}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def fail(message: str) -> None:
    print(f"mtdqn: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_options(cls, argv: list[str], prog: str, description: str, default=None):
    """tyro.cli, with its boxed multi-line errors folded into one line (exit code 2)."""
    import contextlib
    import io
    import re

    import tyro

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            kwargs = {} if default is None else {"default": default}
            return tyro.cli(cls, args=argv, prog=prog, description=description, **kwargs)
    except SystemExit as e:
        if not e.code:
            raise
        text = re.sub(r"[\u2500-\u257f]", " ", captured.getvalue())
        head = text.split("For full helptext")[0]
        head = re.split(r"\n[ \t]*\n", head)[0]  # the message, not the help text after the rule
        lines = [" ".join(line.split()) for line in head.splitlines() if line.strip()]
        words = " ".join(lines[1:] if len(lines) > 1 else lines)  # drop the box title
        fail(f"{words or 'bad arguments'} (see {prog} -h)")


def usage() -> str:
    lines = ["usage: mtdqn <command> [options]   (mtdqn <command> -h for its options)", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        fail(f"unknown command {command!r}: choose one of {', '.join(COMMANDS)}")
    from envs import GameError
    from agents.checkpoint import CheckpointError
    from agents.grouping import GroupsError

    try:
        import importlib

        importlib.import_module(f"scripts.{command}").main(rest)
    except (UsageError, GameError, CheckpointError, GroupsError) as e:
        fail(str(e))
