"""Published Atari-100k results: each game's final scores of DrQ(eps) and SPR over 100 runs each.

`envs/data/atari100k_published_runs.csv` holds every run's score (its header names the source and the
protocol); `atari100k_published.csv` their mean and quartiles per game. A reproduction is judged against
those runs, not a single mean: one seed of an agent that matches lands inside [p25, p75] half the time,
and K seeds of ours are comparable with K of theirs per game, so the aggregate is set beside the
distribution of the published agent's IQM over K runs per game drawn from its 100.
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
PROTOCOL = "atari100k"  # how every published run was trained and evaluated (envs/protocol.py)


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


@lru_cache(maxsize=None)
def published_runs(agent: str) -> dict[str, np.ndarray]:
    """game -> every published run's final score for `agent` (a key of AGENTS), in the file's order."""
    published_scores(agent)  # the same check of the name
    text = resources.files("mtdqn.envs").joinpath("data/atari100k_published_runs.csv").read_text()
    runs: dict[str, list[float]] = {}
    for r in csv.DictReader(line for line in text.splitlines() if not line.startswith("#")):
        if r["agent"] == AGENTS[agent][0]:
            runs.setdefault(r["game"], []).append(float(r["score"]))
    return {g: np.array(v) for g, v in runs.items()}


def iqm_distribution(agent: str, games: list[str], runs_per_game: int, draws: int = 10_000,
                     seed: int = 0) -> np.ndarray:
    """The published agent's rliable IQM of HNS over `runs_per_game` runs per game, each draw taking that many
    of a game's runs without replacement: what an agent exactly as good would score with our number of seeds."""
    from scipy.stats import trim_mean

    from mtdqn.envs.scores import hns

    rng = np.random.default_rng(seed)
    pools = [hns(g, published_runs(agent)[g]) for g in games]
    picks = np.stack([np.stack([rng.choice(p, runs_per_game, replace=False) for _ in range(draws)]) for p in pools],
                     axis=2)  # [draws, runs, games]
    return trim_mean(picks.reshape(draws, -1), 0.25, axis=1)


def position(score: float, ref: Published) -> str:
    """Where one run's score sits against a game's published quartiles, in the game's own score units:
    '4.9 below p25 (0.54 IQR)', 'inside, 1.2 above the median', '3.0 above p75 (0.33 IQR)'.

    Never a ratio to the median: pong's is negative (-11.0 for DrQ(eps)), so -20.5 would read as "+86%
    of the median" while it lies below p25, and a median near zero makes any ratio explode. Distances
    in points, and in units of the published interquartile range (p75 - p25, never negative), keep the
    sign in the words and the scale comparable across games."""
    iqr = ref.p75 - ref.p25

    def spread(d: float) -> str:
        return f" ({d / iqr:.2f} IQR)" if iqr > 0 else ""

    if score < ref.p25:
        return f"{ref.p25 - score:.1f} below p25{spread(ref.p25 - score)}"
    if score > ref.p75:
        return f"{score - ref.p75:.1f} above p75{spread(score - ref.p75)}"
    side = "above" if score >= ref.median else "below"
    return f"inside, {abs(score - ref.median):.1f} {side} the median"


def episode_cap_problems(games: dict[str, list[dict]]) -> list[str]:
    """The evaluations (records of `agents.studies.reproduction.gather`) whose episode cap is not the
    published protocol's: a shorter cap ends episodes early, so their scores are not the published runs'
    kind of score (pong stopped at 40,000 frames reads higher than the game played out; breakout's lower)."""
    from mtdqn.envs.protocol import PROTOCOLS

    protocol = PROTOCOLS[PROTOCOL]
    cap = protocol.max_frames_per_episode
    problems = []
    for game, records in games.items():
        for r in records:
            theirs = r.get("protocol", {}).get("max_frames_per_episode")
            if theirs is not None and theirs != cap:  # none recorded: the protocol warning says "?" already
                problems.append(f"{r['source']} evaluated {game} with episodes capped at {theirs:,} frames; the "
                                f"published runs' protocol ({PROTOCOL}) plays them up to {cap:,} frames "
                                f"({cap // protocol.frameskip:,} agent steps)")
    return problems
