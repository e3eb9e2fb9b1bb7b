"""A transfer atlas (agents/studies/atlas.py) as files a person reads: atlas.md, CSVs, atlas.json and figures.

Every table names the runs behind each number; every matrix is row source, column target.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtdqn.agents.multitask.conflict import DIAGONAL_GREY, text_color, write_matrix
from mtdqn.agents.studies.atlas import MISSING, PREDICTOR_TITLES, PREDICTORS, Atlas, Cell, as_json
from mtdqn.envs.scores import score_name


def estimate(e: dict | None, signed: bool = True, digits: int = 3) -> str:
    """'+0.120 [-0.010, +0.250]', or '+0.120 (no interval: 1 run on a side)'."""
    if e is None:
        return "-"
    def f(x: float) -> str:  # rounded first, so that float noise around 0 is not a '-0.000'
        return f"{round(x, digits) + 0.0:{'+' if signed else ''}.{digits}f}"

    if e.get("ci_low") is None:
        return f(e["value"]) + " (no interval: 1 run on a side)"
    return f"{f(e['value'])} [{f(e['ci_low'])}, {f(e['ci_high'])}]"


def percent(x: float | None) -> str:
    """'+127%', '-' for None; rounded first, so that float noise around 0 is not a '-0%'."""
    return "-" if x is None else f"{round(x, 2) + 0.0:+.0%}"


def spread(scores: np.ndarray) -> str:
    """Mean ± standard deviation over runs ('-' with none, the mean alone with one)."""
    if not len(scores):
        return "-"
    return f"{scores.mean():.3f}" + (f" ± {scores.std(ddof=1):.3f}" if len(scores) > 1 else "")


def cell_row(first: str, c: Cell) -> str:
    budget = f"{c.budget:,}" if c.budget else "-"
    return (f"| {first} | {c.runs[0]} / {c.runs[1]} | {budget} | {spread(c.with_scores)} | {spread(c.alone_scores)} | "
            f"{estimate(c.difference)} | {percent(c.relative)} | {tests(c.difference)} | {detectable(c.difference)} | "
            f"{estimate(c.improvement, signed=False, digits=2)} | {c.verdict} |")


def detectable(d: dict | None) -> str:
    """The difference the cell's runs would find 4 times in 5 ('-' with a side of 1 run)."""
    return "-" if not d or d.get("detectable") is None else f"{d['detectable']:.3f}"


def tests(d: dict | None) -> str:
    """Welch's p and, where the cell is decided, its Benjamini-Hochberg q over the atlas ('-' without)."""
    if not d or d.get("p") is None:
        return "-"
    return f"{d['p']:.3f}" + (f" / {d['q']:.3f}" if d.get("q") is not None else "")


def matrix_table(matrix: np.ndarray, games: list[str], text=None) -> list[str]:
    """A [source, target] matrix as Markdown; `text(i, j)` writes a cell (default: the value to 3 significant
    digits, '-' if missing)."""
    text = text or (lambda i, j: "-" if not np.isfinite(matrix[i, j]) else f"{matrix[i, j]:+.3g}")
    lines = ["| source \\ target | " + " | ".join(games) + " |", "|---|" + "---:|" * len(games)]
    for i, g in enumerate(games):
        lines.append(f"| {g} | " + " | ".join("self" if i == j else text(i, j) for j in range(len(games))) + " |")
    return lines


def without_table(atlas: Atlas) -> list[str]:
    """Each predictor's rho with one game left out (atlas.rho_without_each), a row per predictor."""
    rows = {p.name: p.correlation.get("without") for p in atlas.predictors.values() if p.correlation.get("without")}
    if not rows:
        return []
    games = atlas.games
    lines = ["", "Rho with one game left out (the cells that involve neither its source nor its target; no interval): "
             "a value far from the whole matrix's means that one game carries the correlation.", "",
             "| predictor | " + " | ".join(f"without {g}" for g in short_names(games)) + " |",
             "|---|" + "---:|" * len(games)]
    for name, without in rows.items():
        values = ["-" if without[g] is None else f"{without[g]:+.2f}" for g in games]
        lines.append(f"| {PREDICTOR_TITLES[name]} | " + " | ".join(values) + " |")
    return lines


