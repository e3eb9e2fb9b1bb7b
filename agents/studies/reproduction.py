"""Our evaluations beside a published agent's 100 runs per game: is each game inside their [p25, p75]?

A game reproduces when its mean score lies within the published interquartile range; outside it, the
row says by how much (the gap to the nearer quartile, also as a fraction of the published median). The
aggregate is the IQM of HNS over the games, computed as the published tables do (the middle half of the
games' mean scores) for us, the agent and the others in the CSV, plus rliable's IQM over our episodes
with its bootstrap interval.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mtdqn.agents.studies.compare import BUDGET_SLACK, CompareError, read_report, report_path, run_folder
from mtdqn.envs import FRAMESKIP, aggregate_hns, hns
from mtdqn.envs.published import AGENTS, BUDGET_FRAMES, iqm_over_games, published_scores


def gather(paths: list[str]) -> dict[str, dict]:
    """game -> its evaluation record (with 'source', 'protocol' and 'run' folder added) from the reports
    that stand for `paths`; a game evaluated in two of them is an error (which one would count?)."""
    games: dict[str, dict] = {}
    for path in paths:
        p, _ = report_path(path)
        report = read_report(p)
        run = run_folder(p)
        for record in report["games"]:
            if record["game"] in games:
                raise CompareError(f"{record['game']!r} is evaluated in both {games[record['game']]['source']!r} "
                                   f"and {str(p)!r}: give each game once")
            games[record["game"]] = {**record, "source": str(p), "protocol": report.get("protocol", {}),
                                     "run": str(run) if run else None}
    return games


def against(games: dict[str, dict], agent: str = "drq-eps") -> dict:
    """Per-game rows and aggregates of `games` (from `gather`) against `agent`'s published runs."""
    published = published_scores(agent)
    others = [a for a in AGENTS if a != agent]
    missing = [g for g in games if g not in published]
    if missing:
        raise CompareError(f"{missing[0]!r} has no published {AGENTS[agent][1]} score: the Atari-100k games are "
                           f"{', '.join(sorted(published))}")
    notes = []
    protocols = sorted({r["protocol"].get("name", "?") for r in games.values()})
    if protocols != ["atari100k"]:
        notes.append(f"evaluated under protocol {', '.join(protocols)}: the published runs used atari100k")
    no_restart = sorted(g for g, r in games.items()
                        if r["protocol"].get("name") == "atari100k" and not r["protocol"].get("life_loss_reset"))
    if no_restart:  # Dopamine's runner begins a new agent episode (a zeroed stack) at each lost life
        notes.append(f"evaluated without the frame-stack restart at a lost life (--life-loss-reset), which the "
                     f"published runs had: {', '.join(no_restart)}")
    budgets = {g: r.get("frames") for g, r in games.items()}
    if any(not f or not BUDGET_FRAMES <= f <= (1 + BUDGET_SLACK) * BUDGET_FRAMES for f in budgets.values()):
        notes.append("not every game was trained for 400,000 frames (100k agent steps), the published budget: "
                     + ", ".join(f"{g} {f:,}" if f else f"{g} ?" for g, f in budgets.items()))
    rows = []
    for game, record in games.items():
        ref, mean = published[game], record["raw_mean"]
        gap = mean - ref.p25 if mean < ref.p25 else mean - ref.p75 if mean > ref.p75 else 0.0
        rows.append({"game": game, "frames": record.get("frames"), "episodes": record["episodes"], "mean": mean,
                     "hns": float(hns(game, mean)), "p25": ref.p25, "median": ref.median, "p75": ref.p75,
                     "published_mean": ref.mean, "inside": gap == 0.0, "gap": gap,
                     "gap_of_median": gap / ref.median if ref.median else None,
                     "others": {a: published_scores(a)[game].mean for a in others}, "source": record["source"]})
    names = [g["game"] for g in rows]
    iqm = {"mtdqn": iqm_over_games([r["hns"] for r in rows])}
    iqm |= {a: iqm_over_games([hns(g, published_scores(a)[g].mean) for g in names]) for a in [agent, *others]}
    episodes = min(len(games[g]["scores"]) for g in names)
    rliable = aggregate_hns(np.stack([hns(g, games[g]["scores"][:episodes]) for g in names], axis=1))["iqm"]
    return {"agent": agent, "games": rows, "inside": sum(r["inside"] for r in rows), "iqm_over_games": iqm,
            "rliable_iqm": rliable | {"episodes_per_game": episodes}, "warnings": notes}


