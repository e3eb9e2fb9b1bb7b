"""`mtdqn atlas FOLDER ...`: which games help each other (issue 33): each game with each partner, and in the
all-games run, against the game alone, over runs; and how well gradient cosine, TAG affinity and gate overlap
predict it (agents/studies/atlas.py)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from mtdqn.scripts.cli import UsageError, parse_options


@dataclass
class AtlasArgs:
    folders: tyro.conf.Positional[list[str]]
    """Study folders, or any folders of run folders (a folder with config.yaml is a run, found at any depth).
    Only finished runs count: those with their final evaluation, at the budget.
    Single-game runs are the alone reference; 2-game runs with --sharing shared are the pairs.
    A hard-sharing run of 3+ games is compared game by game with alone.
    A hard-sharing run of all the games gives cosine and affinity (its conflict.csv).
    A finished --sharing learned run of all the games gives gate overlap, from the overlap.csv it writes
    into its folder at every log (its final gates at its last)."""
    out: str = "runs/atlas"
    """Folder for atlas.md, atlas.json, realized.csv, the predictors' csvs, atlas.png and atlas_scatter.png."""
    predictors: str = "cosine,affinity,overlap"
    """Comma-separated predictors to correlate with the realized transfer: cosine, affinity, overlap ('' for none)."""
    since_frames: int = 0
    """Average a run's conflict.csv only over measurements at or after this many frames per game."""
    variants: str | None = None
    """Comma-separated variants to take runs from, e.g. 'shared' (OUT/<variant>/<suite>/seed<k>).
    Default: every variant; runs pooled as seeds must agree on what they learned, else the atlas names the option."""
    reps: int = 2000
    """Bootstrap resamples per interval."""
    seed: int = 0
    """Seed of the bootstrap (the same seed gives the same intervals)."""


def main(argv: list[str]) -> None:
    args = parse_options(AtlasArgs, argv, "mtdqn atlas",
                         "Which games help each other: each game with each partner and with all games against "
                         "alone, over runs, and how well gradient cosine, TAG affinity and gate overlap predict it.")
    if not args.folders:
        raise UsageError("give one or more folders of runs, e.g. mtdqn atlas runs/studies/atlas-realized")
    if args.since_frames < 0:
        raise UsageError(f"--since-frames must be >= 0, got {args.since_frames}")
    if args.reps < 100:
        raise UsageError(f"--reps must be at least 100, got {args.reps}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    from mtdqn.agents.studies.atlas import AtlasError, analyze, parse_predictors
    from mtdqn.agents.studies.atlas_report import markdown, write
    from mtdqn.agents.studies.atlas_runs import collect

    try:
        predictors = parse_predictors(args.predictors)
        variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
        atlas = analyze(collect(args.folders, variants), predictors, args.since_frames, args.reps, args.seed)
    except AtlasError as e:
        raise UsageError(str(e)) from None
    command = shlex.join(["mtdqn", "atlas", *argv])
    for note in atlas.notes:
        print(f"mtdqn: note: {note}", file=sys.stderr)
    paths = write(atlas, out, command)
    print(markdown(atlas, command))
    print(f"wrote {', '.join(map(str, paths))}", file=sys.stderr)