def markdown(atlas: Atlas, command: str) -> str:
    games, name = atlas.games, score_name(atlas.games)
    present = [c for c in atlas.cells.values() if c.verdict != MISSING]
    lines = ["# Transfer atlas", "", f"`{command}`", "",
             f"{len(games)} game{'s' * (len(games) != 1)}: {', '.join(games)}. "
             f"A run's score on a game is its final evaluation's {name} score "
             "(the mean of its evaluation episodes); every interval resamples runs, never episodes. "
             f"{len(present)} of {len(atlas.cells)} ordered pairs have runs.", "",
             "## Realized transfer: each game with one partner against alone", "",
             f"Row source (the partner it was trained with), column target (the game scored): mean {name} score of "
             "the target in the pair runs minus its mean alone, and (runs with the partner / runs alone). "
             "Positive: the source helps the target.", ""]

    def realized(i, j):
        c = atlas.cells[games[i], games[j]]
        value = "missing" if c.verdict == MISSING else f"{c.difference['value']:+.3f}"
        return f"{value} ({c.runs[0]}/{c.runs[1]})"

    lines += matrix_table(atlas.realized, games, realized)
    head = ("| runs with / alone | budget | score with (mean ± std over runs) | alone | difference with - alone "
            "[95% CI] | of alone | p / q | detectable | P(with > alone) [95% CI] | verdict |")
    lines += ["", "| target (scored) | source (trained with) " + head,
              "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|"]
    for (source, target), c in sorted(atlas.cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(cell_row(f"{target} | {source}", c))
    for suite, cells in atlas.groups.items():
        which = f"all {len(games)} game{'s' * (len(games) != 1)}" if list(suite) == games else "+".join(suite)
        lines += ["", f"## Each game in the {len(suite)}-game run ({which}) against alone", "",
                  "| game " + head, "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|"]
        lines += [cell_row(c.target, c) for c in cells]
    lines += ["", "## Predictors against realized transfer", ""]
    if atlas.predictors:
        lines += ["Spearman rank correlation of each predictor's off-diagonal entries with the realized matrix's "
                  "(same orientation, source -> target), over the cells both have:", "",
                  "| predictor | runs | cells | Spearman rho [95% CI] | interval |", "|---|---:|---:|---|---|"]
        for p in atlas.predictors.values():
            r = p.correlation
            rho = "-" if r["value"] is None else estimate(r, digits=2).split(" (")[0]
            lines.append(f"| {PREDICTOR_TITLES[p.name]} | {len(p.runs)} | {r['cells']} | {rho} | {r['interval']} |")
        lines += without_table(atlas)
        for p in atlas.predictors.values():
            lines += ["", f"{PREDICTOR_TITLES[p.name]}, mean over {len(p.runs)} run(s) of all "
                          f"{len(games)} game{'s' * (len(games) != 1)}:", ""]
            lines += matrix_table(p.matrix, games)
    else:
        lines.append("No predictor: no run of all the games with conflict.csv or overlap.csv (see the notes).")
    if atlas.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in atlas.notes]
    lines += ["", "## Reading it", "",
              "- difference: mean over runs with the source minus mean over runs alone; its 95% interval is Welch's "
              "t-interval over runs, the two sides independent (not paired by seed): a percentile bootstrap covers "
              "only 81-87% at 3-5 runs a side (docs/statistics.md). With 1 run on a side there is no interval, and "
              "the cell says so.",
              "- p / q: Welch's two-sided p of no difference, and the Benjamini-Hochberg q over every cell decided "
              "with 3+ runs a side (pairs and groups together): tested at 5%, about 1 in 20 cells with no transfer "
              "reads helps or hurts by chance; a verdict with q < 0.05 holds with the atlas's false discovery rate "
              "at 5%.",
              "- of alone: the difference over the game's mean alone (+100%: twice the alone score), the size the ALE "
              "check ranks findings by, since the games' scores differ 40-fold in scale (docs/atlas.md).",
              "- detectable: the smallest true difference Welch's test at 5% finds with 80% power with the cell's runs, "
              "at their pooled spread (measured on seeded normal draws; the spread of 3-5 runs is itself uncertain): a "
              "no measurable difference rules out differences of about this size, not smaller ones.",
              "- P(with > alone): rliable's probability of improvement, the chance that a run with the source beats a "
              "run alone (ties count half), with its 95% interval over runs.",
              "- verdict: helps / hurts only when the difference's interval excludes 0 with 3+ runs on each side (an "
              "interval over 2 runs covers about half the time: docs/statistics.md); otherwise no measurable "
              "difference, undecided, or no interval.",
              "- TAG affinity source -> target is the relative drop of the target's loss after a step on the source's "
              "loss: the same direction as realized (source helps target). Cosine and gate overlap are symmetric.",
              "- realized.csv is the realized matrix (row source -> column target, higher = the target gains more "
              "from the source), the format `mtdqn group --affinity` reads; it refuses the file while a cell is "
              "missing."]
    return "\n".join(lines) + "\n"


