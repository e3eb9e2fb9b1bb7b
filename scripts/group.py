"""`mtdqn group --affinity FILE --networks K`: the partition of the games that maximizes within-group affinity."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


from agents.grouping import best_partition, group_score, groups_string, partition_score, read_affinity
from scripts.cli import UsageError, parse_options


@dataclass
class GroupArgs:
    affinity: str
    """Square CSV, games as header row and first column, row -> column affinity (`mtdqn affinity` writes one)."""
    networks: int = 2
    """At most this many groups (networks)."""
    out: str | None = None
    """File for the chosen groups (default: groups_k<K>.txt beside the affinity file); `--groups FILE` reads it."""
    seed: int = 0
    """Seed of the heuristic's random restarts (above the exact-search size)."""


def main(argv: list[str]) -> None:
    args = parse_options(GroupArgs, argv, "mtdqn group",
                         "Choose which games to train together from an inter-task affinity matrix.")
    if args.networks < 1:
        raise UsageError(f"--networks must be at least 1, got {args.networks}")
    games, affinity = read_affinity(args.affinity)
    out = Path(args.out) if args.out else Path(args.affinity).with_name(f"groups_k{args.networks}.txt")
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a file name")
    labels, score, method = best_partition(affinity, args.networks, args.seed)
    groups = [[g for g, l in zip(games, labels) if l == k] for k in range(max(labels) + 1)]
    print(f"{len(games)} games, at most {args.networks} networks; {method}\n")
    print("| group | games | score |\n|---:|---|---:|")
    for k, members in enumerate(groups):
        print(f"| {k + 1} | {', '.join(members)} | {group_score(affinity, [games.index(g) for g in members]):+.4g} |")
    together = partition_score(affinity, [0] * len(games))
    print(f"\ntotal score {score:+.4g} (all games in one network: {together:+.4g}; each game alone: 0)")
    chosen = groups_string(groups)
    print(f"\n--groups \"{chosen}\"")
    out.write_text(f"# mtdqn group --affinity {args.affinity} --networks {args.networks}: score {score:+.4g}\n"
                   f"{chosen}\n")
    print(f"wrote {out}: train with --sharing grouped --groups {out}", file=sys.stderr)
