"""Human-normalized scores and their aggregates.

HNS = (score - random) / (human - random), from the 57-game reference table shipped with the
package. A game without a reference has no HNS: it is reported raw and left out of aggregates.
A run's score on a game is the mean of its evaluation episodes; aggregates over runs and their
intervals live in envs/statistics.py (rliable, runs as the unit).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

import numpy as np

from mtdqn.envs import minatar


@lru_cache(maxsize=1)
def reference_scores() -> dict[str, tuple[float, float]]:
    """game -> (random, human) from `envs/data/atari57_human_random.csv`."""
    text = resources.files("mtdqn.envs").joinpath("data/atari57_human_random.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["game"]: (float(r["random"]), float(r["human"])) for r in rows}


def hns(game: str, score):
    """The normalized score(s) of `game`, or None when the game has no reference: human-normalized on ALE;
    on MinAtar, where no human scores exist, normalized to random = 0 and the paper's DQN = 1
    (envs/minatar.py). A run trains one family, so the two never meet in one aggregate; reports name
    which one they hold (`score_name`)."""
    if minatar.is_minatar(game):
        return minatar.normalized_score(game, score)
    ref = reference_scores().get(game)
    if ref is None:
        return None
    random, human = ref
    return (np.asarray(score, dtype=np.float64) - random) / (human - random)


def score_name(games) -> str:
    """What `hns` means for these games: 'HNS' (human-normalized) or 'DQN-normalized' (MinAtar)."""
    return "DQN-normalized" if any(minatar.is_minatar(g) for g in games) else "HNS"


def aggregate_hns(episodes: list, reps: int = 2000, seed: int = 0) -> dict:
    """One run's aggregates over its games: IQM, median, mean and optimality gap of the games' mean HNS,
    a point estimate (one run has no interval over seeds), each with "episode_interval", a 95% interval
    that resamples the run's evaluation episodes: how precisely this checkpoint was measured, not how
    another seed would score. `episodes`: per game, that game's per-episode HNS."""
    from mtdqn.envs.statistics import AGGREGATES, aggregates, within_run_interval

    result = aggregates(np.array([[np.mean(e) for e in episodes]], dtype=np.float64))
    within = within_run_interval([np.asarray(e, dtype=np.float64) for e in episodes], reps, seed)
    for name in AGGREGATES:
        result[name]["episode_interval"] = within[name]
    return result
