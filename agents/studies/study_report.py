"""A study's report, OUT/report/: `mtdqn compare` over each suite's variants, seeds as runs, and study.md,
which lists every run with its status, frames and wall time and the command that re-runs the study."""

from __future__ import annotations

from pathlib import Path

from mtdqn.agents.studies.study import Run, Study, frames_done, slug, status
from mtdqn.envs import resolve_games


def write_report(study: Study, runs: list[Run], wall_s, command: str) -> dict[str, Path]:
    """OUT/report/: per suite, agents/studies/compare.py over the variants' runs (seeds), the baseline as the
    reference when the study has one, else the first variant (a subfolder per suite when there are several);
    and study.md: those tables and every run (variant, suite, seed, status, frames, wall time) with the
    command that re-runs the study. `wall_s(run)`: seconds the study spent on it, None if unknown."""
    from mtdqn.agents.studies.compare import CompareError, compare, load
    from mtdqn.agents.studies.compare_report import markdown, write

    folder = study.out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    paths, sections = {}, []
    for suite in study.suites:
        labels = {}
        if study.baseline is not None:  # seed k's single-game runs of the suite's games as one run
            base = {(r.suite, r.seed): r for r in runs if r.variant == "baseline"}
            labels["baseline"] = [_joined([load(str(base[g, seed].folder)) for g in resolve_games(suite)], "baseline")
                                  for seed in study.seeds]
        for variant in study.variants:
            labels[variant] = [load(str(r.folder), variant) for r in runs if r.variant == variant and r.suite == suite]
        head = f"## {suite}\n\n"
        if len(labels) < 2:
            sections.append(head + "One variant and no baseline: nothing to compare; the runs are listed below.\n")
            continue
        try:
            result = compare(labels, reference=next(iter(labels)))
        except CompareError as e:
            sections.append(head + f"Not compared: {e}\n")
            continue
        out = folder if len(study.suites) == 1 else folder / slug(suite)
        written = write(result, out, labels)
        paths |= {(k if len(study.suites) == 1 else f"{slug(suite)}/{k}"): p for k, p in written.items()}
        notes = "".join(f"\nWarning: {w}\n" for w in result.get("warnings", []))
        sections.append(head + f"Reference: {result['reference']}. Files: {out}/\n\n" + markdown(result) + notes)
    rows = ["| run | variant | suite | seed | status | frames per game | wall time | folder |",
            "|---|---|---|---:|---|---:|---:|---|"]
    for r in runs:
        frames, wall = frames_done(r), wall_s(r)
        rows.append(f"| {r.name} | {r.variant} | {r.suite} | {r.seed} | {status(r)} | "
                    f"{'-' if frames is None else f'{frames:,}'} | {'-' if wall is None else f'{wall / 60:.1f} min'} | "
                    f"{r.folder} |")
    text = "\n".join([f"# Study {study.name}", "", *([study.description, ""] if study.description else []),
                      f"{len(runs)} run{'s' * (len(runs) != 1)}: suites {', '.join(study.suites)}; "
                      f"variants {', '.join(study.variants)}"
                      f"{'; a single-game baseline per game' if study.baseline is not None else ''}; seeds "
                      f"{', '.join(map(str, study.seeds))}. Re-run (finished runs are skipped):", "",
                      f"    {command}", "", *sections, "## Runs", "", *rows,
                      "", "Wall time: what this study spent on the run, all segments; - for runs it did not train."])
    paths["study"] = folder / "study.md"
    paths["study"].write_text(text + "\n")
    return paths


def _joined(parts: list, label: str):
    """Several single-game runs' evaluations as one run of all their games (dict fields united)."""
    import dataclasses

    values = {}
    for f in dataclasses.fields(parts[0]):
        got = [getattr(p, f.name) for p in parts]
        if f.name == "label":
            values[f.name] = label
        elif all(isinstance(v, dict) for v in got):
            values[f.name] = {k: x for v in got for k, x in v.items()}
        elif all(isinstance(v, str) for v in got):
            values[f.name] = " + ".join(got)
        else:
            values[f.name] = None
    return type(parts[0])(**values)
