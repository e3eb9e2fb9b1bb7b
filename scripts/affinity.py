"""`mtdqn affinity RUN`: a run's gradient conflict and TAG affinity, averaged over its measurements."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from mtdqn.agents.multitask import conflict
from mtdqn.scripts.cli import UsageError, parse_options


@dataclass
class AffinityArgs:
    run: tyro.conf.Positional[str]
    """Run folder trained with --conflict-interval > 0 on two or more games (holds conflict.csv)."""
    since_frames: int = 0
    """Average only measurements at or after this many frames per game (e.g. skip early training)."""
    top: int = 5
    """How many of the most conflicting pairs to list."""
    out: str | None = None
    """Folder for affinity.csv, cosine.csv and their heatmaps (default: the run folder)."""


def matrix_table(matrix: np.ndarray, games: list[str]) -> str:
    lines = ["| source \\ target | " + " | ".join(games) + " |", "|---|" + "---:|" * len(games)]
    lines += [f"| {g} | " + " | ".join(f"{x:+.3g}" for x in row) + " |" for g, row in zip(games, matrix)]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    args = parse_options(AffinityArgs, argv, "mtdqn affinity",
                         "Average a run's gradient-conflict and inter-task-affinity measurements.")
    if args.top < 0 or args.since_frames < 0:
        raise UsageError(f"--top and --since-frames must be >= 0, got {args.top} and {args.since_frames}")
    path = Path(args.run) / "conflict.csv"
    if not path.is_file():
        raise UsageError(f"{args.run!r} has no conflict.csv: train on 2+ games with --conflict-interval > 0")
    games, means, count = conflict.read_csv(path, args.since_frames)
    if not count:
        raise UsageError(f"{path} has no measurements at or after {args.since_frames} frames per game")
    out = Path(args.out) if args.out else Path(args.run)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt

    for metric in ("cosine", "affinity"):
        conflict.write_matrix(out / f"{metric}.csv", means[metric], games)
        title = {"cosine": "gradient cosine on the shared torso", "affinity": "TAG affinity (row -> column)"}[metric]
        fig = conflict.heatmap(means[metric], games, f"{title}, mean of {count}")
        fig.savefig(out / f"{metric}.png", dpi=120)
        plt.close(fig)
    print(f"{count} measurements in {path} (from {args.since_frames:,} frames per game)\n")
    print("Gradient cosine similarity on the shared torso (negative: the games' gradients conflict):\n")
    print(matrix_table(means["cosine"], games))
    print("\nTAG inter-task affinity, row -> column (relative drop of the column game's loss after a step "
          "on the row game's loss; negative: the step hurts):\n")
    print(matrix_table(means["affinity"], games))
    pairs = sorted(((means["cosine"][i, j], i, j) for i in range(len(games)) for j in range(i + 1, len(games))))
    if pairs and args.top:
        print("\nMost conflicting pairs:\n\n| pair | cosine | affinity -> | affinity <- |\n|---|---:|---:|---:|")
        for c, i, j in pairs[:args.top]:
            a = means["affinity"]
            print(f"| {games[i]} / {games[j]} | {c:+.3g} | {a[i, j]:+.3g} | {a[j, i]:+.3g} |")
    overshoot = [g for g, a in zip(games, np.diag(means["affinity"])) if a < 0]
    if overshoot:  # a lookahead step that raises a game's own loss measures the step size, not transfer
        print(f"\nwarning: a lookahead step on its own loss raised the loss of {', '.join(overshoot)} (negative "
              f"self-affinity): the lookahead step was too large for this run's gradients, so its affinities say little "
              f"about transfer; the gradient cosines do not depend on it. Retrain with --affinity-step adam or a "
              f"smaller --affinity-lr.",
              file=sys.stderr)
    print(f"\nwrote {out / 'affinity.csv'} (for mtdqn group --affinity), {out / 'cosine.csv'} and their .png heatmaps",
          file=sys.stderr)
