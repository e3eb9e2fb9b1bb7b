"""Runs side by side: per-game HNS, ratios to the first run, aggregates, probability of improvement.

The first run is the reference (e.g. `separate` or SB3 single-task); every other run is compared
with it. A game shows negative transfer in a run when the 95% bootstrap interval of its HNS
difference to the reference lies entirely below zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtdqn.envs import aggregate_hns, hns
from mtdqn.envs.scores import interval_estimates

# A multi-game run stops when its last game reaches the budget, so the others pass it by a few
# steps: budgets within this fraction of each other count as one.
BUDGET_SLACK = 0.01


class CompareError(ValueError):
    """A run or report that cannot be compared; the message says which and why."""


@dataclass
class Evaluated:
    label: str
    source: str
    frames: dict[str, int]
    hns: dict[str, np.ndarray]  # per-episode HNS per game
    iqm_curve: list[tuple[int, float]] | None = None  # (frames per game, IQM) of a run folder's periodic evaluations


def load_merged(spec: str, label: str | None = None) -> Evaluated:
    """`load` for one path, or for several joined by '+' (e.g. single-game SB3 runs) taken as one run."""
    if "+" not in spec:
        return load(spec, label)
    parts = [load(path) for path in spec.split("+")]
    merged = Evaluated(label or "+".join(p.label for p in parts), " + ".join(p.source for p in parts), {}, {})
    for part in parts:
        twice = set(part.hns) & set(merged.hns)
        if twice:
            raise CompareError(f"{spec!r} holds game {sorted(twice)[0]!r} twice: join runs of different games")
        merged.frames |= part.frames
        merged.hns |= part.hns
    return merged


def pool(seeds: list[Evaluated], label: str) -> Evaluated:
    """Several seeds of one configuration as one run: each game's episodes of every seed side by side, so the
    bootstrap intervals and rliable's statistics see the spread between seeds as well as within them. The IQM
    curve is the seeds' mean at each periodic evaluation (when they all have the same evaluations)."""
    if len(seeds) == 1:
        return seeds[0]
    games = list(seeds[0].hns)
    for s in seeds[1:]:
        if set(s.hns) != set(games):
            raise CompareError(f"the seeds labelled {label!r} cover different games ({', '.join(games)} against "
                               f"{', '.join(s.hns)}): pool only runs of the same games")
    curves = [s.iqm_curve for s in seeds]
    curve = None
    if all(curves) and len({len(c) for c in curves}) == 1:
        curve = [(frames, float(np.mean([c[k][1] for c in curves]))) for k, (frames, _) in enumerate(curves[0])]
    frames = {g: max(s.frames.get(g) or 0 for s in seeds) or None for g in games}
    return Evaluated(label, " | ".join(s.source for s in seeds), frames,
                     {g: np.concatenate([s.hns[g] for s in seeds]) for g in games}, curve)


def report_path(path: str) -> tuple[Path, bool]:
    """The eval.json that stands for `path` (a run folder: the evaluation of its most trained agent, an
    `mtdqn evaluate` before a periodic one; an evaluation folder; an eval.json), and whether the run has
    periodic evaluations (a learning curve)."""
    p = Path(path)
    if p.is_dir() and (p / "eval.json").is_file():
        return p / "eval.json", False
    if p.is_dir() and p.name.endswith("-evaluate") and _newest(p.glob("*/eval.json")):
        return _newest(p.glob("*/eval.json")), False  # `mtdqn evaluate`'s folder of one checkpoint's evaluations
    if p.is_dir():
        periodic = [f for f in (p / "evals").glob("frames_*/eval.json") if f.parent.name[7:].isdigit()]
        evaluated = [*(p / "evals").glob("*-evaluate/eval.json"), *(p / "evals").glob("*-evaluate/*/eval.json")]
        if not periodic + evaluated:
            raise CompareError(f"{path!r} has no evaluation yet (evals/*/eval.json): run mtdqn evaluate on it")
        # the most trained agent; at equal frames a deliberate `mtdqn evaluate` (e.g. --episodes 30) over the
        # run's own periodic one, the newest if several
        found = max(periodic + evaluated, key=lambda f: (_frames(f), f in evaluated, f.stat().st_mtime))
        return found, bool(periodic)
    if not p.is_file():
        raise CompareError(f"{path!r} is neither a run folder nor an eval.json")
    return p, False


