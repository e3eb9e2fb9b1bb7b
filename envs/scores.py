"""Human-normalized scores and their aggregates.

HNS = (score - random) / (human - random), from the 57-game reference table shipped with the
package. A game without a reference has no HNS: it is reported raw and left out of aggregates.
Aggregates follow rliable (Agarwal et al. 2021): IQM, median and mean with stratified-bootstrap
confidence intervals, where the "runs" of one checkpoint are its evaluation episodes.
"""

from __future__ import annotations

import csv
import warnings
from functools import lru_cache
from importlib import resources

import numpy as np


@lru_cache(maxsize=1)
def reference_scores() -> dict[str, tuple[float, float]]:
    """game -> (random, human) from `envs/data/atari57_human_random.csv`."""
    text = resources.files("mtdqn.envs").joinpath("data/atari57_human_random.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["game"]: (float(r["random"]), float(r["human"])) for r in rows}


def hns(game: str, score):
    """Human-normalized score(s) of `game`, or None when the game has no reference."""
    ref = reference_scores().get(game)
    if ref is None:
        return None
    random, human = ref
    return (np.asarray(score, dtype=np.float64) - random) / (human - random)


AGGREGATES = ("iqm", "median", "mean")


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


def aggregate_hns(per_episode: np.ndarray, reps: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """IQM / median / mean of an [episodes x games] HNS matrix with 95% stratified-bootstrap CIs.

    Returns {"iqm": {"value", "ci_low", "ci_high"}, ...}.
    """
    from rliable import metrics

    def stats(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x)])

    point, interval = interval_estimates({"run": np.asarray(per_episode, dtype=np.float64)}, stats, reps, seed)
    return {
        name: {"value": float(point["run"][i]), "ci_low": float(interval["run"][0, i]),
               "ci_high": float(interval["run"][1, i])}
        for i, name in enumerate(AGGREGATES)
    }
