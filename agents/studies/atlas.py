"""The transfer atlas (issue 33): which games help each other when one hard-shared network learns them.

Every matrix is M[source, target], row source, column target (TAG's orientation, and `mtdqn group`'s):
- realized[j, i]: game i's final normalized score in the pair run {i, j} minus i's score alone, means over
  runs: the effect on i (target) of training with j (source). Positive: j helps i.
- affinity[j, i]: TAG's lookahead affinity of j onto i (multitask/conflict.py), the relative drop of i's loss
  after a step on j's loss alone, from the all-games runs. Positive: a step for j helps i.
- cosine[j, i] (gradient cosine) and overlap[j, i] (Jaccard overlap of learned gates) are symmetric.
So realized.csv is a matrix `mtdqn group --affinity` reads: higher is a game receiving more from a groupmate.

Each cell compares runs, never episodes (docs/statistics.md): the difference of means with Welch's 95%
t-interval over runs (the pair's runs and the alone runs are independent, not paired by seed; a percentile
bootstrap is too narrow at 3-5 runs a side), Welch's p with a Benjamini-Hochberg q over the atlas's decided
cells, and rliable's P(score with the source > score alone) with its bootstrap interval (envs/statistics.py).
A cell says helps / hurts only when the interval excludes 0 and each side has 3+ runs.
Each predictor's off-diagonal entries are rank-correlated (Spearman) with the realized matrix's; the interval
resamples runs: the predictor's runs, each game's alone runs and each pair's runs (a pair run whole), each
group independently (rliable's StratifiedIndependentBootstrap), and recomputes both matrices and rho.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtdqn.agents.studies.atlas_runs import AtlasError, Run, Runs, check_budget, covering, predictor_matrices
from mtdqn.agents.studies.compare import MIN_RUNS_TO_DECIDE
from mtdqn.envs.statistics import difference_summary, interval_estimates, probability_of_improvement

PREDICTORS = ("cosine", "affinity", "overlap")
PREDICTOR_TITLES = {"cosine": "gradient cosine", "affinity": "TAG affinity (source -> target)",
                    "overlap": "gate overlap (Jaccard)"}
MISSING = "missing (no runs yet)"
NO_INTERVAL = "no interval (1 run on a side)"


@dataclass
class Cell:
    """One game (target) trained with a partner or a group (source) against the same game alone."""
    target: str
    source: str
    with_scores: np.ndarray  # the target's final score in each run with the source
    alone_scores: np.ndarray  # its final score in each alone run
    budget: int | None = None
    difference: dict | None = None  # mean with - mean alone: statistics.difference_summary's fields
    improvement: dict | None = None  # envs.statistics.probability_of_improvement: P(with > alone)
    verdict: str = MISSING

    @property
    def runs(self) -> tuple[int, int]:
        return len(self.with_scores), len(self.alone_scores)

    @property
    def relative(self) -> float | None:
        """The difference over the game's mean alone (+1.0: the runs with the source score twice the alone
        runs' mean); None without a difference or without a positive mean alone. The games' scores differ
        40-fold in scale, so the ALE check ranks its candidate findings by this (docs/atlas.md)."""
        alone = float(np.mean(self.alone_scores)) if len(self.alone_scores) else 0.0
        return None if self.difference is None or alone <= 0 else self.difference["value"] / alone


@dataclass
class Predictor:
    name: str
    runs: list[Run]
    matrix: np.ndarray  # [source, target], mean over runs
    correlation: dict = field(default_factory=dict)  # value, ci_low, ci_high, cells, interval


@dataclass
class Atlas:
    games: list[str]
    cells: dict[tuple[str, str], Cell]  # (source, target) -> the pair comparison
    groups: dict[tuple, list[Cell]]  # a suite of 3+ games -> each game in it against alone
    realized: np.ndarray  # [source, target] difference of means, NaN where missing
    predictors: dict[str, Predictor]
    notes: list[str]


def parse_predictors(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    for p in names:
        if p not in PREDICTORS:
            raise AtlasError(f"unknown predictor {p!r}: choose from {', '.join(PREDICTORS)} (comma-separated)")
    return list(dict.fromkeys(names))


def verdict(difference: tuple[float, float] | None, runs: tuple[int, int]) -> str:
    if difference is None:
        return NO_INTERVAL
    if min(runs) < MIN_RUNS_TO_DECIDE:
        return f"undecided (< {MIN_RUNS_TO_DECIDE} runs a side)"
    if difference[0] > 1e-9:
        return "helps"
    if difference[1] < -1e-9:
        return "hurts"
    return "no measurable difference"


def compare_cell(target: str, source: str, with_runs: list[Run], alone: list[Run], reps: int, seed: int) -> Cell:
    cell = Cell(target, source, np.array([r.scores[target] for r in with_runs]),
                np.array([r.scores[target] for r in alone]))
    if not with_runs:
        return cell
    cell.budget = check_budget(with_runs + alone, f"{target} with {source} against {target} alone")
    cell.difference = d = difference_summary(cell.alone_scores, cell.with_scores)
    cell.improvement = probability_of_improvement(cell.with_scores[:, None], cell.alone_scores[:, None], reps, seed)
    cell.verdict = verdict(None if d["ci_low"] is None else (d["ci_low"], d["ci_high"]), cell.runs)
    return cell


def false_discovery(cells: dict, groups: dict) -> None:
    """Benjamini-Hochberg q beside each decided cell's p (difference["q"]): with 20 pairs and 5 group cells
    tested at 5%, about one cell would read helps or hurts by chance if nothing transferred; q < 0.05 marks
    the verdicts that hold with the atlas's false discovery rate at 5%."""
    from scipy.stats import false_discovery_control

    decided = [c for c in [*cells.values(), *(c for g in groups.values() for c in g)]
               if c.difference and c.difference.get("p") is not None and min(c.runs) >= MIN_RUNS_TO_DECIDE]
    if decided:
        for c, q in zip(decided, false_discovery_control([c.difference["p"] for c in decided])):
            c.difference["q"] = float(q)