def read_report(p: Path) -> dict:
    """An evaluation report with per-episode scores, or a CompareError saying why not."""
    try:
        report = json.loads(p.read_text())
        games = report["games"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise CompareError(f"{str(p)!r} is not an mtdqn evaluation report") from None
    if any("scores" not in r for r in games):
        raise CompareError(f"{str(p)!r} has no per-episode scores (written by an older mtdqn): "
                           f"re-run mtdqn evaluate on its checkpoint")
    return report


def load(path: str, label: str | None = None) -> Evaluated:
    """A run folder, evaluation folder or eval.json (see `report_path`) as per-episode HNS per game."""
    from mtdqn.agents.core.evaluation import learning_curves

    p, periodic = report_path(path)
    curve = learning_curves(Path(path)).get("iqm") if periodic else None
    scores, frames = {}, {}
    for r in read_report(p)["games"]:
        h = hns(r["game"], r["scores"])
        if h is not None:
            scores[r["game"]] = np.asarray(h)
            frames[r["game"]] = r.get("frames")
    run = run_folder(p)
    name = label or (run.name if run else p.parent.name)
    return Evaluated(name, str(p), frames, scores, curve)


def run_folder(report: Path) -> Path | None:
    """The run folder an eval.json lies in (the parent of its `evals/`), None for a report outside a run."""
    evals = next((a for a in report.parents if a.name == "evals"), None)
    return evals.parent if evals else None


def _frames(report: Path) -> int:
    """The frames per game a report's agent was trained for (0 when it does not say or cannot be read)."""
    try:
        return max(r.get("frames") or 0 for r in json.loads(report.read_text())["games"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        return 0


def _newest(reports) -> Path | None:
    """The most recently written of some eval.json files (None if there are none)."""
    return max(reports, key=lambda f: f.stat().st_mtime, default=None)


def bootstrap_difference(a: np.ndarray, b: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(b) - mean(a), resampling each side's episodes."""
    rng = np.random.default_rng(seed)
    diffs = (rng.choice(b, (reps, len(b))).mean(1) - rng.choice(a, (reps, len(a))).mean(1))
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0) -> dict:
    """rliable's P(X > Y) averaged over games, with a stratified-bootstrap 95% CI. x, y: [episodes, games]."""
    from rliable import metrics

    point, interval = interval_estimates({"pair": (x, y)}, metrics.probability_of_improvement, reps, seed)
    return {"value": float(np.squeeze(point["pair"])), "ci_low": float(np.squeeze(interval["pair"][0])),
            "ci_high": float(np.squeeze(interval["pair"][1]))}


def compare(runs: list[Evaluated]) -> dict:
    if len(runs) < 2:
        raise CompareError("compare needs at least 2 runs")
    games = [g for g in runs[0].hns if all(g in r.hns for r in runs[1:])]
    if not games:
        raise CompareError("the runs share no game with a human reference score")
    notes = [f"{g} is not in every run (missing from {', '.join(r.label for r in runs if g not in r.hns)}): "
             "dropped from the comparison" for g in dict.fromkeys(g for r in runs for g in r.hns) if g not in games]
    budgets = {r.label: frames_per_game(r, games) for r in runs}
    trained = [max(known) for r in runs if (known := {r.frames.get(g) for g in games} - {None})]
    if trained and max(trained) > (1 + BUDGET_SLACK) * min(trained):
        notes.append("the runs were trained for different frames per game ("
                     + "; ".join(f"{l} {b}" for l, b in budgets.items()) + "): their scores are not at one budget")
    ref = runs[0]
    rows = []
    for g in games:
        row = {"game": g, "frames": {r.label: r.frames.get(g) for r in runs},
               "hns": {r.label: float(r.hns[g].mean()) for r in runs}, "ratio": {}, "difference_ci": {},
               "negative_transfer": []}
        base = row["hns"][ref.label]
        for r in runs[1:]:
            row["ratio"][r.label] = row["hns"][r.label] / base if base > 0.01 else None
            low, high = bootstrap_difference(ref.hns[g], r.hns[g])
            row["difference_ci"][r.label] = [low, high]
            if high < -1e-9:  # not float noise between equal scores
                row["negative_transfer"].append(r.label)
        rows.append(row)
    aggregates, improvement = {}, {}
    for r in runs:
        episodes = min(len(r.hns[g]) for g in games)
        aggregates[r.label] = aggregate_hns(np.stack([r.hns[g][:episodes] for g in games], axis=1))
    for r in runs[1:]:
        n = min(len(x.hns[g]) for x in (ref, r) for g in games)
        cut = [x.label for x in (ref, r) if any(len(x.hns[g]) > n for g in games)]
        if cut:  # rliable's bootstrap needs as many episodes on both sides
            notes.append(f"P({r.label} > {ref.label}) uses the first {n} episodes of each game: "
                         f"{' and '.join(cut)} had more (pool as many seeds on each side to use them all)")
        stack = [np.stack([x.hns[g][:n] for g in games], axis=1) for x in (r, ref)]
        improvement[r.label] = probability_of_improvement(*stack)
    target = aggregates[ref.label]["iqm"]["value"]
    # time to score: the first periodic evaluation at which a run matched the reference's final IQM
    matched = {r.label: next((f for f, v in r.iqm_curve if v >= target), None) for r in runs[1:] if r.iqm_curve}
    return {"reference": ref.label, "runs": {r.label: r.source for r in runs}, "games": rows,
            "frames_per_game": budgets, "aggregates": aggregates, "probability_of_improvement": improvement,
            "frames_to_reference_iqm": matched, "warnings": notes}


def frames_per_game(run: Evaluated, games: list[str]) -> str:
    """The frames per game a run was trained for on the compared games, as text: '400,000', or
    '100,000-400,000' if its games differ, '?' if its reports do not say."""
    known = sorted({run.frames.get(g) for g in games} - {None})
    if not known:
        return "?"
    return f"{known[0]:,}" if len(known) == 1 else f"{known[0]:,}-{known[-1]:,}"


def markdown(result: dict) -> str:
    labels = list(result["runs"])
    ref, others = labels[0], labels[1:]
    head = ["game", "frames"] + [f"HNS {l}" for l in labels] + [f"{l} / {ref}" for l in others] + ["negative transfer"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(labels) + len(others)) + "---|"]
    for row in result["games"]:
        frames = sorted({f for f in row["frames"].values() if f is not None})
        frames_text = ", ".join(f"{f:,}" for f in frames) if frames else "?"
        cells = [row["game"], frames_text] + [f"{row['hns'][l]:.3f}" for l in labels]
        cells += ["n/a" if row["ratio"][l] is None else f"{row['ratio'][l]:.2f}" for l in others]
        cells.append(", ".join(row["negative_transfer"]) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Aggregate HNS (95% stratified-bootstrap CIs):", "",
              "| run | frames per game | IQM | median | mean |", "|---|---:|---|---|---|"]
    for l in labels:
        agg = result["aggregates"][l]
        cells = [f"{agg[m]['value']:.3f} [{agg[m]['ci_low']:.3f}, {agg[m]['ci_high']:.3f}]" for m in ("iqm", "median", "mean")]
        lines.append(f"| {l} | {result['frames_per_game'][l]} | " + " | ".join(cells) + " |")
    lines += ["", f"Probability of improvement over {ref} (rliable, 95% CI):", "", "| run | P(run > reference) |",
              "|---|---|"]
    for l in others:
        p = result["probability_of_improvement"][l]
        lines.append(f"| {l} | {p['value']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}] |")
    if result["frames_to_reference_iqm"]:
        target = result["aggregates"][ref]["iqm"]["value"]
        lines += ["", f"Time to score: first periodic evaluation with IQM >= {ref}'s final IQM ({target:.3f}):", "",
                  "| run | frames per game |", "|---|---:|"]
        for l, frames in result["frames_to_reference_iqm"].items():
            lines.append(f"| {l} | {'not reached' if frames is None else f'{frames:,}'} |")
    lines += ["", f"Ratio: HNS / {ref}'s HNS (n/a where the reference is at most 0.01). Negative transfer: the 95% "
              f"bootstrap interval of the game's HNS difference to {ref} lies below 0."]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path, runs: list[Evaluated]) -> dict[str, Path]:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "compare.json", "md": out / "compare.md", "csv": out / "compare.csv",
             "png": out / "compare.png"}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["md"].write_text(markdown(result))
    labels = list(result["runs"])
    with paths["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["game", "run", "frames", "hns", "ratio_to_reference", "difference_ci_low",
                         "difference_ci_high", "negative_transfer"])
        for row in result["games"]:
            for l in labels:
                ci = row["difference_ci"].get(l, [None, None])
                writer.writerow([row["game"], l, row["frames"][l], row["hns"][l], row["ratio"].get(l), ci[0], ci[1],
                                 l in row["negative_transfer"]])
    games = [row["game"] for row in result["games"]]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(games) * len(labels) / 2 + 2), 4))
    width = 0.8 / len(labels)
    by_label = {r.label: r for r in runs}
    for k, l in enumerate(labels):
        means = [result["games"][i]["hns"][l] for i in range(len(games))]
        errors = [1.96 * by_label[l].hns[g].std(ddof=1) / np.sqrt(len(by_label[l].hns[g]))
                  if len(by_label[l].hns[g]) > 1 else 0.0 for g in games]
        ax.bar(np.arange(len(games)) + (k - (len(labels) - 1) / 2) * width, means, width, yerr=errors, label=l,
               capsize=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(games)), games, rotation=30, ha="right")
    ax.set_ylabel("human-normalized score (mean, 95% CI)")
    ax.legend()
    ax.set_title("per-game HNS")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    if any(r.iqm_curve for r in runs):
        paths["curves"] = plot_iqm_curves(result, runs, out / "compare_curves.png")
    return paths


def plot_iqm_curves(result: dict, runs: list[Evaluated], path: Path) -> Path:
    """Each run folder's IQM at its periodic evaluations, against the reference's final IQM: time to score."""
    import matplotlib.pyplot as plt

    ref = result["reference"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        if r.iqm_curve:
            x, y = zip(*r.iqm_curve)
            ax.plot(x, y, marker="o", markersize=3, label=r.label)
    ax.axhline(result["aggregates"][ref]["iqm"]["value"], color="black", linestyle="--", linewidth=1.5,
               label=f"{ref} (final)")
    ax.axhline(0.0, color="gray", linewidth=0.8)
    ax.set_xlabel("frames per game")
    ax.set_ylabel("IQM human-normalized score")
    ax.set_title(f"evaluation IQM during training vs {ref}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
