"""`mtdqn published RUN ...`: per-game scores beside a published agent's 100 runs (DrQ(eps), SPR) on Atari-100k."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from mtdqn.scripts.cli import UsageError, parse_options


@dataclass
class PublishedArgs:
    runs: tyro.conf.Positional[list[str]]
    """Run folders (their final evaluation, e.g. of `mtdqn evaluate RUN --episodes 30`), evaluation folders or
    eval.json files, each game in one of them: e.g. four single-game runs, or one multi-game run."""
    agent: Literal["drq-eps", "spr"] = "drq-eps"
    """The published agent whose per-game [p25, p75] over 100 runs judges each game."""
    out: str = "published"
    """Folder for published.md, .csv, .json and .png (learning curves against the published spread)."""


def main(argv: list[str]) -> None:
    args = parse_options(PublishedArgs, argv, "mtdqn published",
                         "Per-game scores against a published agent's 100-run quartiles on Atari-100k.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    from mtdqn.agents.studies.compare import CompareError
    from mtdqn.agents.studies.reproduction import against, gather, markdown, write

    try:
        games = gather(args.runs)
        result = against(games, args.agent)
    except CompareError as e:
        raise UsageError(str(e)) from None
    for note in result["warnings"]:
        print(f"mtdqn: warning: {note}", file=sys.stderr)
    paths = write(result, games, out)
    print(markdown(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
