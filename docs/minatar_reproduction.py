"""The MinAtar DQN reproduction table and learning curves of docs/minatar.md, from a `mtdqn study` folder.

    python docs/minatar_reproduction.py docs/runs/minatar-dqn-100k

Reads every OUT/dqn/minatar-<game>/seed<k>/ run (studies/minatar_dqn.yaml), and prints per game: the seeds,
the greedy evaluation at the budget (30 episodes per seed; mean and spread over seeds, DQN-normalized), the
training return of the last logged window (what the paper's curves plot) beside the paper's DQN curve read at
the same budget, and the aggregate over games with intervals over runs (run k = seed k of every game).
Writes curves.png (greedy evaluations over training, mean over seeds with each seed's points) in the folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mtdqn.envs.minatar import normalized_score, reference_scores  # noqa: E402
from mtdqn.envs.statistics import aggregates, format_estimate  # noqa: E402

# The paper's DQN curve (a 100-episode moving average of training returns, epsilon 1 -> 0.1 over the first
# 100k frames) read at 100k frames off img/learning_curves.gif of kenjyoung/MinAtar (commit 87c2bc8), with
# the reading's error in returns. Freeway's curve is flat until 250k frames (its first 100 episodes of 2,500
# frames end there), so it has no reading at 100k. How they were read: docs/minatar.md.
PAPER_CURVE_100K = {"asterix": (0.56, 0.1), "breakout": (4.0, 0.5), "freeway": None, "seaquest": (0.42, 0.07),
                    "space_invaders": (16.9, 1.2)}


def runs(folder: Path) -> dict[str, list[Path]]:
    """Game -> its seed folders that finished (a final eval.json at or past the budget)."""
    out = {}
    for game_dir in sorted((folder / "dqn").glob("minatar-*")):
        game = game_dir.name.removeprefix("minatar-")
        done = [d for d in sorted(game_dir.glob("seed*")) if final_eval(d) is not None]
        if done:
            out[game] = done
    return out


def final_eval(run: Path) -> dict | None:
    import yaml

    budget = yaml.safe_load((run / "config.yaml").read_text())["frames_per_game"]
    evals = sorted(run.glob("evals/frames_*/eval.json"))
    if not evals or int(evals[-1].parent.name.split("_")[1]) < budget:
        return None
    return json.loads(evals[-1].read_text())


def curve(run: Path) -> list[tuple[int, float]]:
    """(frames, greedy mean return) of every evaluation of a run."""
    points = []
    for path in sorted(run.glob("evals/frames_*/eval.json")):
        report = json.loads(path.read_text())
        points.append((int(path.parent.name.split("_")[1]), report["games"][0]["raw_mean"]))
    return points


def training_return(run: Path, game: str) -> tuple[float, float]:
    """The last logged window's mean training return and its epsilon."""
    key = f"train/minatar/{game}/episodic_return"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if key in r][-1]
    return last[key], last[f"train/minatar/{game}/epsilon"]


def main(folder: Path) -> None:
    found = runs(folder)
    refs = reference_scores()
    lines = ["| game | seeds | greedy return at 100k, mean (min-max) | DQN-normalized | training return, last "
             "10k steps | paper DQN curve at 100k | paper DQN at 5M |", "|---|---:|---:|---:|---:|---:|---:|"]
    matrix = []
    for game, seeds in found.items():
        scores = np.array([final_eval(d)["games"][0]["raw_mean"] for d in seeds])
        normalized = np.array([normalized_score(f"minatar/{game}", s) for s in scores])
        train = np.array([training_return(d, game)[0] for d in seeds])
        paper = PAPER_CURVE_100K.get(game)
        lines.append(f"| {game} | {len(seeds)} | {scores.mean():.2f} ({scores.min():.2f}-{scores.max():.2f}) | "
                     f"{normalized.mean():.3f} | {train.mean():.2f} | "
                     f"{'-' if paper is None else f'{paper[0]:.2f} ± {paper[1]:.2f}'} | "
                     f"{refs[f'minatar/{game}'][1]:.1f} |")
        matrix.append(normalized)
    print("\n".join(lines))
    n = max((len(m) for m in matrix), default=0)
    full = [(game, m) for game, m in zip(found, matrix) if len(m) == n]  # games with every seed done
    if full:
        stats = aggregates(np.array([m for _, m in full]).T)
        print(f"\nDQN-normalized over {len(full)} games ({', '.join(g for g, _ in full)}) x {n} runs (run k = seed k "
              f"of every game), 95% intervals over runs: IQM {format_estimate(stats['iqm'])}, "
              f"mean {format_estimate(stats['mean'])}")
    plot(found, folder / "curves.png")
    print(f"\nwrote {folder / 'curves.png'}")


def plot(found: dict[str, list[Path]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(found), figsize=(3.2 * len(found), 3.0), squeeze=False)
    for ax, (game, seeds) in zip(axes[0], found.items()):
        curves = [curve(d) for d in seeds]
        frames = [f for f, _ in curves[0]]
        values = np.array([[v for _, v in c] for c in curves if len(c) == len(frames)])
        for row in values:
            ax.plot(frames, row, "o", color="tab:blue", alpha=0.35, ms=4)
        ax.plot(frames, values.mean(0), "-", color="tab:blue", label=f"ours, mean of {len(values)} seeds")
        ax.axhline(reference_scores()[f"minatar/{game}"][0], color="grey", ls=":", label="random")
        train = np.mean([training_return(d, game)[0] for d in seeds])
        ax.plot([100_000], [train], "D", color="tab:green", ms=6, label="ours, training return 90k-100k")
        paper = PAPER_CURVE_100K.get(game)
        if paper is not None:
            ax.errorbar([100_000], [paper[0]], yerr=[paper[1]], fmt="s", color="tab:orange",
                        label="paper DQN curve at 100k (training return)")
        ax.set_title(game)
        ax.set_xlabel("agent steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(3, 3))
    axes[0][0].set_ylabel("greedy return (30 episodes)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # the legend below the panels, clear of every point
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/runs/minatar-dqn-100k"))
