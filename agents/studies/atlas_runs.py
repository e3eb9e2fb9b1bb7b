"""The runs of a transfer atlas (agents/studies/atlas.py), found in study folders and read back.

A run folder is a folder holding config.yaml (`mtdqn train` writes one; a study lays them out as
OUT/<variant>/<suite>/seed<k>/). Its games come from the config's suite, its budget from frames_per_game,
its score on a game from the final evaluation (evals/frames_N/eval.json, N >= budget): the game's `hns`,
which for MinAtar games is the DQN-normalized score (random 0, published DQN 1). A run without its final
evaluation is unfinished and left out. Roles:

- alone: a single-game run (any variant);
- shared: a run of 2+ games with --sharing shared (hard sharing): a pair, or a group such as all five;
- learned: a finished run of 2+ games with --sharing learned whose folder holds overlap.csv (the run writes it
  at every log, its final gates at its last; checkpoints are not committed, overlap.csv is);
- any other sharing (separate, grouped, soft) is not hard sharing and is left out, with a note.

Runs pooled as seeds of one configuration (same role, same games) must agree on every option of what is
learned (study.py's UNCOMPARED and the measuring/logging cadence aside) and have distinct seeds; a group's
runs and its games' alone runs must agree on them too, but for the suite and the input layer.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from mtdqn.agents.multitask import conflict
from mtdqn.agents.studies.study import UNCOMPARED, final_evaluation
from mtdqn.envs import GameError, resolve_games

# options that say where a run ran, how often it measured, logged or saved, not what it learned
IGNORED = {*UNCOMPARED, "seed", "eval_interval",
           "checkpoint_interval", "keep_checkpoints", "log_interval", "video", "save_replay", "conflict_interval",
           "conflict_batch_size", "affinity_step", "affinity_lr"}
SKIPPED = {"evals", "checkpoints", "wandb", "logs", "report"}  # folders of a run or study that hold no runs


class AtlasError(ValueError):
    """Input the atlas cannot use: one line naming the bad value and what is valid."""


@dataclass
class Run:
    folder: Path
    variant: str
    games: tuple[str, ...]  # sorted
    seed: int | None
    budget: int  # frames per game
    sharing: str
    options: dict  # what the run learned with (IGNORED left out)
    scores: dict[str, float] | None = None  # final normalized score per game; None: unfinished

    @property
    def suite(self) -> str:
        return "+".join(self.games)


@dataclass
class Runs:
    games: list[str]
    alone: dict[str, list[Run]] = field(default_factory=dict)  # game -> single-game runs
    shared: dict[tuple, list[Run]] = field(default_factory=dict)  # games -> hard-sharing runs of them
    learned: dict[tuple, list[Run]] = field(default_factory=dict)  # games -> learned runs with overlap.csv
    notes: list[str] = field(default_factory=list)


def run_folders(folder: Path) -> list[Path]:
    """Every run folder at or below `folder` (a folder with config.yaml; nothing below one is searched)."""
    found = []
    for top, dirs, files in os.walk(folder):
        if "config.yaml" in files:
            found.append(Path(top))
            dirs.clear()
        else:
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not d.startswith("."))
    return found


def read_run(folder: Path) -> Run:
    path = folder / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise AtlasError(f"{path} cannot be read: {' '.join(str(e).split())[:160]}") from None
    if not isinstance(config, dict) or "suite" not in config or not isinstance(config.get("frames_per_game"), int):
        raise AtlasError(f"{path} is not an mtdqn run's config: it needs suite and frames_per_game")
    try:
        games = tuple(sorted(resolve_games(str(config["suite"]))))
    except GameError as e:
        raise AtlasError(f"{path}: {e}") from None
    variant = folder.parent.parent.name if re.fullmatch(r"seed\d+", folder.name) else folder.parent.name
    run = Run(folder, variant, games, config.get("seed"), config["frames_per_game"],
              str(config.get("sharing", "shared")),
              {k: v for k, v in config.items() if k not in IGNORED and not k.startswith("wandb_")})
    final = final_evaluation(folder, run.budget)
    if final is not None:
        run.scores = read_scores(final, games)
    return run


def read_scores(path: Path, games: tuple[str, ...]) -> dict[str, float]:
    """Each game's normalized score (`hns`) in an eval.json."""
    try:
        scores = {e["game"]: e.get("hns") for e in json.loads(path.read_text())["games"]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise AtlasError(f"{path} is not an mtdqn evaluation report (eval.json with games)") from None
    missing = [g for g in games if not isinstance(scores.get(g), (int, float))]
    if missing:
        raise AtlasError(f"{path} has no normalized score (hns) for {missing[0]}: the atlas needs games with a "
                         "reference score")
    return {g: float(scores[g]) for g in games}


def collect(folders: list[str], variants: list[str] | None = None) -> Runs:
    """The atlas's runs under `folders`, by role, checked (see the module docstring)."""
    every: dict[Path, Run] = {}
    for name in folders:
        folder = Path(name)
        if not folder.is_dir():
            raise AtlasError(f"{name!r} is not a folder: give study folders (or folders of run folders)")
        found = run_folders(folder)
        if not found:
            raise AtlasError(f"{name!r} holds no run folder (a folder with config.yaml, at any depth)")
        for f in found:
            if f.resolve() not in every:  # a folder given twice, or inside another given one, counts once
                every[f.resolve()] = read_run(f)
    runs = list(every.values())
    if variants:
        names = sorted({r.variant for r in runs})
        runs = [r for r in runs if r.variant in variants]
        if not runs:
            raise AtlasError(f"--variants {','.join(variants)}: no run of {'it' if len(variants) == 1 else 'them'} "
                             f"under {', '.join(folders)}; the variants there are {', '.join(names)}")
    notes = []
    unfinished = [r for r in runs if r.scores is None]
    if unfinished:
        notes.append(f"{len(unfinished)} unfinished run(s) left out (no final evaluation at their budget yet), e.g. "
                     f"{unfinished[0].folder}")
    others = [r for r in runs if len(r.games) > 1 and r.sharing not in ("shared", "learned")]
    if others:
        notes.append(f"{len(others)} run(s) with --sharing {', '.join(sorted({r.sharing for r in others}))} left out: "
                     "the atlas measures hard sharing")
    learned = [r for r in runs if len(r.games) > 1 and r.sharing == "learned" and r.scores is not None]
    without = [r for r in learned if not (r.folder / "overlap.csv").is_file()]
    gated = [r for r in learned if (r.folder / "overlap.csv").is_file()]
    if without:
        notes.append(f"{len(without)} --sharing learned run(s) have no overlap.csv (a learned run writes it at "
                     f"every log, `mtdqn sharing RUN` from a checkpoint), e.g. {without[0].folder}")
    out = Runs([], notes=notes)
    for r in runs:
        if r.scores is not None and len(r.games) == 1:
            out.alone.setdefault(r.games[0], []).append(r)
        elif r.scores is not None and r.sharing == "shared":
            out.shared.setdefault(r.games, []).append(r)
    for r in gated:
        out.learned.setdefault(r.games, []).append(r)
    if not out.alone and not out.shared:
        raise AtlasError(f"no finished single-game or hard-sharing run under {', '.join(folders)}: of its "
                         f"{len(runs)} run folder(s), {len(unfinished)} unfinished, {len(others)} with other sharing, "
                         f"{len(learned)} --sharing learned")
    for kind, groups in (("alone", {(g,): rs for g, rs in out.alone.items()}), ("shared", out.shared),
                         ("learned", out.learned)):
        for games, group in groups.items():
            group.sort(key=lambda r: (r.seed is None, r.seed, str(r.folder)))
            same_configuration(group, f"{'+'.join(games)} ({kind})")
    for games in out.shared:
        lacking = [g for g in games if g not in out.alone]
        if lacking:
            raise AtlasError(f"{'+'.join(games)} has {len(out.shared[games])} run(s) but {lacking[0]} has no finished "
                             f"alone run (a single-game run of it) to compare with: add them (e.g. the suite "
                             f"{lacking[0]} in the study)")
    for games, group in out.shared.items():
        for g in games:
            same_learning(group[0], out.alone[g][0], f"{'+'.join(games)} and {g} alone")
    out.games = sorted({g for g in out.alone} | {g for games in out.shared for g in games})
    return out


# what a run with partners and a run alone differ in by their role: the games, and the input layer's default
ROLE = {"suite", "input_layer"}


def same_learning(with_run: Run, alone: Run, what: str) -> None:
    """A cell compares runs that differ only in what shares the torso: a group's runs and its games' alone
    runs must agree on every other learning option (a preset or learning rate of their own would be measured
    as transfer)."""
    differ = next((k for k in sorted(with_run.options.keys() & alone.options.keys())
                   if k not in ROLE and with_run.options[k] != alone.options[k]), None)
    if differ is not None:
        raise AtlasError(f"{what} differ in {differ}: {with_run.options[differ]!r} in {with_run.folder}, "
                         f"{alone.options[differ]!r} in {alone.folder}: a cell compares runs that differ only in "
                         "what shares the torso")


def same_configuration(runs: list[Run], what: str) -> None:
    """Runs pooled as seeds must be seeds of one configuration: same learning options, distinct seeds. An option
    one config.yaml lacks (a run made before the option existed) is not compared, as `mtdqn study` does."""
    first = runs[0]
    for other in runs[1:]:
        differ = next((k for k in sorted(first.options.keys() & other.options.keys())
                       if first.options.get(k) != other.options.get(k)), None)
        if differ is not None:
            raise AtlasError(f"runs of {what} differ in {differ}: {first.options.get(differ)!r} in {first.folder}, "
                             f"{other.options.get(differ)!r} in {other.folder}: not seeds of one configuration; "
                             f"pick one with --variants (variants here: "
                             f"{', '.join(sorted({r.variant for r in runs}))})")
    seeds = [r.seed for r in runs]
    twice = next((s for s in seeds if seeds.count(s) > 1), None)
    if twice is not None:
        folders = [str(r.folder) for r in runs if r.seed == twice]
        raise AtlasError(f"runs of {what}: seed {twice} twice ({folders[0]} and {folders[1]}): a copy would count "
                         "one run twice; give each run's folder once")


def check_budget(runs: list[Run], what: str) -> int:
    """The one budget (frames per game) of the runs of one comparison."""
    budgets = {}
    for r in runs:
        budgets.setdefault(r.budget, r.folder)
    if len(budgets) > 1:
        listed = "; ".join(f"{b:,} ({f})" for b, f in sorted(budgets.items()))
        raise AtlasError(f"{what}: mixed budgets (frames per game) {listed}: compare runs of one budget "
                         "(give the folders of one, or --variants)")
    return next(iter(budgets))


def covering(groups: dict[tuple, list[Run]], games: list[str]) -> list[Run]:
    """The runs of a suite of every game of the atlas (the predictors' runs), or none."""
    return groups.get(tuple(games), [])


def predictor_matrices(runs: Runs, name: str, since_frames: int) -> list[tuple[Run, np.ndarray]]:
    """Per run of all the atlas's games, its [source, target] matrix of the predictor: cosine or TAG affinity
    averaged over its conflict.csv measurements at or after `since_frames`, or the gate overlap (Jaccard of
    kept channels, all layers pooled) of its overlap.csv. Runs without the file are left out."""
    out = []
    if name == "overlap":
        for run in covering(runs.learned, runs.games):
            out.append((run, read_overlap(run.folder / "overlap.csv", runs.games)))
        return out
    for run in covering(runs.shared, runs.games):
        path = run.folder / "conflict.csv"
        if not path.is_file():
            continue
        games, means, count = conflict.read_csv(path, since_frames)
        if not count:
            raise AtlasError(f"{path} has no measurement at or after --since-frames {since_frames:,}: lower it")
        out.append((run, reorder(means[name], games, runs.games)))
    return out


def reorder(matrix: np.ndarray, games: list[str], order: list[str]) -> np.ndarray:
    """A [G, G] matrix over `games` as one over `order` (NaN where a game is absent)."""
    out = np.full((len(order), len(order)), np.nan)
    where = [order.index(g) for g in games]
    out[np.ix_(where, where)] = matrix
    return out


def read_overlap(path: Path, order: list[str]) -> np.ndarray:
    """The "all" layer's Jaccard overlap from an overlap.csv (layer, source, target, jaccard)."""
    out = np.full((len(order), len(order)), np.nan)
    try:
        for row in csv.DictReader(path.open()):
            if row["layer"] == "all" and row["source"] in order and row["target"] in order:
                out[order.index(row["source"]), order.index(row["target"])] = float(row["jaccard"])
    except (OSError, KeyError, ValueError, UnicodeDecodeError, csv.Error):
        raise AtlasError(f"{path} is not an overlap.csv of `mtdqn sharing` (layer, source, target, jaccard)") from None
    return out
