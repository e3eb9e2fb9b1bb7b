"""Which games to train together: the search for the best partition (the groups format: sharing.py).

A partition's score is the affinity each game receives from its groupmates, summed over games:
score = sum over groups S, over j in S, of the mean over i in S, i != j, of affinity[i, j]
(TAG's grouping objective, Fifty et al. 2021; a game alone receives 0). Choosing at most K
groups to maximize it is Standley et al. 2020's network-selection problem restricted to
partitions: exact enumeration up to EXACT_MAX_GAMES games, a documented heuristic above.

A compute budget counts what the chosen torsos cost to run: `cost[n]` is the time of one update of
a torso serving n games, and a partition costs the sum over its groups. Under a budget only the
exact search runs (the matching of networks and tasks, Standley et al. 2020, with time as the price).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from mtdqn.agents.multitask.sharing import GroupsError

EXACT_MAX_GAMES = 10  # Bell(10) = 115,975 partitions, scored from 1,024 precomputed group scores


def read_affinity(path: str) -> tuple[list[str], np.ndarray]:
    """A square CSV: header row and first column name the games (in the same order), values are numbers."""
    import csv

    file = Path(path)
    if file.is_dir():
        saved = file / "affinity.csv"
        hint = f"--affinity {saved}" if saved.is_file() else "the affinity.csv that `mtdqn affinity RUN` writes"
        raise GroupsError(f"affinity file {path!r} is a folder: give {hint}")
    if not file.is_file():
        raise GroupsError(f"affinity file {path!r} does not exist")
    rows = [r for r in csv.reader(file.open()) if r]
    if len(rows) < 3:
        raise GroupsError(f"affinity file {path!r} needs a header row and at least 2 games")
    games = [g.strip() for g in rows[0][1:]]
    if [r[0].strip() for r in rows[1:]] != games:
        raise GroupsError(f"affinity file {path!r}: the first column must list the header's games in the same order")
    try:
        matrix = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    except ValueError as e:
        raise GroupsError(f"affinity file {path!r} has a non-number: {e}") from None
    if matrix.shape != (len(games), len(games)):
        raise GroupsError(f"affinity file {path!r} is not square: {matrix.shape[0]} rows for {len(games)} "
                          f"game{'s' * (len(games) != 1)}")
    if not np.isfinite(matrix[~np.eye(len(games), dtype=bool)]).all():
        raise GroupsError(f"affinity file {path!r} has missing or infinite off-diagonal values")
    return games, matrix


def group_score(affinity: np.ndarray, members: list[int]) -> float:
    if len(members) < 2:
        return 0.0
    sub = affinity[np.ix_(members, members)].copy()
    np.fill_diagonal(sub, 0.0)
    return float(sub.sum() / (len(members) - 1))


def partition_score(affinity: np.ndarray, labels) -> float:
    return sum(group_score(affinity, [i for i, l in enumerate(labels) if l == k]) for k in set(labels))


def partition_cost(labels, cost: dict[int, float]) -> float:
    """Summed per-update cost of the partition's torsos, `cost[n]` for a torso serving n games."""
    return sum(cost[list(labels).count(k)] for k in set(labels))


def best_partition(affinity: np.ndarray, max_groups: int, seed: int = 0, cost: dict[int, float] | None = None,
                   budget: float | None = None) -> tuple[list[int], float, str]:
    """Group label per game maximizing `partition_score` with at most `max_groups` groups and, if a
    budget is given, a `partition_cost` within it.

    Returns (labels, score, method). Ties keep the partition found first (fewer groups first in
    the exact search's order).
    """
    n = len(affinity)
    if max_groups < 1:
        raise GroupsError(f"--networks must be at least 1, got {max_groups}")
    if budget is not None and n > EXACT_MAX_GAMES:
        raise GroupsError(f"--budget-ms needs the exact search: at most {EXACT_MAX_GAMES} games, got {n}")
    if n <= EXACT_MAX_GAMES:
        subset = [group_score(affinity, [i for i in range(n) if mask >> i & 1]) for mask in range(1 << n)]
        best, best_score = None, -np.inf
        for labels in _partitions(n, max_groups):
            masks = [0] * max_groups
            for i, label in enumerate(labels):
                masks[label] |= 1 << i
            score = sum(subset[m] for m in masks)
            if score > best_score + 1e-12 and (budget is None or partition_cost(labels, cost) <= budget):
                best, best_score = labels, score
        if best is None:
            cheapest = min(partition_cost(labels, cost) for labels in _partitions(n, max_groups))
            raise GroupsError(f"no grouping into <= {max_groups} networks fits --budget-ms {budget:g}: "
                              f"the cheapest costs {cheapest:.1f} ms per update")
        within = f" within {budget:g} ms per update" if budget is not None else ""
        return list(best), partition_score(affinity, best), (
            f"exact search over every partition of {n} game{'s' * (n != 1)} into <= {max_groups} groups{within}")
    return _local_search(affinity, max_groups, seed) + (
        f"heuristic ({n} > {EXACT_MAX_GAMES} games): greedy merging, then single-game moves and swaps "
        f"until no move improves, best of 20 restarts",)