def short_names(games: list[str]) -> list[str]:
    """'asterix' for 'minatar/asterix' where the short names stay distinct."""
    short = [g.split("/")[-1] for g in games]
    return short if len(set(short)) == len(short) else list(games)


def standardized(matrix: np.ndarray) -> np.ndarray:
    """Off-diagonal values as z-scores within the matrix (0 where they do not vary); NaN on the diagonal."""
    z = np.array(matrix, dtype=np.float64)
    np.fill_diagonal(z, np.nan)
    values = z[np.isfinite(z)]
    if len(values) < 2 or values.std() == 0:
        return np.where(np.isfinite(z), 0.0, np.nan)
    return (z - values.mean()) / values.std()


def decimals(matrix: np.ndarray) -> int:
    """Decimals that show the off-diagonal values with about two significant digits (2 at least)."""
    off = np.abs(np.asarray(matrix, dtype=np.float64)[~np.eye(len(matrix), dtype=bool)])
    top = off[np.isfinite(off) & (off > 0)].max(initial=0.0)
    return 2 if top == 0 else int(min(5, max(2, 1 - np.floor(np.log10(top)))))


def heatmaps(atlas: Atlas):
    """The realized matrix and every predictor side by side, on one colour scale: each matrix's off-diagonal
    values standardized within it, the cell text its own value. Grey: a game with itself, or a missing cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("realized: score with source - alone", atlas.realized)]
    panels += [(f"{PREDICTOR_TITLES[p.name]}\n({len(p.runs)} run{'s' * (len(p.runs) > 1)})", p.matrix)
               for p in atlas.predictors.values()]
    zs = [standardized(m) for _, m in panels]
    bound = max([1.0] + [float(np.nanmax(np.abs(z))) for z in zs if np.isfinite(z).any()])
    colours = plt.get_cmap("RdBu").with_extremes(bad=DIAGONAL_GREY)
    names, n = short_names(atlas.games), len(atlas.games)
    fig, axes = plt.subplots(1, len(panels), figsize=(0.9 * n * len(panels) + 2.5, 0.9 * n + 2.2), squeeze=False)
    for k, (ax, (title, m), z) in enumerate(zip(axes[0], panels, zs)):
        im = ax.imshow(np.ma.masked_invalid(z), cmap=colours, vmin=-bound, vmax=bound)
        ax.set_xticks(range(n), names, rotation=60, ha="right")
        ax.set_yticks(range(n), names if k == 0 else [])
        ax.set_xlabel("target (scored)")
        ax.set_title(title, fontsize=9)
        fmt = f"{{:+.{decimals(m)}f}}"
        for i in range(n):
            for j in range(n):
                shown = "self" if i == j else ("missing" if not np.isfinite(m[i, j]) else fmt.format(m[i, j]))
                cell = DIAGONAL_GREY if not np.isfinite(z[i, j]) else colours(im.norm(z[i, j]))
                ax.text(j, i, shown, ha="center", va="center", fontsize=7, color=text_color(cell))
    axes[0][0].set_ylabel("source (trained with)")
    bar = fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    bar.set_label("standardized within each matrix (off-diagonal z-score)", fontsize=8)
    return fig


VERDICT_COLORS = {"helps": "C0", "hurts": "C3"}


def scatter(atlas: Atlas):
    """Each predictor (x) against realized transfer (y), a point per ordered pair with its 95% interval over
    runs where it has one, coloured and named where its verdict is helps or hurts; rho with its interval, and
    its range with one game left out, in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = dict(zip(atlas.games, short_names(atlas.games)))
    fig, axes = plt.subplots(1, len(atlas.predictors), figsize=(4.6 * len(atlas.predictors), 4.2), squeeze=False)
    for ax, p in zip(axes[0], atlas.predictors.values()):
        for (source, target), c in atlas.cells.items():
            x = p.matrix[atlas.games.index(source), atlas.games.index(target)]
            if c.difference is None or not np.isfinite(x):
                continue
            d = c.difference
            err = None if d["ci_low"] is None else [[d["value"] - d["ci_low"]], [d["ci_high"] - d["value"]]]
            color = VERDICT_COLORS.get(c.verdict, "0.55")
            ax.errorbar(x, d["value"], yerr=err, fmt="o", color=color, ecolor="0.75", capsize=2, ms=4,
                        label=c.verdict if c.verdict in VERDICT_COLORS else "interval includes 0, or none")
            if c.verdict in VERDICT_COLORS:  # only the decided cells are named: the others crowd around 0
                ax.annotate(f"{names[source]}>{names[target]}", (x, d["value"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points", color=color)
        ax.axhline(0, color="0.5", lw=0.8)
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        ax.legend(handles.values(), handles.keys(), fontsize=6, loc="lower right")
        r = p.correlation
        rho = "rho undefined" if r["value"] is None else f"rho {estimate(r, digits=2).split(' (')[0]}"
        left = [v for v in (r.get("without") or {}).values() if v is not None]
        left = f"\none game left out: {min(left):+.2f} to {max(left):+.2f}" if left else ""
        ax.set_title(f"{PREDICTOR_TITLES[p.name]}\n{rho}, {r['cells']} cells{left}", fontsize=9)
        ax.set_xlabel(f"{p.name}, source -> target (mean of {len(p.runs)} run{'s' * (len(p.runs) > 1)})")
    axes[0][0].set_ylabel("realized: score with source - alone")
    fig.tight_layout()
    return fig


def write(atlas: Atlas, out: Path, command: str) -> list[Path]:
    """atlas.md, atlas.json, realized.csv, <predictor>.csv, atlas.png and, once a predictor and the realized
    matrix share a cell, atlas_scatter.png."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "atlas.md", out / "atlas.json", out / "realized.csv"]
    paths[0].write_text(markdown(atlas, command))
    paths[1].write_text(json.dumps({"command": command, **as_json(atlas)}, indent=1) + "\n")
    write_matrix(paths[2], atlas.realized, atlas.games)
    for p in atlas.predictors.values():
        paths.append(out / f"{p.name}.csv")
        write_matrix(paths[-1], p.matrix, atlas.games)
    correlated = any(p.correlation["cells"] for p in atlas.predictors.values())
    figures = [("atlas.png", heatmaps)] + ([("atlas_scatter.png", scatter)] if correlated else [])
    for name, draw in figures:
        fig = draw(atlas)
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(out / name)
    for stale in ["atlas_scatter.png", *(f"{p}.csv" for p in PREDICTORS)]:  # of an earlier atlas into this folder
        if out / stale not in paths:
            (out / stale).unlink(missing_ok=True)
    return paths
