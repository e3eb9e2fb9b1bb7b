"""`mtdqn group --affinity FILE --networks K [--budget-ms B] [--random]`: the partition of the games that
maximizes within-group affinity, with at most K networks and, given a budget, torsos whose summed update time
fits it; or, with --random, a partition into K groups drawn at random, the baseline a chosen grouping must beat.

The cost of a torso serving n games is measured here, once per n, as the median time of a learner
update with batch_size samples of each of its games (the torso of the games' family): what this machine
will pay per update.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


from mtdqn.agents.multitask.grouping import (best_partition, group_score, partition_cost, partition_score,
                                            random_partition, read_affinity)
from mtdqn.agents.multitask.sharing import groups_string
from mtdqn.envs.protocol import family_of
from mtdqn.scripts.cli import UsageError, parse_options


@dataclass
class GroupArgs:
    affinity: str
    """Square CSV, games as header row and first column, row -> column affinity (`mtdqn affinity` writes one)."""
    networks: int = 2
    """At most this many groups (networks)."""
    out: str | None = None
    """File for the chosen groups (default: groups-<affinity file's name>-k<K>.txt beside the affinity file, e.g.
    groups-affinity-k2.txt, so groupings of affinity.csv and cosine.csv do not overwrite each other);
    `--groups FILE` reads it."""
    seed: int = 0
    """Seed of the heuristic's random restarts (above the exact-search size), or of --random's draw."""
    budget_ms: float | None = None
    """Compute budget: the chosen torsos' summed per-update time, in ms, measured on this machine."""
    batch_size: int = 32
    """--budget-ms: transitions per game in the measured updates (the run's --batch-size)."""
    random: bool = False
    """Draw a partition into exactly K groups uniformly at random (seeded by --seed) instead of choosing one:
    the baseline for a chosen grouping at the same number of networks. It is scored under the matrix beside
    the best partition's score; the file is groups-<matrix>-k<K>-random<seed>.txt."""


def update_ms(num_games: int, batch_size: int, family: str) -> float:
    """ms of one update of a torso serving num_games games of this family (agents/bench/update_cost.py)."""
    from mtdqn.agents.bench.update_cost import torso_update_ms

    return torso_update_ms(num_games, batch_size, family)


def default_out(affinity: str, networks: int, random_seed: int | None = None) -> Path:
    """groups-<source>-k<K>.txt beside the source: named by the matrix and K, as either changes the groups
    (a random draw adds -random<seed>)."""
    source = Path(affinity)
    drawn = "" if random_seed is None else f"-random{random_seed}"
    return source.with_name(f"groups-{source.stem}-k{networks}{drawn}.txt")


def main(argv: list[str]) -> None:
    args = parse_options(GroupArgs, argv, "mtdqn group",
                         "Choose which games to train together from an inter-task affinity matrix.")
    if args.networks < 1:
        raise UsageError(f"--networks must be at least 1, got {args.networks}")
    if args.budget_ms is not None and not args.budget_ms > 0:
        raise UsageError(f"--budget-ms must be > 0, got {args.budget_ms}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.random and args.budget_ms is not None:
        raise UsageError("--random draws a partition without choosing: drop --budget-ms, or drop --random to choose "
                         "within the budget")
    games, affinity = read_affinity(args.affinity)
    out = Path(args.out) if args.out else default_out(args.affinity, args.networks,
                                                      args.seed if args.random else None)
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a file name")
    cost = None
    if args.budget_ms is not None:
        sizes = range(1, len(games) + 1)
        print(f"measuring one update per torso size (1 to {len(games)} game{'s' * (len(games) != 1)}, batch "
              f"{args.batch_size} per game)...",
              file=sys.stderr)
        cost = {n: update_ms(n, args.batch_size, family_of(games)) for n in sizes}
        print("| games per torso | ms per update |\n|---:|---:|")
        for n in sizes:
            print(f"| {n} | {cost[n]:.1f} |")
        print()
    labels, score, method = best_partition(affinity, args.networks, args.seed, cost, args.budget_ms)
    if args.random:
        best = score
        labels, count = random_partition(len(games), args.networks, args.seed)
        score = partition_score(affinity, labels)
        k = max(labels) + 1
        method = (f"drawn at random (--seed {args.seed}) from the {'' if count is None else f'{count:,} '}partitions "
                  f"into exactly {k} group{'s' * (k != 1)}; the best partition into <= {args.networks} scores "
                  f"{best:+.4g}")
    groups = [[g for g, l in zip(games, labels) if l == k] for k in range(max(labels) + 1)]
    print(f"{len(games)} game{'s' * (len(games) != 1)}, at most {args.networks} network{'s' * (args.networks != 1)}; "
          f"{method}\n")
    print("| group | games | score |" + (" ms per update |\n|---:|---|---:|---:|" if cost else "\n|---:|---|---:|"))
    for k, members in enumerate(groups):
        row = f"| {k + 1} | {', '.join(members)} | {group_score(affinity, [games.index(g) for g in members]):+.4g} |"
        print(row + (f" {cost[len(members)]:.1f} |" if cost else ""))
    if cost:
        print(f"\nsummed update time {partition_cost(labels, cost):.1f} ms (budget {args.budget_ms:g} ms)")
    together = partition_score(affinity, [0] * len(games))
    print(f"\ntotal score {score:+.4g} (all games in one network: {together:+.4g}; each game alone: 0)")
    chosen = groups_string(groups)
    print(f"\n--groups \"{chosen}\"")
    how = f" --budget-ms {args.budget_ms:g}" if cost else f" --random --seed {args.seed}" if args.random else ""
    out.write_text(f"# mtdqn group --affinity {args.affinity} --networks {args.networks}{how}: score {score:+.4g}\n"
                   f"{chosen}\n")
    print(f"wrote {out}: train with --sharing grouped --groups {out}", file=sys.stderr)