def random_partition(n: int, k: int, seed: int) -> tuple[list[int], int | None]:
    """A partition of n games into exactly min(k, n) groups, drawn uniformly from all such partitions: the
    baseline a chosen grouping must beat (same number of networks, no knowledge of the games). Returns the
    labels and how many such partitions there are (None above EXACT_MAX_GAMES, where a uniform labelling
    is redrawn until every group is used: each partition into k groups has k! labellings, so it is uniform too)."""
    if k < 1:
        raise GroupsError(f"--networks must be at least 1, got {k}")
    k = min(k, n)
    rng = np.random.default_rng(seed)
    if n <= EXACT_MAX_GAMES:
        exact = [p for p in _partitions(n, k) if len(set(p)) == k]
        return list(exact[rng.integers(len(exact))]), len(exact)
    for _ in range(100_000):
        labels = rng.integers(0, k, n)
        if len(set(labels.tolist())) == k:
            return _canonical(labels.tolist()), None
    raise GroupsError(f"no random partition of {n} game{'s' * (n != 1)} into exactly {k} group{'s' * (k != 1)} "
                      f"found in 100,000 draws: ask for fewer --networks")


def _partitions(n: int, k: int):
    """Restricted growth strings: every partition of n items into at most k blocks, once."""
    labels = [0] * n

    def rec(i: int, used: int):
        if i == n:
            yield tuple(labels)
            return
        for label in range(min(used + 1, k)):
            labels[i] = label
            yield from rec(i + 1, max(used, label + 1))

    yield from rec(1, 1) if n else iter([()])


def _local_search(affinity: np.ndarray, k: int, seed: int) -> tuple[list[int], float]:
    rng = np.random.default_rng(seed)
    n = len(affinity)
    best, best_score = None, -np.inf
    for restart in range(20):
        labels = _greedy_merge(affinity, k) if restart == 0 else list(rng.integers(0, k, n))
        improved = True
        while improved:
            improved = False
            for i in range(n):
                for g in range(k):
                    if g != labels[i] and _gain(affinity, labels, {i: g}) > 1e-12:
                        labels[i], improved = g, True
            for i, j in itertools.combinations(range(n), 2):
                if labels[i] != labels[j] and _gain(affinity, labels, {i: labels[j], j: labels[i]}) > 1e-12:
                    labels[i], labels[j], improved = labels[j], labels[i], True
        score = partition_score(affinity, labels)
        if score > best_score + 1e-12:
            best, best_score = _canonical(labels), score
    return best, best_score


def _gain(affinity: np.ndarray, labels: list[int], moves: dict[int, int]) -> float:
    """Score change of reassigning games as `moves` says; only the groups involved are rescored."""
    groups = {labels[i] for i in moves} | set(moves.values())
    after = [moves.get(i, l) for i, l in enumerate(labels)]
    return sum(group_score(affinity, [i for i, l in enumerate(after) if l == g])
               - group_score(affinity, [i for i, l in enumerate(labels) if l == g]) for g in groups)


def _greedy_merge(affinity: np.ndarray, k: int) -> list[int]:
    """Start from singletons; merge the pair of groups that adds most score, while above k groups or it helps."""
    groups = [[i] for i in range(len(affinity))]
    while len(groups) > 1:
        gains = [(group_score(affinity, a + b) - group_score(affinity, a) - group_score(affinity, b), x, y)
                 for (x, a), (y, b) in itertools.combinations(enumerate(groups), 2)]
        gain, x, y = max(gains)
        if gain <= 0 and len(groups) <= k:
            break
        groups[x] = groups[x] + groups[y]
        del groups[y]
    labels = [0] * len(affinity)
    for label, group in enumerate(groups):
        for i in group:
            labels[i] = label
    return labels


def _canonical(labels) -> list[int]:
    """Relabel groups in order of first appearance."""
    mapping: dict[int, int] = {}
    return [mapping.setdefault(l, len(mapping)) for l in labels]