def mean_matrix(stack) -> np.ndarray:
    """The mean over runs (axis 0) of [runs, G, G] matrices, NaN where no run has a value."""
    stack = np.asarray(stack, dtype=np.float64)
    finite = np.isfinite(stack)
    count = finite.sum(0)
    return np.where(count > 0, np.where(finite, stack, 0.0).sum(0) / np.maximum(count, 1), np.nan)


def realized_matrix(games: list[str], alone: dict[str, np.ndarray], pairs: dict[tuple, np.ndarray]) -> np.ndarray:
    """[source, target] mean score with the source minus mean alone; `pairs[(a, b)]` is [runs, 2], the scores
    of a and of b in each run of the pair."""
    out = np.full((len(games), len(games)), np.nan)
    for (a, b), scores in pairs.items():
        i, j = games.index(a), games.index(b)
        out[j, i] = scores[:, 0].mean() - alone[a].mean()
        out[i, j] = scores[:, 1].mean() - alone[b].mean()
    return out


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (ties share their mean rank); NaN if a side is constant."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def rho_without_each(predictor: np.ndarray, realized: np.ndarray, games: list[str]) -> dict[str, float | None]:
    """For each game g, Spearman's rho over the cells that involve neither g as source nor as target (12 of
    20 with 5 games): a jackknife over games that shows whether one game carries the correlation, as a game
    that every partner hurts, and that a predictor sets apart, would. None where fewer than 3 cells remain
    or a side's values are all tied. The matrices are [source, target] means, NaN where missing."""
    out, both = {}, ~np.eye(len(games), dtype=bool) & np.isfinite(predictor) & np.isfinite(realized)
    for k, game in enumerate(games):
        keep = both.copy()
        keep[k, :] = keep[:, k] = False
        value = rank_correlation(predictor[keep], realized[keep]) if keep.sum() >= 3 else float("nan")
        out[game] = None if np.isnan(value) else value
    return out


def correlation(predictor: np.ndarray, games: list[str], alone: dict[str, np.ndarray], pairs: dict[tuple, np.ndarray],
                reps: int, seed: int) -> dict:
    """Spearman's rho of a predictor's runs ([runs, G, G]) against the realized matrix, over the off-diagonal
    cells both have, with a 95% bootstrap interval over runs (module docstring)."""
    pred, real = mean_matrix(predictor), realized_matrix(games, alone, pairs)
    mask = ~np.eye(len(games), dtype=bool) & np.isfinite(pred) & np.isfinite(real)
    out = {"value": None, "ci_low": None, "ci_high": None, "cells": int(mask.sum()), "runs": len(predictor)}
    if mask.sum() < 3:
        return {**out, "interval": f"{int(mask.sum())} cell(s) with both values: a rank correlation needs 3"}
    value = rank_correlation(pred[mask], real[mask])
    if np.isnan(value):
        return {**out, "interval": "undefined: one side's values are all tied"}
    out["value"], out["without"] = value, rho_without_each(pred, real, games)
    pairs = {p: s for p, s in pairs.items() if mask[games.index(p[1]), games.index(p[0])]
             or mask[games.index(p[0]), games.index(p[1])]}
    alone = {g: s for g, s in alone.items() if any(g in p for p in pairs)}
    counts = {"the predictor": len(predictor), **{f"{g} alone": len(s) for g, s in alone.items()},
              **{"+".join(p): len(s) for p, s in pairs.items()}}
    lone = next((k for k, n in counts.items() if n < 2), None)
    if lone is not None:
        return {**out, "interval": f"no interval: 1 run of {lone}"}
    groups = [predictor, *alone.values(), *pairs.values()]

    def rho(*picks):
        idx = [p[:, 0].astype(int) for p in picks]
        resampled = realized_matrix(games, {g: s[i] for (g, s), i in zip(alone.items(), idx[1:])},
                                    {p: s[i] for (p, s), i in zip(pairs.items(), idx[1 + len(alone):])})
        return np.array([rank_correlation(mean_matrix(predictor[idx[0]])[mask], resampled[mask])])

    arrays = tuple(np.arange(len(g), dtype=np.float64)[:, None] for g in groups)
    _, interval = interval_estimates({"rho": arrays}, rho, reps, seed)
    low, high = (float(np.squeeze(interval["rho"][k])) for k in (0, 1))
    if not (np.isfinite(low) and np.isfinite(high)):
        return {**out, "interval": "no interval: rho is undefined (ties) in some resamples"}
    return {**out, "ci_low": low, "ci_high": high,
            "interval": f"95% bootstrap over runs ({len(predictor)} predictor runs; alone and pair runs)"}


