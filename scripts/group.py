"""`mtdqn group --affinity FILE --networks K [--budget-ms B]`: the partition of the games that maximizes
within-group affinity, with at most K networks and, given a budget, torsos whose summed update time fits it.

The cost of a torso serving n games is measured here, once per n, as the median time of a learner
update with batch_size samples of each of its games: what this machine will pay per update.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


from mtdqn.agents.multitask.grouping import (best_partition, group_score, partition_cost, partition_score,
                                            read_affinity)
from mtdqn.agents.multitask.sharing import groups_string
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
    """Seed of the heuristic's random restarts (above the exact-search size)."""
    budget_ms: float | None = None
    """Compute budget: the chosen torsos' summed per-update time, in ms, measured on this machine."""
    batch_size: int = 32
    """--budget-ms: transitions per game in the measured updates (the run's --batch-size)."""


def update_ms(num_games: int, batch_size: int, repeats: int = 5) -> float:
    """Median ms of one learner update of a one-torso network serving num_games games (1 torch thread)."""
    import time

    import numpy as np
    import torch

    from mtdqn.agents.core.learner import DQNLearner
    from mtdqn.agents.core.network import MultiHeadQNetwork
    from mtdqn.agents.core.replay import Batch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = num_games * batch_size
    frames = lambda: rng.integers(0, 256, (n, 4, 84, 84), dtype=np.uint8)  # noqa: E731
    batch = Batch(obs=frames(), action=rng.integers(0, 4, n), rewards=rng.random((n, 3), dtype=np.float32),
                  terminated=np.zeros(n, bool), steps=np.full(n, 3), next_obs=frames(),
                  game=np.repeat(np.arange(num_games), batch_size))
    learner = DQNLearner(MultiHeadQNetwork([4] * num_games))
    times = []
    for _ in range(repeats + 1):  # the first update warms up allocations
        start = time.perf_counter()
        learner.update(batch)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[1:]))


def default_out(affinity: str, networks: int) -> Path:
    """groups-<source>-k<K>.txt beside the source: named by the matrix and K, as either changes the groups."""
    source = Path(affinity)
    return source.with_name(f"groups-{source.stem}-k{networks}.txt")


def main(argv: list[str]) -> None:
    args = parse_options(GroupArgs, argv, "mtdqn group",
                         "Choose which games to train together from an inter-task affinity matrix.")
    if args.networks < 1:
        raise UsageError(f"--networks must be at least 1, got {args.networks}")
    if args.budget_ms is not None and not args.budget_ms > 0:
        raise UsageError(f"--budget-ms must be > 0, got {args.budget_ms}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {args.batch_size}")
    games, affinity = read_affinity(args.affinity)
    out = Path(args.out) if args.out else default_out(args.affinity, args.networks)
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a file name")
    cost = None
    if args.budget_ms is not None:
        sizes = range(1, len(games) + 1)
        print(f"measuring one update per torso size (1 to {len(games)} game{'s' * (len(games) != 1)}, batch "
              f"{args.batch_size} per game)...",
              file=sys.stderr)
        cost = {n: update_ms(n, args.batch_size) for n in sizes}
        print("| games per torso | ms per update |\n|---:|---:|")
        for n in sizes:
            print(f"| {n} | {cost[n]:.1f} |")
        print()
    labels, score, method = best_partition(affinity, args.networks, args.seed, cost, args.budget_ms)
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
    budget = f" --budget-ms {args.budget_ms:g}" if cost else ""
    out.write_text(f"# mtdqn group --affinity {args.affinity} --networks {args.networks}{budget}: score {score:+.4g}\n"
                   f"{chosen}\n")
    print(f"wrote {out}: train with --sharing grouped --groups {out}", file=sys.stderr)
