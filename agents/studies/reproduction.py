"""Our runs beside a published agent's 100 runs per game: where each of ours ranks, and the aggregate
beside the published agent's IQM over as many runs as we have.

Per game, each of our runs (its score: the mean of its evaluation episodes) gets its percentile among
the published agent's 100 runs and whether it lies within their [p25, p75]. The aggregate is rliable's
IQM of HNS over our K runs x the games, set beside the distribution of the published agent's IQM over
K runs per game drawn from its 100: an agent exactly as good as the published one lands at a uniform
percentile of it, so the percentile, not a ratio to a mean, says how far from it we are.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mtdqn.agents.studies.compare import BUDGET_SLACK, CompareError, read_report, report_path, run_folder
from mtdqn.envs import FRAMESKIP, hns
from mtdqn.envs.published import AGENTS, BUDGET_FRAMES, iqm_distribution, published_runs, published_scores
from mtdqn.envs.statistics import aggregates, format_estimate, percentile_of


def gather(paths: list[str]) -> dict[str, list[dict]]:
    """game -> its evaluation record in each run (with 'source', 'protocol' and 'run' folder added), from the
    reports that stand for `paths`: several runs of a game are its seeds. Every game needs the same number
    of runs (the aggregate is over a runs x games matrix), and one report may not be given twice."""
    games: dict[str, list[dict]] = {}
    seen = set()
    for path in paths:
        p, _ = report_path(path)
        report, run = read_report(p), run_folder(p)
        key = (run or p).resolve()  # a run folder and one of its eval.json files are the same run
        if key in seen:
            raise CompareError(f"{str(run or p)!r} is given twice: give each run once")
        seen.add(key)
        for record in report["games"]:
            games.setdefault(record["game"], []).append({**record, "source": str(p), "protocol": report.get("protocol", {}),
                                                         "run": str(run) if run else None})
    counts = {g: len(v) for g, v in games.items()}
    if len(set(counts.values())) > 1:
        raise CompareError("every game needs the same number of runs (seeds), got "
                           + ", ".join(f"{g} {n}" for g, n in counts.items()))
    return games


def against(games: dict[str, list[dict]], agent: str = "drq-eps", draws: int = 10_000) -> dict:
    """Per-game rows and the aggregate of `games` (from `gather`) against `agent`'s published runs."""
    published, runs = published_scores(agent), published_runs(agent)
    others = [a for a in AGENTS if a != agent]
    missing = [g for g in games if g not in published]
    if missing:
        raise CompareError(f"{missing[0]!r} has no published {AGENTS[agent][1]} score: the Atari-100k games are "
                           f"{', '.join(sorted(published))}")
    records = [r for rs in games.values() for r in rs]
    notes = []
    protocols = sorted({r["protocol"].get("name", "?") for r in records})
    if protocols != ["atari100k"]:
        notes.append(f"evaluated under protocol {', '.join(protocols)}: the published runs used atari100k")
    no_restart = sorted({r["game"] for r in records
                         if r["protocol"].get("name") == "atari100k" and not r["protocol"].get("life_loss_reset")})
    if no_restart:  # Dopamine's runner begins a new agent episode (a zeroed stack) at each lost life
        notes.append(f"evaluated without the frame-stack restart at a lost life (--life-loss-reset), which the "
                     f"published runs had: {', '.join(no_restart)}")
    budgets = {(r["game"], r.get("frames")) for r in records}
    if any(not f or not BUDGET_FRAMES <= f <= (1 + BUDGET_SLACK) * BUDGET_FRAMES for _, f in budgets):
        notes.append("not every game was trained for 400,000 frames (100k agent steps), the published budget: "
                     + ", ".join(f"{g} {f:,}" if f else f"{g} ?" for g, f in sorted(budgets, key=str)))
    rows = []
    for game, ours in games.items():
        ref, means = published[game], [r["raw_mean"] for r in ours]
        rows.append({"game": game, "frames": [r.get("frames") for r in ours], "episodes": [r["episodes"] for r in ours],
                     "runs": len(ours), "means": means, "mean": float(np.mean(means)),
                     "hns": [float(hns(game, m)) for m in means],
                     "percentiles": [percentile_of(m, runs[game]) for m in means],
                     "inside": [bool(ref.p25 <= m <= ref.p75) for m in means],
                     "p25": ref.p25, "median": ref.median, "p75": ref.p75, "published_mean": ref.mean,
                     "others": {a: published_scores(a)[game].mean for a in others},
                     "sources": [r["source"] for r in ours]})
    names, k = [r["game"] for r in rows], rows[0]["runs"]
    ours = aggregates(np.array([row["hns"] for row in rows]).T)["iqm"]
    iqms = {}
    for a in [agent, *others]:
        dist = iqm_distribution(a, names, k, draws)
        iqms[a] = {"median": float(np.median(dist)), "p25": float(np.percentile(dist, 25)),
                   "p75": float(np.percentile(dist, 75)), "ours_percentile": percentile_of(ours["value"], dist)}
    return {"agent": agent, "runs_per_game": k, "games": rows, "inside": sum(sum(r["inside"]) for r in rows),
            "run_games": k * len(rows), "iqm": ours, "published_iqm": iqms, "draws": draws, "warnings": notes}


