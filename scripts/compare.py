"""`mtdqn compare RUN_A RUN_B ...`: per-game HNS side by side, ratios to RUN_A, aggregates, negative transfer,
and for run folders the frames they took to reach RUN_A's final IQM."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from mtdqn.scripts.cli import UsageError, parse_options


@dataclass
class CompareArgs:
    runs: tyro.conf.Positional[list[str]]
    """Run folders (the evaluation of their most trained agent, an `mtdqn evaluate` before a periodic one),
    evaluation folders or eval.json files; the first is the reference.
    Join runs of different games with '+' to compare them as one (e.g. SB3 single-game baselines)."""
    labels: str | None = None
    """Comma-separated names for the runs (default: the run folder names). Runs given the same name are seeds
    of one configuration: their episodes are pooled into one run (e.g. `--labels shared,shared,learned,learned`)."""
    out: str = "compare"
    """Folder for compare.md, compare.csv, compare.json and compare.png."""
    track: bool = False
    """Also log the table and chart to W&B (offline without an API key or network)."""
    wandb_project: str = "mtdqn"
    """W&B project."""


def main(argv: list[str]) -> None:
    args = parse_options(CompareArgs, argv, "mtdqn compare",
                         "Compare runs per game: HNS, ratio to the first run, rliable aggregates, negative transfer.")
    if len(args.runs) < 2:
        raise UsageError(f"compare needs at least 2 runs, got {len(args.runs)}: the first is the reference")
    labels = [l.strip() for l in args.labels.split(",")] if args.labels else [None] * len(args.runs)
    if len(labels) != len(args.runs):
        raise UsageError(f"--labels has {len(labels)} names for {len(args.runs)} runs")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    from mtdqn.agents.studies.compare import CompareError, compare, load_merged, markdown, pool, write  # ale-py: after parsing

    try:
        runs = [load_merged(path, label) for path, label in zip(args.runs, labels)]
        names = [r.label for r in runs]
        if not args.labels and len(set(names)) != len(names):
            raise CompareError(f"two runs are both named {max(names, key=names.count)!r}: name them with --labels "
                               f"(the same name twice pools seeds)")
        runs = [pool([r for r in runs if r.label == name], name) for name in dict.fromkeys(names)]
        result = compare(runs)
    except CompareError as e:
        raise UsageError(str(e)) from None
    for note in result["warnings"]:
        print(f"mtdqn: warning: {note}", file=sys.stderr)
    paths = write(result, out, runs)
    print(markdown(result))
    if args.track:
        _log_to_wandb(result, paths, out, args.wandb_project)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)


def _log_to_wandb(result: dict, paths: dict, out: Path, project: str) -> None:
    from mtdqn.agents.core.tracking import Tracker

    tracker = Tracker.start(out, {"runs": result["runs"], "reference": result["reference"]}, track=True,
                            project=project, entity=None, group=None, job_type="compare")

    def build():
        import wandb

        labels = list(result["runs"])
        columns = ["game"] + [f"hns/{l}" for l in labels] + ["negative_transfer"]
        data = [[row["game"], *(row["hns"][l] for l in labels), ", ".join(row["negative_transfer"])]
                for row in result["games"]]
        summary = {f"compare/{l}/hns_{m}": result["aggregates"][l][m]["value"] for l in labels
                   for m in ("iqm", "median", "mean")}
        summary |= {f"compare/{l}/probability_of_improvement": p["value"]
                    for l, p in result["probability_of_improvement"].items()}
        media = {"compare/iqm_curves": wandb.Image(str(paths["curves"]))} if "curves" in paths else {}
        return {"compare/table": wandb.Table(columns=columns, data=data),
                "compare/chart": wandb.Image(str(paths["png"])), **media, **summary}

    tracker.log_wandb(build)
    tracker.finish()