def markdown(result: dict) -> str:
    agent, others = AGENTS[result["agent"]][1], [a for a in result["iqm_over_games"] if a not in ("mtdqn",
                                                                                                  result["agent"])]
    head = (f"| game | episodes | mtdqn mean | {agent} p25 | median | p75 | {agent} mean | "
            + "".join(f"{AGENTS[a][1]} mean | " for a in others) + "inside [p25, p75] |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(others) + "---|"]
    for r in result["games"]:
        verdict = "yes" if r["inside"] else (f"no, {r['gap']:+.1f} ({r['gap_of_median']:+.0%} of the median)"
                                             if r["gap_of_median"] is not None else f"no, {r['gap']:+.1f}")
        lines.append(f"| {r['game']} | {r['episodes']} | {r['mean']:.1f} | {r['p25']:.1f} | {r['median']:.1f} | "
                     f"{r['p75']:.1f} | {r['published_mean']:.1f} | "
                     + "".join(f"{r['others'][a]:.1f} | " for a in others) + f"{verdict} |")
    iqm, ci = result["iqm_over_games"], result["rliable_iqm"]
    lines += ["", f"{result['inside']} of {len(result['games'])} games inside {agent}'s published [p25, p75].", "",
              "IQM of HNS over the games (the middle half of the games' means, as the published tables): "
              + ", ".join(f"{'mtdqn' if k == 'mtdqn' else AGENTS[k][1]} {v:.3f}" for k, v in iqm.items()),
              f"rliable IQM of mtdqn over {ci['episodes_per_game']} episodes per game: {ci['value']:.3f} "
              f"[{ci['ci_low']:.3f}, {ci['ci_high']:.3f}] (95% stratified bootstrap)"]
    return "\n".join(lines)


def curves(games: dict[str, dict]) -> dict[str, list[tuple[int, float]]]:
    """Per game, (agent steps, mean raw score) of its run's periodic evaluations, then the evaluation that
    the table uses when it is not one of them."""
    out: dict[str, list[tuple[int, float]]] = {}
    for game, record in games.items():
        points = {}
        for path in sorted(Path(record["run"]).glob("evals/frames_*/eval.json")) if record["run"] else []:
            frames = path.parent.name[len("frames_"):]
            rows = [r for r in json.loads(path.read_text())["games"] if r["game"] == game] if frames.isdigit() else []
            if rows:
                points[int(frames) // FRAMESKIP] = rows[0]["raw_mean"]
        if record.get("frames"):
            points[record["frames"] // FRAMESKIP] = record["raw_mean"]
        out[game] = sorted(points.items())
    return out


def plot(result: dict, games: dict[str, dict], path: Path) -> Path:
    """One panel per game: our learning curve in raw score against agent steps, and the published runs'
    [p25, p75] and median at 100k steps, so a reader sees where a run ended against their spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines, agent = curves(games), AGENTS[result["agent"]][1]
    fig, axes = plt.subplots(1, len(result["games"]), figsize=(3.2 * len(result["games"]), 3.2), squeeze=False)
    for ax, row in zip(axes[0], result["games"]):
        x, y = zip(*lines[row["game"]]) if lines[row["game"]] else ((), ())
        ax.plot(x, y, marker="o", markersize=3, color="C0", label="mtdqn")
        end = BUDGET_FRAMES // FRAMESKIP
        ax.fill_between([0.96 * end, 1.04 * end], row["p25"], row["p75"], color="C1", alpha=0.35,
                        label=f"{agent} p25-p75")
        ax.plot([0.96 * end, 1.04 * end], [row["median"]] * 2, color="C1", linewidth=2, label=f"{agent} median")
        ax.set_xlim(0, 1.08 * end)
        ax.set_title(row["game"])
        ax.set_xlabel("agent steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(3, 3))
    axes[0][0].set_ylabel("score (evaluation mean)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(result: dict, games: dict[str, dict], out: Path) -> dict[str, Path]:
    """published.md, .csv, .json and .png in `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"published.{k}" for k in ("md", "csv", "json", "png")}
    paths["md"].write_text(markdown(result) + "\n")
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    fields = ["game", "frames", "episodes", "mean", "hns", "p25", "median", "p75", "published_mean", "inside", "gap"]
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result["games"])
    plot(result, games, paths["png"])
    return paths
