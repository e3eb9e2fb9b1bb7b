"""`mtdqn compare RUN_A RUN_B ...`: labels of one or more runs (seeds) side by side: per-game HNS over runs,
ratios to the first label, rliable aggregates and intervals over runs, negative transfer, and for run
folders the frames they took to reach the first label's final IQM."""

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
    of one configuration, each a run of its own in the statistics (e.g. `--labels shared,shared,learned,learned`)."""
    out: str = "runs/compare"
    """Folder for compare.md, .csv, .json, compare_runs.csv and the figures (per-game bars, performance
    profiles, IQM curves); under runs/ by default, beside the run folders `train` writes. A new or empty folder,
    or an earlier comparison's (replaced, and said so); never a run folder or a folder inside one."""
    track: bool = False
    """Also log the table and chart to W&B (offline without an API key or network)."""
    wandb_project: str = "mtdqn"
    """W&B project."""


def main(argv: list[str]) -> None:
    args = parse_options(CompareArgs, argv, "mtdqn compare",
                         "Compare labels of runs (seeds): per-game HNS, rliable aggregates and intervals over runs, "
                         "probability of improvement, negative transfer.")
    if len(args.runs) < 2:
        raise UsageError(f"compare needs at least 2 runs, got {len(args.runs)}: the first is the reference")
    labels = [l.strip() for l in args.labels.split(",")] if args.labels else [None] * len(args.runs)
    if len(labels) != len(args.runs):
        raise UsageError(f"--labels has {len(labels)} name{'s' * (len(labels) != 1)} for {len(args.runs)} "
                         f"run{'s' * (len(args.runs) != 1)}")
    out = Path(args.out)
    earlier = check_out(out)
    from mtdqn.agents.studies.compare import CompareError, compare, load_merged  # ale-py: after parsing
    from mtdqn.agents.studies.compare_report import markdown, write

    try:
        runs = [load_merged(path, label) for path, label in zip(args.runs, labels)]
        names = [r.label for r in runs]
        if not args.labels and len(set(names)) != len(names):
            raise CompareError(f"two runs are both named {max(names, key=names.count)!r}: name them with --labels "
                               f"(the same name twice makes them seeds of one label)")
        grouped = {name: [r for r in runs if r.label == name] for name in dict.fromkeys(names)}
        result = compare(grouped)
    except CompareError as e:
        raise UsageError(str(e)) from None
    for note in result["warnings"]:
        print(f"mtdqn: warning: {note}", file=sys.stderr)
    if earlier:  # none of its files may stay beside the new ones (a figure the new comparison has not)
        for name in earlier:
            (out / name).unlink()
        print(f"mtdqn: replacing the earlier comparison in {out}", file=sys.stderr)
    paths = write(result, out, grouped)
    print(markdown(result))
    if args.track:
        _log_to_wandb(result, paths, out, args.wandb_project)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)


# what `write` puts in --out; W&B's wandb/ folder, with --track, gathers one run per comparison
FILES = ("compare.json", "compare.md", "compare.csv", "compare_runs.csv", "compare.png", "compare_profiles.png",
         "compare_curves.png")


def check_out(out: Path) -> list[str]:
    """--out must be new, empty or an earlier comparison (whose files are returned, to be replaced): never a file,
    a run folder or a folder in one (a run folder holds config.yaml and command.txt), nor a folder of other things."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    here = out.resolve()
    run = next((p for p in (here, *here.parents) if (p / "config.yaml").is_file() and (p / "command.txt").is_file()),
               None)
    if run is not None:
        where = "is a run folder" if run == here else f"lies in the run folder {str(run)!r}"
        raise UsageError(f"--out {str(out)!r} {where}: a comparison gets a folder of its own, e.g. --out "
                         "runs/compare-NAME")
    if not out.is_dir():
        return []
    if (out / "compare.json").is_file():
        return [name for name in FILES if (out / name).is_file()]
    other = sorted(p.name for p in out.iterdir())
    if other:
        raise UsageError(f"--out {str(out)!r} holds {other[0]!r} and no comparison (compare.json): choose a new or "
                         f"empty folder, e.g. {out / 'compare'}")
    return []


def _log_to_wandb(result: dict, paths: dict, out: Path, project: str) -> None:
    from mtdqn.agents.core.tracking import Tracker

    tracker = Tracker.start(out, {"labels": result["labels"], "reference": result["reference"]}, track=True,
                            project=project, entity=None, group=None, job_type="compare")

    def build():
        import wandb

        labels = list(result["labels"])
        columns = ["game"] + [f"hns/{l}" for l in labels] + [f"runs/{l}" for l in labels] + ["negative_transfer"]
        data = [[row["game"], *(row["hns"][l] for l in labels), *(row["runs"][l] for l in labels),
                 ", ".join(row["negative_transfer"])] for row in result["games"]]
        summary = {f"compare/{l}/hns_{m}": result["aggregates"][l][m]["value"] for l in labels
                   for m in ("iqm", "median", "mean", "optimality_gap")}
        summary |= {f"compare/{l}/runs": result["labels"][l]["runs"] for l in labels}
        summary |= {f"compare/{l}/probability_of_improvement": p["value"]
                    for l, p in result["probability_of_improvement"].items()}
        media = {"compare/iqm_curves": wandb.Image(str(paths["curves"]))} if "curves" in paths else {}
        return {"compare/table": wandb.Table(columns=columns, data=data),
                "compare/chart": wandb.Image(str(paths["png"])),
                "compare/profiles": wandb.Image(str(paths["profiles"])), **media, **summary}

    tracker.log_wandb(build)
    tracker.finish()
