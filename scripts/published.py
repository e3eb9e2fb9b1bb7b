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
    out: str = "runs/published"
    """Folder for published.md, .csv, .json and .png (learning curves against the published spread);
    under runs/ by default, beside the run folders `train` writes."""


def main(argv: list[str]) -> None:
    args = parse_options(PublishedArgs, argv, "mtdqn published",
                         "Per-game scores against a published agent's 100-run quartiles on Atari-100k.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    from mtdqn.agents.studies.compare import CompareError
    from mtdqn.agents.studies.reproduction import against, gather, markdown, write
    from mtdqn.envs.published import episode_cap_problems

    try:
        games = gather(args.runs)
        capped = episode_cap_problems(games)
        if capped:  # refused, not warned: a capped episode's score is another quantity than the published runs'
            raise UsageError(f"{capped[0]}{f' (and {len(capped) - 1} more)' if len(capped) > 1 else ''}: evaluate "
                             f"the checkpoint with mtdqn evaluate CHECKPOINT --max-episode-frames 108000 and give "
                             f"that evaluation")
        result = against(games, args.agent)
    except CompareError as e:
        raise UsageError(str(e)) from None
    for note in result["warnings"]:
        print(f"mtdqn: warning: {note}", file=sys.stderr)
    add_positions(result)
    paths = write(result, games, out)
    text = report(result, markdown(result))
    paths["md"].write_text(text + "\n")  # with the positions and the warnings, which the table alone lacks
    print(text)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)


def add_positions(result: dict) -> None:
    """Each run's position against the game's published quartiles in score units (envs.published.position),
    into the result (so published.json has it too)."""
    from mtdqn.envs.published import position, published_scores

    published = published_scores(result["agent"])
    for row in result["games"]:
        row["positions"] = [position(m, published[row["game"]]) for m in row["means"]]


def report(result: dict, table: str) -> str:
    """The table, then where each run lies against the published quartiles, then any warning: published.md
    must say itself when the runs were not evaluated as the published ones were."""
    from mtdqn.envs.published import AGENTS

    agent = AGENTS[result["agent"]][1]
    lines = [table, "", f"Where each run lies against {agent}'s published quartiles, in the game's score points "
             f"(IQR: p75 - p25):", "", "| game | run | score | position |", "|---|---:|---:|---|"]
    for row in result["games"]:
        lines += [f"| {row['game']} | {k + 1} | {m:.1f} | {p} |"
                  for k, (m, p) in enumerate(zip(row["means"], row["positions"]))]
    if result["warnings"]:
        lines += ["", *(f"Warning: {note}." for note in result["warnings"])]
    return "\n".join(lines)
