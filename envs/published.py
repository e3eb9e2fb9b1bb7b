"""Published Atari-100k results: each game's final scores of DrQ(eps) and SPR over 100 runs each.

From `envs/data/atari100k_published.csv` (mean, 25th percentile, median and 75th percentile per game; its
header names the source and the protocol). A reproduction is judged against the spread of those runs,
not a single mean: one seed of an agent that matches lands inside [p25, p75] half the time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

# option name -> (the CSV's agent column, the name papers print)
AGENTS = {"drq-eps": ("drq_eps", "DrQ(ε)"), "spr": ("spr", "SPR")}
BUDGET_FRAMES = 400_000  # 100k agent steps per game, the budget every published row was trained for


@dataclass(frozen=True)
class Published:
    runs: int
    mean: float
    p25: float
    median: float
    p75: float


@lru_cache(maxsize=None)
def published_scores(agent: str) -> dict[str, Published]:
    """game -> its published final scores for `agent` (a key of AGENTS)."""
    if agent not in AGENTS:
        raise ValueError(f"unknown published agent {agent!r}: choose one of {', '.join(AGENTS)}")
    text = resources.files("mtdqn.envs").joinpath("data/atari100k_published.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["game"]: Published(int(r["runs"]), float(r["mean"]), float(r["p25"]), float(r["median"]),
                                 float(r["p75"])) for r in rows if r["agent"] == AGENTS[agent][0]}


def iqm_over_games(values) -> float:
    """The interquartile mean of per-game scores as the Atari-100k tables compute it: the mean of the middle
    half of the games (of 4 games, the two middle ones), i.e. a 25% trimmed mean."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(values, dtype=np.float64), 0.25))