def analyze(runs: Runs, predictors: list[str], since_frames: int = 0, reps: int = 2000, seed: int = 0) -> Atlas:
    """Every comparison, predictor and correlation of the atlas; raises AtlasError on input it cannot use."""
    games, notes = runs.games, list(runs.notes)
    cells = {}
    for target in games:
        for source in games:
            if source != target:
                with_runs = runs.shared.get(tuple(sorted((source, target))), [])
                cells[source, target] = compare_cell(target, source, with_runs, runs.alone.get(target, []), reps, seed)
    groups = {suite: [compare_cell(g, "+".join(suite), group, runs.alone[g], reps, seed) for g in suite]
              for suite, group in runs.shared.items() if len(suite) > 2}
    alone = {g: np.array([r.scores[g] for r in rs]) for g, rs in runs.alone.items()}
    pairs = {suite: np.array([[r.scores[g] for g in suite] for r in rs]) for suite, rs in runs.shared.items()
             if len(suite) == 2}
    realized = realized_matrix(games, alone, pairs)
    false_discovery(cells, groups)
    budgets = sorted({c.budget for c in [*cells.values(), *(c for g in groups.values() for c in g)] if c.budget})
    if len(budgets) > 1:
        notes.append("the comparisons are at different budgets (" + ", ".join(f"{b:,}" for b in budgets)
                     + " frames per game); each one is at a single budget")
    found = {}
    for name in predictors:
        measured = predictor_matrices(runs, name, since_frames)
        kind = "--sharing learned" if name == "overlap" else "hard-sharing"
        if not measured:
            of_all = covering(runs.learned if name == "overlap" else runs.shared, games)
            file = "overlap.csv" if name == "overlap" else "conflict.csv"
            notes.append(f"{name}: no {kind} run of all {len(games)} game{'s' * (len(games) != 1)} with {file}" +
                         (f" ({len(of_all)} such run(s) without it)" if of_all else ""))
            continue
        stack = np.stack([m for _, m in measured])
        found[name] = Predictor(name, [r for r, _ in measured], mean_matrix(stack))
        found[name].correlation = correlation(stack, games, alone, pairs, reps, seed)
    return Atlas(games, cells, groups, realized, found, notes)


def as_json(atlas: Atlas) -> dict:
    """Everything the atlas computed, as plain data (NaN as None)."""
    def matrix(m):
        return [[None if not np.isfinite(x) else float(x) for x in row] for row in m]

    def cell(c: Cell) -> dict:
        return {"source": c.source, "target": c.target, "runs_with": c.runs[0], "runs_alone": c.runs[1],
                "budget": c.budget, "with_scores": c.with_scores.tolist(), "alone_scores": c.alone_scores.tolist(),
                "difference": c.difference, "relative": c.relative, "probability_of_improvement": c.improvement,
                "verdict": c.verdict}

    return {"games": atlas.games, "orientation": "matrices are [source][target]: row source, column target",
            "realized": matrix(atlas.realized), "cells": [cell(c) for c in atlas.cells.values()],
            "groups": {"+".join(s): [cell(c) for c in cs] for s, cs in atlas.groups.items()},
            "predictors": {n: {"runs": [str(r.folder) for r in p.runs], "matrix": matrix(p.matrix),
                               "correlation": p.correlation} for n, p in atlas.predictors.items()},
            "notes": atlas.notes}
