"""`mtdqn sharing RUN`: what a --sharing learned run learned to share, as tables, CSV, a heatmap and groups.

Reads the hard gates (logit > 0 and each game's top channel per layer, what evaluation uses) of the run's newest checkpoint, or of a
checkpoint file. `--groups-out FILE` links games whose overall overlap is at least --threshold and
writes their connected groups in the form `--sharing grouped --groups FILE` reads.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from mtdqn.agents.core import checkpoint
from mtdqn.agents.multitask import structure
from mtdqn.agents.multitask.sharing import groups_string
from mtdqn.scripts.affinity import matrix_table
from mtdqn.scripts.cli import UsageError, parse_options


@dataclass
class SharingArgs:
    run: tyro.conf.Positional[str]
    """Run folder trained with --sharing learned (its newest checkpoint is read), or a checkpoint file."""
    out: str | None = None
    """Folder for gates.csv, overlap.csv and overlap.png (default: the run folder)."""
    groups_out: str | None = None
    """Also write a groups file: games whose overall overlap is >= --threshold share a torso."""
    threshold: float = 0.5
    """Jaccard overlap (0 to 1) at or above which two games go into one group (--groups-out)."""


def channel_summary(kept: np.ndarray, width: int = 40) -> str:
    """A game's kept channels of one layer, short enough for a table row: 'all', 'none', ranges
    ('0-12,15,17-30'), or 'all but 13-14,16' where that is shorter. Ranges past `width` characters end in
    '... +N more ranges': a trained dense layer keeps a scatter of hundreds (one row of 600 characters, unread);
    gates.csv has every channel."""
    total, count = len(kept), int(np.sum(kept))
    if count in (0, total):
        return "none" if count == 0 else "all"
    text = structure.channel_ranges(kept)
    if count > total / 2:
        text = min(text, "all but " + structure.channel_ranges(~np.asarray(kept, bool)), key=len)
    if len(text) <= width:
        return text
    parts = text.split(",")
    shown = 1  # at least one part, however long
    while len(",".join(parts[:shown + 1])) <= width:
        shown += 1
    rest = len(parts) - shown
    return f"{','.join(parts[:shown])} ... +{rest} more range{'s' * (rest > 1)}"


def main(argv: list[str]) -> None:
    args = parse_options(SharingArgs, argv, "mtdqn sharing",
                         "Which channels each game of a --sharing learned run uses, and how much games overlap.")
    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold must be in [0, 1], got {args.threshold}")
    path = Path(args.run)
    if path.is_dir():
        path = checkpoint.latest(path)
        if path is None:
            raise UsageError(f"run folder {args.run!r} has no checkpoints/frames_*.pt yet")
    elif not path.is_file():
        raise UsageError(f"{args.run!r} is neither a run folder nor a checkpoint file")
    state = checkpoint.load(path)
    try:
        gates = structure.gates_of_state(state)
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    games = list(state["games"])
    out = Path(args.out) if args.out else path.parent.parent
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    groups_file = Path(args.groups_out) if args.groups_out else None
    if groups_file is not None and groups_file.is_dir():
        raise UsageError(f"--groups-out {str(groups_file)!r} is a folder; give a file name")
    out.mkdir(parents=True, exist_ok=True)
    overlap = structure.overlaps(gates)
    frozen = bool(state["learner"]["online"].get("gates_frozen", False))
    print(f"{path} ({min(state['frames']):,} frames per game, gates {'frozen' if frozen else 'still training'})\n")
    print("| game | layer | kept | channels |\n|---|---|---:|---|")
    for g, name in enumerate(games):
        for layer, kept in gates.items():
            print(f"| {name} | {layer} | {kept[g].sum()}/{kept.shape[1]} | {channel_summary(kept[g])} |")
    print("\nEvery kept channel, a row each, is in gates.csv.")
    for layer, matrix in overlap.items():
        label = "all layers' channels pooled" if layer == "all" else layer
        print(f"\nJaccard overlap of kept channels, {label}:\n")
        print(matrix_table(matrix, games))
    paths = structure.write_csvs(out, gates, games)
    import matplotlib.pyplot as plt

    fig = structure.heatmap(overlap["all"], games, f"gate overlap (Jaccard), {min(state['frames']):,} frames per game")
    fig.savefig(out / "overlap.png", dpi=120)
    plt.close(fig)
    wrote = [paths["gates"], paths["overlap"], out / "overlap.png"]
    if groups_file is not None:
        groups = structure.groups_above(overlap["all"], games, args.threshold)
        groups_file.parent.mkdir(parents=True, exist_ok=True)
        groups_file.write_text(f"# mtdqn sharing {args.run} --threshold {args.threshold}: games whose gate overlap "
                               f"is >= {args.threshold} share a torso\n{groups_string(groups)}\n")
        print(f"\n--groups \"{groups_string(groups)}\"")
        wrote.append(groups_file)
    print(f"wrote {', '.join(map(str, wrote))}" + (f": train with --sharing grouped --groups {groups_file}"
                                                   if groups_file else ""), file=sys.stderr)
