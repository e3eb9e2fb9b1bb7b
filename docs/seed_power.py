"""How many seeds a claim needs: the numbers of docs/statistics.md, recomputed from the runs in docs/runs
and the published DrQ(eps) runs shipped with the package.

    python docs/seed_power.py

1. The seed-to-seed spread (standard deviation over runs of a game's HNS) in our own runs, and in
   DrQ(eps)'s 100 published runs of the same games.
2. The smallest difference in a game's mean HNS that n seeds per side detect with 80% power (Welch's
   two-sided test at 5%, measured on seeded normal draws: envs/statistics.py detectable_difference), in units
   of that spread and in HNS for each measured spread.
3. How often a 95% percentile-bootstrap interval of a mean over n runs covers the true mean (the
   intervals mtdqn prints resample runs this way): too rarely with few runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtdqn.agents.studies.compare import load
from mtdqn.envs.published import published_runs
from mtdqn.envs.scores import hns
from mtdqn.envs.statistics import detectable_difference

RUNS = Path(__file__).parent / "runs"
# label -> (game, run folders of one configuration at different seeds)
OURS = {
    "drq-eps gopher, no restart (seeds 0-2)": ("gopher", ["drq-eps/gopher", "drq-eps-s1/gopher",
                                                          "drq-eps-reset/gopher-s2-noreset"]),
    "drq-eps gopher, restart (seeds 1-2)": ("gopher", ["drq-eps-reset/gopher-s1", "drq-eps-reset/gopher-s2"]),
    "drq-eps amidar, no restart (seeds 0-1)": ("amidar", ["drq-eps/amidar", "drq-eps-s1/amidar"]),
    **{f"mt3 {sharing} {game} (seeds 0-1)": (game, [f"mt3/{folder}", f"mt3s1/{folder}"])
       for sharing, folder in (("separate", "separate"), ("shared", "shared"), ("learned", "learned3"))
       for game in ("breakout", "boxing", "qbert")},
}
SEEDS = (3, 5, 10)


def bootstrap_coverage(n: int, trials: int = 4000, reps: int = 1000, seed: int = 0, population=None) -> float:
    """The share of 95% percentile-bootstrap intervals of a mean over n runs that cover the true mean, for
    runs drawn from a normal distribution or from `population` (e.g. one game's 100 published runs)."""
    rng = np.random.default_rng(seed)
    truth = 0.0 if population is None else float(np.mean(population))
    hits = 0
    for _ in range(trials):
        x = rng.normal(size=n) if population is None else rng.choice(population, n)
        means = rng.choice(x, (reps, n)).mean(1)
        low, high = np.percentile(means, [2.5, 97.5])
        hits += low <= truth <= high
    return hits / trials


def main() -> None:
    spreads = {}
    print("| runs | game | seeds | HNS per seed | std over seeds |\n|---|---|---:|---|---:|")
    for label, (game, folders) in OURS.items():
        scores = [load(str(RUNS / f)).score(game) for f in folders]
        spreads[label] = float(np.std(scores, ddof=1))
        print(f"| {label} | {game} | {len(scores)} | {', '.join(f'{s:.3f}' for s in scores)} | {spreads[label]:.3f} |")
    for game in ("frostbite", "seaquest", "gopher", "amidar"):
        runs = hns(game, published_runs("drq-eps")[game])
        spreads[f"DrQ(ε) published {game} (100 runs)"] = float(np.std(runs, ddof=1))
        print(f"| DrQ(ε) published | {game} | 100 | (median {np.median(runs):.3f}) | {np.std(runs, ddof=1):.3f} |")
    factors = {n: detectable_difference(n, n, 1.0) for n in SEEDS}
    print("\n| spread from | std | " + " | ".join(f"{n} seeds" for n in SEEDS) + " |")
    print("|---|---:|" + "---:|" * len(SEEDS))
    print("| (in standard deviations) | 1 | " + " | ".join(f"{factors[n]:.2f}" for n in SEEDS) + " |")
    for label, std in spreads.items():
        print(f"| {label} | {std:.3f} | " + " | ".join(f"{factors[n] * std:.3f}" for n in SEEDS) + " |")
    frostbite = hns("frostbite", published_runs("drq-eps")["frostbite"])
    print("\n| runs | normal | DrQ(ε) frostbite's 100 runs (skewed) |\n|---:|---:|---:|")
    for n in (2, 3, 5, 10):
        print(f"| {n} | {bootstrap_coverage(n):.2f} | {bootstrap_coverage(n, population=frostbite):.2f} |")


if __name__ == "__main__":
    main()
