"""A comparison (agents/studies/compare.py) as files a person reads: tables, CSVs and figures.

Every figure and table names how many runs each label has; spreads and bands are over runs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mtdqn.agents.studies.compare import Evaluated
from mtdqn.envs.scores import score_name
from mtdqn.envs.statistics import AGGREGATES, ONE_RUN, format_estimate


def markdown(result: dict) -> str:
    labels, ref = list(result["labels"]), result["reference"]
    others = [l for l in labels if l != ref]
    name = score_name([row["game"] for row in result["games"]])  # HNS, or MinAtar's DQN-normalized score
    runs = {l: result["labels"][l]["runs"] for l in labels}
    lines = ["Runs per label: " + ", ".join(f"{l} {n}" for l, n in runs.items())
             + ". A run's score on a game is the mean of its evaluation episodes; intervals resample runs.", ""]
    head = (["game", "frames"] + [f"{name} {l} ({runs[l]} run{'s' * (runs[l] > 1)})" for l in labels]
            + [f"{l} / {ref}" for l in others] + ["negative transfer"])
    lines += ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(labels) + len(others)) + "---|"]
    for row in result["games"]:
        frames = sorted({f for f in row["frames"].values() if f is not None})
        cells = [row["game"], ", ".join(f"{f:,}" for f in frames) if frames else "?"]
        cells += [f"{row['hns'][l]:.3f}" + ("" if row["std"][l] is None else f" ± {row['std'][l]:.3f}") for l in labels]
        cells += ["n/a" if row["ratio"][l] is None else f"{row['ratio'][l]:.2f}" for l in others]
        verdict = ", ".join(row["negative_transfer"]) or "-"
        if row["undecided"]:
            verdict += f"; undecided (< 3 runs a side): {', '.join(row['undecided'])}"
        cells.append(verdict)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Aggregate {name} over runs x games (rliable; 95% stratified-bootstrap intervals over runs):", "",
              "| label | runs | frames per game | IQM | median | mean | optimality gap |", "|---|---:|---:|---|---|---|---|"]
    for l in labels:
        agg = result["aggregates"][l]
        cells = [format_estimate(agg[m]).replace(f" ({ONE_RUN})", "") for m in AGGREGATES]
        lines.append(f"| {l} | {agg['runs']} | {result['frames_per_game'][l]} | " + " | ".join(cells) + " |")
    if any(result["aggregates"][l]["runs"] < 2 for l in labels):
        lines += ["", f"Labels with one run have point estimates only ({ONE_RUN})."]
    lines += ["", "Probability of improvement (rliable: P(a run of A beats a run of B on a game), averaged over games; "
              "95% interval over runs):", "", "| A > B | runs | P(A > B) |", "|---|---:|---|"]
    for pair, p in result["pairs"].items():
        lines.append(f"| {pair} | {p['runs'][0]} vs {p['runs'][1]} | {format_estimate(p)} |")
    if result.get("mean_difference"):
        lines += ["", f"Each run's mean {name} over the games, against {ref}'s (difference of means over runs, Welch's "
                  "95% interval and p: the interval that holds its level with 3-5 runs a side; detectable: the "
                  "difference these runs find 4 times in 5 at their pooled spread):", "",
                  f"| label | runs vs {ref} | mean per run | difference [95% CI] | p | detectable |",
                  "|---|---:|---:|---|---:|---:|"]
        for l, d in result["mean_difference"].items():
            spread = "" if d["std"] is None else f" ± {d['std']:.3f}"
            p = "-" if d["p"] is None else f"{d['p']:.3f}"
            detectable = "-" if d.get("detectable") is None else f"{d['detectable']:.3f}"
            lines.append(f"| {l} | {d['runs'][0]} vs {d['runs'][1]} | {d['mean']:.3f}{spread} | "
                         f"{format_estimate(d)} | {p} | {detectable} |")
    if result["frames_to_reference_iqm"]:
        target = result["aggregates"][ref]["iqm"]["value"]
        lines += ["", f"Time to score: first periodic evaluation whose IQM over runs >= {ref}'s final IQM ({target:.3f}):",
                  "", "| label | frames per game |", "|---|---:|"]
        for l, frames in result["frames_to_reference_iqm"].items():
            lines.append(f"| {l} | {'not reached' if frames is None else f'{frames:,}'} |")
    if result.get("training_hours"):
        lines += ["", "Training time per run: the wall time of `mtdqn train`, every segment, periodic evaluations "
                  "included (a cost only where the runs shared one machine and load):", "",
                  "| label | runs timed | hours per run | machines |", "|---|---:|---:|---|"]
        for l, h in result["training_hours"].items():
            lines.append(f"| {l} | {h['runs']} | {h['mean']:.2f}" + ("" if h["std"] is None else f" ± {h['std']:.2f}")
                         + f" | {'; '.join(h.get('machines', [])) or 'not recorded'} |")
    lines += ["", f"± is the standard deviation over runs. Ratio: {name} / {ref}'s (n/a where the reference is at most "
              f"0.01). Negative transfer: the 95% interval over runs (Welch's) of the game's difference to {ref} lies below 0, "
              "decided with 3+ runs on both sides (an interval over 2 runs covers about half the time: "
              "docs/statistics.md)."]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path, labels: dict[str, list[Evaluated]]) -> dict[str, Path]:
    """compare.json, .md, .csv (a row per game and label), _runs.csv (a row per run and game) and figures."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "compare.json", "md": out / "compare.md", "csv": out / "compare.csv",
             "runs": out / "compare_runs.csv", "png": out / "compare.png", "profiles": out / "compare_profiles.png"}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["md"].write_text(markdown(result))
    with paths["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["game", "label", "runs", "frames", "hns_mean", "hns_std", "ratio_to_reference",
                         "difference_ci_low", "difference_ci_high", "negative_transfer"])
        for row in result["games"]:
            for l in result["labels"]:
                ci = row["difference_ci"].get(l) or [None, None]
                flag = "undecided" if l in row["undecided"] else l in row["negative_transfer"]
                writer.writerow([row["game"], l, row["runs"][l], row["frames"][l], row["hns"][l], row["std"][l],
                                 row["ratio"].get(l), ci[0], ci[1], flag if l != result["reference"] else ""])
    games = [row["game"] for row in result["games"]]
    with paths["runs"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "run", "game", "hns", "episodes", "frames"])
        for l, runs in labels.items():
            for r in runs:
                writer.writerows([l, r.source, g, r.score(g), len(r.hns[g]), r.frames.get(g)] for g in games)
    plot_bars(result, paths["png"])
    plot_profiles(result, paths["profiles"])
    if any(result["curves"].values()):
        paths["curves"] = plot_iqm_curves(result, out / "compare_curves.png")
    return paths


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(result: dict, path: Path) -> None:
    """Per-game HNS: each label's mean over runs, its runs as dots, so the spread between seeds shows."""
    plt = _pyplot()
    labels, games = list(result["labels"]), [row["game"] for row in result["games"]]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(games) * len(labels) / 2 + 2), 4))
    width = 0.8 / len(labels)
    for k, l in enumerate(labels):
        x = np.arange(len(games)) + (k - (len(labels) - 1) / 2) * width
        ax.bar(x, [row["hns"][l] for row in result["games"]], width,
               label=f"{l} ({runs_of(result, l)})", color=f"C{k}", alpha=0.7)
        std = [row["std"][l] for row in result["games"]]
        if all(s is not None for s in std):
            ax.errorbar(x, [row["hns"][l] for row in result["games"]], yerr=std, fmt="none", color="black",
                        capsize=2, linewidth=0.8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(games)), games, rotation=30, ha="right")
    name = score_name(games)
    _finish(plt, fig, ax, path, f"per-game {name}", None, f"{name} (mean ± std over runs)", dpi=110)


