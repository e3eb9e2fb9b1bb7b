"""A study's kept results: the small files of its finished runs in a folder that lives with the study file
(committed to git), so a study outlives the machine that ran it.

A study file's `results: DIR` (relative to the study file) names that folder, laid out as the study's
own (DIR/<variant>/<suite>/seed<k>/). Two things follow:
- `adopt`: before anything runs, a run absent from the study folder but finished in DIR is copied in, so
  it counts as done (checkpoints are not needed: a finished run is its final evaluation) and its
  configuration is checked like any other run's;
- `keep`: each run that finishes has its small files copied to DIR as it ends (an interrupted study keeps
  what finished), ready to commit.

The small files are what a report, `mtdqn compare`, `mtdqn atlas` and a reader need: the configuration,
the command, machine and log, the metrics, the transfer measurements, the learned gates' overlaps, the learning
curves and every evaluation's eval.json. Checkpoints, replay and W&B files stay in the study folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mtdqn.agents.studies.study import Run, Study, final_evaluation
from mtdqn.agents.training.run_folder import LOCK

SMALL_FILES = ("config.yaml", "command.txt", "machine.jsonl", "train.log", "metrics.jsonl", "conflict.csv",
               "learning_curves.png", "gates.csv", "overlap.csv")  # the last two: a learned run's gates


def kept_folder(study: Study, run: Run) -> Path | None:
    """Where the run's small files are kept, None when the study keeps none."""
    if study.results is None:
        return None
    return study.results / run.folder.relative_to(study.out)


def kept_finished(study: Study, run: Run) -> bool:
    """The run is finished in the kept results."""
    kept = kept_folder(study, run)
    return kept is not None and final_evaluation(kept, run.budget) is not None


def adopt(study: Study, runs: list[Run]) -> list[Run]:
    """Copy into the study folder every run it lacks that is finished in the kept results; the runs copied."""
    adopted = []
    for run in runs:
        if not kept_finished(study, run) or _holds_anything(run.folder):
            continue
        shutil.copytree(kept_folder(study, run), run.folder, dirs_exist_ok=True)
        adopted.append(run)
    return adopted


def keep(study: Study, run: Run) -> Path | None:
    """Copy a finished run's small files to the kept results (replacing what an earlier copy of it left);
    the folder written, None when the study keeps none or the run is unfinished."""
    kept = kept_folder(study, run)
    final = final_evaluation(run.folder, run.budget)
    if kept is None or final is None:
        return None
    staging = kept.with_name(f".{kept.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in SMALL_FILES:
        if (run.folder / name).is_file():
            shutil.copy2(run.folder / name, staging / name)
    for report in run.folder.glob("evals/frames_*/eval.json"):
        (staging / "evals" / report.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(report, staging / "evals" / report.parent.name / "eval.json")
    shutil.rmtree(kept, ignore_errors=True)
    staging.rename(kept)
    return kept


def keep_finished(study: Study, runs: list[Run]) -> list[Run]:
    """`keep` every finished run whose kept copy lacks its final evaluation (finished before the study kept
    results, or by an earlier study that was stopped before it could copy); the runs copied."""
    copied = []
    for run in runs:
        kept = kept_folder(study, run)
        if kept is not None and not final_evaluation(kept, run.budget) and final_evaluation(run.folder, run.budget):
            keep(study, run)
            copied.append(run)
    return copied


def _holds_anything(folder: Path) -> bool:
    return folder.is_dir() and any(p.name != LOCK for p in folder.iterdir())
