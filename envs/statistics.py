"""Statistics over runs: a runs x games matrix in, rliable's aggregates and intervals out.

The unit of evidence is the run (a training seed), not the episode: seed-to-seed variance dominates
RL results (drq-eps frostbite scored 1571 at seed 0 and 256 at seed 1), so a run's score on a game
is the mean of its evaluation episodes, and every interval resamples runs, per game (rliable's
stratified bootstrap, Agarwal et al. 2021). One run has no interval over seeds: its aggregates are
point estimates, and anything that needs a spread says so instead of inventing one from episodes.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

AGGREGATES = ("iqm", "median", "mean", "optimality_gap")
ONE_RUN = "1 run: no interval over seeds"


def interval_estimates(scores: dict, func, reps: int, seed: int):
    """rliable's `get_interval_estimates`, the same for the same seed: rliable 1.2's stratified
    bootstraps draw their resamples from NumPy's global generator (`np.random.choice`), whatever
    `random_state` says, so that generator is seeded here and put back as it was afterwards."""
    from rliable import library as rly

    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch deprecates the RandomState that rliable passes it
            warnings.simplefilter("ignore", FutureWarning)
            return rly.get_interval_estimates(scores, func, reps=reps, random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(saved)


def _aggregate_functions():
    from rliable import metrics

    return (metrics.aggregate_iqm, metrics.aggregate_median, metrics.aggregate_mean,
            metrics.aggregate_optimality_gap)


def point_aggregates(matrix: np.ndarray) -> np.ndarray:
    """IQM, median, mean and optimality gap (gamma = 1) of a [runs x games] matrix, as rliable pools it:
    the IQM trims the middle half of all runs x games scores together."""
    return np.array([f(matrix) for f in _aggregate_functions()])


def aggregates(matrix, reps: int = 2000, seed: int = 0) -> dict:
    """{"runs": n, "iqm": {"value", "ci_low", "ci_high"}, "median", "mean", "optimality_gap"} of a
    [runs x games] matrix of per-run scores, with 95% stratified-bootstrap intervals over runs.
    With one run the intervals are None and "interval" says why."""
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    runs = matrix.shape[0]
    if runs < 2:
        point = point_aggregates(matrix)
        return {"runs": runs, "interval": ONE_RUN,
                **{name: {"value": float(point[i]), "ci_low": None, "ci_high": None}
                   for i, name in enumerate(AGGREGATES)}}
    point, interval = interval_estimates({"x": matrix}, point_aggregates, reps, seed)
    return {"runs": runs, "interval": f"95% stratified bootstrap over {runs} runs",
            **{name: {"value": float(point["x"][i]), "ci_low": float(interval["x"][0, i]),
                      "ci_high": float(interval["x"][1, i])} for i, name in enumerate(AGGREGATES)}}


def probability_of_improvement(x, y, reps: int = 2000, seed: int = 0) -> dict:
    """rliable's P(X > Y): the Mann-Whitney probability that a run of X beats a run of Y on a game, averaged
    over games, from [runs_x x games] and [runs_y x games] (the run counts may differ). The 95% interval
    resamples each side's runs per game; with one run on either side there is none."""
    from rliable import metrics

    x, y = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (x, y))
    if min(len(x), len(y)) < 2:
        return {"value": float(metrics.probability_of_improvement(x, y)), "ci_low": None, "ci_high": None,
                "runs": [len(x), len(y)], "interval": ONE_RUN}
    point, interval = interval_estimates({"pair": (x, y)}, metrics.probability_of_improvement, reps, seed)
    return {"value": float(np.squeeze(point["pair"])), "ci_low": float(np.squeeze(interval["pair"][0])),
            "ci_high": float(np.squeeze(interval["pair"][1])), "runs": [len(x), len(y)],
            "interval": "95% stratified bootstrap over runs"}


class Difference(NamedTuple):
    """mean(other) - mean(reference) on one game: its 95% interval and the two-sided p of no difference."""
    low: float
    high: float
    p: float


def difference_interval(reference, other, level: float = 0.95) -> Difference | None:
    """Welch's t-interval of mean(other) - mean(reference) over runs, each side's runs independent (not paired
    by seed), and Welch's p; None unless both sides have 2+ runs.

    Why not the bootstrap used for aggregates: a percentile bootstrap of a difference of means over 3-5 runs a
    side covers 0 in only 81-87% of no-effect trials at a nominal 95% (docs/statistics.md, measured), and with
    3 runs its ends jump with the bootstrap's seed (27 resamples of one side make lumps of 3.7%, above the
    2.5% tail). Welch's interval holds its level at these sizes for roughly normal scores, is what Colas et
    al. (2018) recommend for comparing RL algorithms over seeds, and has no seed."""
    from scipy import stats

    a, b = (np.asarray(v, dtype=np.float64).ravel() for v in (reference, other))
    if min(len(a), len(b)) < 2:
        return None
    d = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb <= 1e-24:  # every run of both sides scored the same: the difference is exact
        return Difference(d, d, 1.0 if abs(d) <= 1e-12 else 0.0)
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = stats.t.ppf(0.5 + level / 2, df)
    p = float(2 * stats.t.sf(abs(d) / se, df))
    return Difference(float(d - t * se), float(d + t * se), p)