def plot_profiles(result: dict, path: Path) -> None:
    """rliable's performance profiles: the fraction of runs x games above each HNS, with 95% bands over runs."""
    plt = _pyplot()
    taus = np.asarray(result["profiles"]["taus"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, l in enumerate(result["labels"]):
        profile = result["profiles"][l]
        ax.plot(taus, profile["value"], color=f"C{k}", label=f"{l} ({runs_of(result, l)})")
        if profile["interval"] is not None:
            ax.fill_between(taus, *profile["interval"], color=f"C{k}", alpha=0.2)
    ax.set_ylim(0, 1.02)
    _finish(plt, fig, ax, path, "performance profiles (bands: 95% over runs)",
            f"{score_name([row['game'] for row in result['games']])} τ", "fraction of runs x games with score > τ")


def plot_iqm_curves(result: dict, path: Path) -> Path:
    """Each label's IQM over runs at its periodic evaluations, a band over runs, against the reference's
    final IQM: time to score."""
    plt = _pyplot()
    ref = result["reference"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (l, curve) in enumerate(result["curves"].items()):
        if not curve:
            continue
        x = [p["frames"] for p in curve]
        ax.plot(x, [p["value"] for p in curve], marker="o", markersize=3, color=f"C{k}",
                label=f"{l} ({runs_of(result, l)})")
        if curve[0]["ci_low"] is not None:
            ax.fill_between(x, [p["ci_low"] for p in curve], [p["ci_high"] for p in curve], color=f"C{k}", alpha=0.2)
    ax.axhline(result["aggregates"][ref]["iqm"]["value"], color="black", linestyle="--", linewidth=1.5,
               label=f"{ref} (final)")
    ax.axhline(0.0, color="gray", linewidth=0.8)
    _finish(plt, fig, ax, path, f"evaluation IQM during training vs {ref} (bands: 95% over runs)", "frames per game",
            f"IQM {score_name([row['game'] for row in result['games']])}")
    return path


def _finish(plt, fig, ax, path: Path, title: str, xlabel: str | None, ylabel: str, dpi: int = 100) -> None:
    """Labels, legend and title on `ax`, then the figure saved to `path` and closed."""
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def runs_of(result: dict, label: str) -> str:
    """'1 run' / '3 runs': a label's run count as the figures' legends print it."""
    n = result["labels"][label]["runs"]
    return f"{n} run{'s' * (n != 1)}"