def markdown(result: dict) -> str:
    agent, k = AGENTS[result["agent"]][1], result["runs_per_game"]
    others = [a for a in result["published_iqm"] if a != result["agent"]]
    head = (f"| game | runs | mtdqn score per run | {agent} p25 | median | p75 | "
            + "".join(f"{AGENTS[a][1]} mean | " for a in others)
            + f"percentile among {agent}'s 100 runs | inside [p25, p75] |")
    lines = [f"{k} run{'s' * (k > 1)} per game. A run's score is the mean of its evaluation episodes.", "", head,
             "|---|---:|---:|---:|---:|---:|" + "---:|" * len(others) + "---:|---|"]
    for r in result["games"]:
        lines.append(f"| {r['game']} | {r['runs']} | {', '.join(f'{m:.1f}' for m in r['means'])} | {r['p25']:.1f} | "
                     f"{r['median']:.1f} | {r['p75']:.1f} | " + "".join(f"{r['others'][a]:.1f} | " for a in others)
                     + f"{', '.join(f'{p:.0f}' for p in r['percentiles'])} | "
                     + f"{', '.join('yes' if i else 'no' for i in r['inside'])} |")
    lines += ["", f"{result['inside']} of {result['run_games']} run-games inside {agent}'s published [p25, p75] "
              f"(an agent as good as {agent} lands inside half the time).", "",
              f"IQM of HNS over {k} run{'s' * (k > 1)} x {len(result['games'])} game{'s' * (len(result['games']) != 1)} (rliable): "
              f"{format_estimate(result['iqm'])}.", "",
              f"The published agents' IQM over {k} run{'s' * (k > 1)} per game drawn from their 100 "
              f"({result['draws']:,} draws), and where ours sits among them:", "",
              "| agent | median | [p25, p75] | our percentile |", "|---|---:|---|---:|"]
    for a, d in result["published_iqm"].items():
        lines.append(f"| {AGENTS[a][1]} | {d['median']:.3f} | [{d['p25']:.3f}, {d['p75']:.3f}] | "
                     f"{d['ours_percentile']:.0f} |")
    return "\n".join(lines)


def curves(games: dict[str, list[dict]]) -> dict[str, list[list[tuple[int, float]]]]:
    """Per game and run, (frames per game, mean raw score) of the run's periodic evaluations, then the evaluation
    that the table uses when it is not one of them. Frames per game, as in every other figure and in the
    evaluation folders' names (an agent step is FRAMESKIP frames)."""
    out: dict[str, list[list[tuple[int, float]]]] = {}
    for game, record in ((g, r) for g, rs in games.items() for r in rs):
        points = {}
        for path in sorted(Path(record["run"]).glob("evals/frames_*/eval.json")) if record["run"] else []:
            frames = path.parent.name[len("frames_"):]
            rows = [r for r in json.loads(path.read_text())["games"] if r["game"] == game] if frames.isdigit() else []
            if rows:
                points[int(frames)] = rows[0]["raw_mean"]
        if record.get("frames"):
            points[record["frames"]] = record["raw_mean"]
        out.setdefault(game, []).append(sorted(points.items()))
    return out


def thousands(frames: float, _position=None) -> str:
    """A frames tick as '400k' ('0' at 0): shorter than '400000' and than a '1e5' offset label."""
    return f"{frames / 1000:g}k" if frames else "0"


def plot(result: dict, games: dict[str, list[dict]], path: Path) -> Path:
    """published.png: `figure` written to `path`."""
    import matplotlib.pyplot as plt

    fig = figure(result, games)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figure(result: dict, games: dict[str, list[dict]]):
    """One panel per game: each run's learning curve in raw score against frames per game, and the published
    runs' [p25, p75] and median at their budget, 400k frames (100k agent steps at frame skip FRAMESKIP), so a
    reader sees where each run ended against their spread on the x axis every other figure uses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines, agent = curves(games), AGENTS[result["agent"]][1]
    fig, axes = plt.subplots(1, len(result["games"]), figsize=(3.2 * len(result["games"]), 3.2), squeeze=False)
    for ax, row in zip(axes[0], result["games"]):
        for k, run in enumerate(lines[row["game"]]):
            x, y = zip(*run) if run else ((), ())
            ax.plot(x, y, marker="o", markersize=3, color="C0", alpha=0.8, label="mtdqn (a line per run)" if k == 0 else None)
        end = BUDGET_FRAMES
        ax.fill_between([0.96 * end, 1.04 * end], row["p25"], row["p75"], color="C1", alpha=0.35,
                        label=f"{agent} p25-p75")
        ax.plot([0.96 * end, 1.04 * end], [row["median"]] * 2, color="C1", linewidth=2, label=f"{agent} median")
        ax.set_xlim(0, 1.08 * end)
        ax.set_title(row["game"])
        ax.set_xlabel(f"frames per game\n({thousands(end)} = {thousands(end // FRAMESKIP)} agent steps)")
        ax.xaxis.set_major_formatter(thousands)
    axes[0][0].set_ylabel("score (evaluation mean)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def write(result: dict, games: dict[str, list[dict]], out: Path) -> dict[str, Path]:
    """published.md, .csv (a row per run and game), .json and .png in `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"published.{k}" for k in ("md", "csv", "json", "png")}
    paths["md"].write_text(markdown(result) + "\n")
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    fields = ["game", "source", "frames", "episodes", "mean", "hns", "percentile", "inside", "p25", "median", "p75",
              "published_mean"]
    with paths["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in result["games"]:
            for k in range(r["runs"]):
                writer.writerow([r["game"], r["sources"][k], r["frames"][k], r["episodes"][k], r["means"][k],
                                 r["hns"][k], r["percentiles"][k], r["inside"][k], r["p25"], r["median"], r["p75"],
                                 r["published_mean"]])
    plot(result, games, paths["png"])
    return paths