def detectable_difference(n_a: int, n_b: int, std: float, power: float = 0.8, alpha: float = 0.05,
                          trials: int = 20000, seed: int = 0) -> float:
    """The smallest true difference of means that Welch's two-sided test at `alpha` (the test behind every
    verdict) detects with `power`, with n_a and n_b runs of normally spread scores, std `std` on both sides:
    what a "no measurable difference" can and cannot rule out.

    Measured, not from a formula: Welch's test estimates its degrees of freedom from the runs, and the
    noncentral-t formula then overstates its power at 3 runs a side (0.69 where it promises 0.8). `trials`
    no-effect draws (seeded, so the same call gives the same number) are shifted by a difference d, and d is
    bisected until the share of rejections reaches `power`. In units of std with std = 1: about 3.5 at 3 runs
    a side, 2.1 at 5 (docs/statistics.md)."""
    from scipy import stats

    if min(n_a, n_b) < 2:
        raise ValueError(f"a detectable difference needs 2+ runs a side, got {n_a} and {n_b}")
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(trials, n_a)), rng.normal(size=(trials, n_b))
    va, vb = a.var(axis=1, ddof=1) / n_a, b.var(axis=1, ddof=1) / n_b
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    reach = stats.t.ppf(1 - alpha / 2, df) * se  # a difference of means beyond +-reach is rejected
    gap = b.mean(axis=1) - a.mean(axis=1)
    low, high = 0.0, 1.0
    while np.mean(np.abs(gap + high) > reach) < power:
        high *= 2
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if np.mean(np.abs(gap + mid) > reach) < power else (low, mid)
    return float(std * high)


def difference_summary(reference, other) -> dict:
    """mean(other) - mean(reference) with Welch's interval and p as a report row's fields (None where either
    side has one run), the one form `mtdqn compare` and `mtdqn atlas` both write; with `detectable`, the
    difference these runs would detect with 80% power at their own pooled spread (an estimate: the spread of
    3-5 runs is itself uncertain), so that a "no measurable difference" says how large a difference it misses."""
    a, b = (np.asarray(v, dtype=np.float64).ravel() for v in (reference, other))
    d = difference_interval(a, b)
    value = float(b.mean() - a.mean())
    detectable = None
    if d is not None:
        pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
        detectable = detectable_difference(len(a), len(b), float(pooled))
    return {"value": value, "ci_low": None if d is None else d.low, "ci_high": None if d is None else d.high,
            "p": None if d is None else d.p, "detectable": detectable}


def performance_profiles(matrices: dict[str, np.ndarray], taus, reps: int = 2000, seed: int = 0) -> dict:
    """label -> (fraction of runs x games scoring above each tau, its 95% interval [2, taus]) as rliable's
    score distributions; the interval is None for a label with one run."""
    from rliable import library as rly

    taus = np.asarray(taus, dtype=np.float64)
    out = {}
    for label, m in matrices.items():
        m = np.atleast_2d(np.asarray(m, dtype=np.float64))
        if len(m) < 2:
            out[label] = (rly.score_distributions(m, taus), None)
            continue
        point, interval = interval_estimates({label: m}, lambda s: rly.score_distributions(s, taus), reps, seed)
        out[label] = (point[label], interval[label])
    return out


def within_run_interval(episodes: list[np.ndarray], reps: int = 2000, seed: int = 0) -> dict:
    """One run's aggregates with a 95% interval over its evaluation episodes only (each game's episodes
    resampled, the game means re-aggregated): how precisely the checkpoint was measured, not how another
    seed would score. Labelled as such wherever it is shown."""
    rng = np.random.default_rng(seed)
    means = np.stack([rng.choice(np.asarray(e, dtype=np.float64), (reps, len(e))).mean(1) for e in episodes], 1)
    draws = np.stack([point_aggregates(row[None, :]) for row in means])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return {name: [float(low[i]), float(high[i])] for i, name in enumerate(AGGREGATES)}


def percentile_of(value: float, population) -> float:
    """Where `value` sits among `population`, in percent: the share below it plus half the share equal
    to it (so the median of an odd population sits at 50)."""
    population = np.asarray(population, dtype=np.float64)
    return float(100.0 * (np.mean(population < value) + 0.5 * np.mean(population == value)))


def format_estimate(estimate: dict, digits: int = 3) -> str:
    """'0.096 [0.071, 0.120]', or '0.096 (1 run: no interval over seeds)'."""
    value = f"{estimate['value']:.{digits}f}"
    if estimate.get("ci_low") is None:
        return f"{value} ({ONE_RUN})"
    return f"{value} [{estimate['ci_low']:.{digits}f}, {estimate['ci_high']:.{digits}f}]"
