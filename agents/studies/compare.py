"""Labels side by side, each a set of runs (seeds): per-game HNS over runs, aggregates and intervals over
runs, probability of improvement, performance profiles, learning curves with bands, negative transfer.

A run's score on a game is the mean of its evaluation episodes; every interval resamples runs, never
episodes (envs/statistics.py). The first label is the reference (e.g. `separate` or single-game runs).
A game shows negative transfer under a label when the 95% interval over runs of its HNS difference to
the reference lies entirely below zero; with fewer than 3 runs on either side that is not decided (an
interval over 2 runs covers about half the time), and the table says so instead of flagging anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtdqn.agents.core.machine import run_machines
from mtdqn.envs import hns
from mtdqn.envs.statistics import (aggregates, difference_interval, difference_summary, performance_profiles,
                                   probability_of_improvement)

# A multi-game run stops when its last game reaches the budget, so the others pass it by a few
# steps: budgets within this fraction of each other count as one.
BUDGET_SLACK = 0.01
# A bootstrap interval over 2 runs covers the true mean about half the time (docs/statistics.md): a
# per-game negative-transfer decision needs this many runs a side; below it the interval is still reported.
MIN_RUNS_TO_DECIDE = 3


class CompareError(ValueError):
    """A run or report that cannot be compared; the message says which and why."""


@dataclass
class Evaluated:
    """One run's evaluation (or several single-game runs joined with '+' into one)."""
    label: str
    source: str
    frames: dict[str, int]
    hns: dict[str, np.ndarray]  # per-episode HNS per game
    curves: dict[str, list[tuple[int, float]]] | None = None  # per game, (frames per game, HNS) of periodic evaluations
    # how its episodes were played, in words ("episode caps": "400 frames", "epsilons", "protocols"), and whether
    # they were cut below the protocol's cap (--max-episode-frames)
    settings: dict[str, str] = field(default_factory=dict)
    capped: bool = False
    seconds: float | None = None  # wall time `mtdqn train` spent on the run (training_seconds), None if unknown
    machines: list[str] = field(default_factory=list)  # what its training segments ran on (machine.jsonl), in words

    def score(self, game: str) -> float:
        """The run's score on `game`: the mean of its evaluation episodes."""
        return float(np.mean(self.hns[game]))


def load_merged(spec: str, label: str | None = None) -> Evaluated:
    """`load` for one path, or for several joined by '+' (e.g. single-game SB3 runs) taken as one run."""
    if "+" not in spec or Path(spec).exists():  # a study names a multi-game run's folder a+b
        return load(spec, label)
    parts = [load(path) for path in spec.split("+")]
    merged = Evaluated(label or "+".join(p.label for p in parts), " + ".join(p.source for p in parts), {}, {})
    for part in parts:
        twice = set(part.hns) & set(merged.hns)
        if twice:
            raise CompareError(f"{spec!r} holds game {sorted(twice)[0]!r} twice: join runs of different games")
        merged.frames |= part.frames
        merged.hns |= part.hns
    merged.settings = {k: "/".join(dict.fromkeys(p.settings.get(k, "?") for p in parts)) for k in parts[0].settings}
    merged.capped = any(p.capped for p in parts)
    merged.seconds = None if any(p.seconds is None for p in parts) else sum(p.seconds for p in parts)
    merged.machines = list(dict.fromkeys(m for p in parts for m in p.machines))
    return merged


def report_path(path: str) -> tuple[Path, bool]:
    """The eval.json that stands for `path` (a run folder: the evaluation of its most trained agent on the
    most games, an `mtdqn evaluate` before a periodic one; an evaluation folder; an eval.json), and whether
    the run has periodic evaluations (a learning curve)."""
    p = Path(path)
    if p.is_dir() and (p / "eval.json").is_file():
        return p / "eval.json", False
    if p.is_dir() and p.name.endswith("-evaluate") and _newest(p.glob("*/eval.json")):
        return _newest(p.glob("*/eval.json")), False  # `mtdqn evaluate`'s folder of one checkpoint's evaluations
    if p.is_dir():
        periodic = [f for f in (p / "evals").glob("frames_*/eval.json") if f.parent.name[7:].isdigit()]
        evaluated = [f for f in (*(p / "evals").glob("*-evaluate/eval.json"),
                                 *(p / "evals").glob("*-evaluate/*/eval.json"))
                     if not f.parent.name.startswith(".")]  # an evaluation still being written (.OUT.partial)
        if not periodic + evaluated:
            raise CompareError(f"{path!r} has no evaluation yet (evals/*/eval.json): run mtdqn evaluate on it")
        # a one-game `evaluate --games X` must not stand for the run, whatever its frames: the run's games from
        # its config.yaml, else the most any of its evaluations covers
        games = run_games(p) or max((_games_of(f) or [] for f in periodic + evaluated), key=len)
        whole = [f for f in periodic + evaluated if _games_of(f) == games]
        if not whole:
            raise CompareError(f"{path!r} has no evaluation of all its {len(games)} game{'s' * (len(games) != 1)} "
                               f"({','.join(games)}), only "
                               f"of some: run mtdqn evaluate {path}")
        # the most trained agent, then a deliberate `mtdqn evaluate` (e.g. --episodes 30) over the run's own
        # periodic one, the newest if several
        found = max(whole, key=lambda f: (_frames_and_games(f)[0], f in evaluated, f.stat().st_mtime))
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
    curves = {g: c for g, c in learning_curves(Path(path)).items() if g != "iqm"} if periodic else None
    scores, frames = {}, {}
    report = read_report(p)
    for r in report["games"]:
        h = hns(r["game"], r["scores"])
        if h is not None:
            scores[r["game"]] = np.asarray(h)
            frames[r["game"]] = r.get("frames")
    run = run_folder(p)
    name = label or (run.name if run else p.parent.name)
    return Evaluated(name, str(p), frames, scores, curves, *settings(report), training_seconds(run) if run else None,
                     run_machines(run) if run else [])


def training_seconds(run: Path) -> float | None:
    """Wall time `mtdqn train` spent on a run, every segment summed (a resume restarts the clock, so
    perf/elapsed_s falls where a segment begins), periodic evaluations included; from its metrics.jsonl,
    None without one."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    total, segment, last, seen = 0.0, 0.0, -1.0, False
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        t = record.get("perf/wall_time_s", record.get("perf/elapsed_s")) if isinstance(record, dict) else None
        if not isinstance(t, (int, float)):
            continue
        if t < last:  # a new segment
            total, segment = total + segment, 0.0
        segment, last, seen = max(segment, t), t, True
    return total + segment if seen else None


def settings(report: dict) -> tuple[dict[str, str], bool]:
    """How a report's episodes were played, in words per setting (episode cap, epsilon, protocol), and whether its
    episodes were cut below its protocol's cap ("?" and False where a report does not say)."""
    from mtdqn.agents.core.evaluation import cap_of

    protocol = report.get("protocol") or {}
    try:
        cap = cap_of(report)
    except (KeyError, TypeError, ValueError):
        cap = {"frames": "?", "below_protocol": False}
    epsilon = report.get("epsilon")
    return ({"episode caps": f"{cap['frames']:,} frames" if isinstance(cap["frames"], int) else "?",
             "epsilons": f"{epsilon:g}" if isinstance(epsilon, (int, float)) else "?",
             "protocols": str(protocol.get("name", "?"))}, bool(cap["below_protocol"]))


def run_folder(report: Path) -> Path | None:
    """The run folder an eval.json lies in (the parent of its `evals/`), None for a report outside a run."""
    evals = next((a for a in report.parents if a.name == "evals"), None)
    return evals.parent if evals else None


def _frames_and_games(report: Path) -> tuple[int, int]:
    """The frames per game a report's agent was trained for and how many games it evaluated (0s when it
    does not say or cannot be read)."""
    try:
        games = json.loads(report.read_text())["games"]
        return max(r.get("frames") or 0 for r in games), len(games)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        return 0, 0


def run_games(run: Path) -> list[str] | None:
    """The games a run folder trains, from its config.yaml (None if it has none it can read)."""
    import yaml

    from mtdqn.envs import GameError, resolve_games

    try:
        return sorted(resolve_games(yaml.safe_load((run / "config.yaml").read_text())["suite"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError, GameError):
        return None


def _games_of(report: Path) -> list[str] | None:
    try:
        return sorted(r["game"] for r in json.loads(report.read_text())["games"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _newest(reports) -> Path | None:
    """The most recently written of some eval.json files (None if there are none)."""
    return max(reports, key=lambda f: f.stat().st_mtime, default=None)


def matrix(runs: list[Evaluated], games: list[str]) -> np.ndarray:
    """[runs x games] of each run's score (mean episode HNS) per game: rliable's input."""
    return np.array([[r.score(g) for g in games] for r in runs], dtype=np.float64)


def compare(labels: dict[str, list[Evaluated]], reference: str | None = None) -> dict:
    """Every label's runs against the reference label's (default: the first), over the games all runs share."""
    if len(labels) < 2:
        raise CompareError(f"compare needs at least 2 labels, got {len(labels)}: the first is the reference")
    ref = reference or next(iter(labels))
    if ref not in labels:
        raise CompareError(f"reference {ref!r} is not one of the labels {', '.join(labels)}")
    labels = {ref: labels[ref], **{l: r for l, r in labels.items() if l != ref}}
    everyone = [r for runs in labels.values() for r in runs]
    folders = [str((run_folder(Path(r.source)) or Path(r.source)).resolve()) for r in everyone]
    twice = [f for f in dict.fromkeys(folders) if folders.count(f) > 1]
    if twice:  # a seed counted twice would narrow every interval
        raise CompareError(f"{twice[0]!r} is given twice: each run counts once")
    games = [g for g in everyone[0].hns if all(g in r.hns for r in everyone[1:])]
    if not games:
        raise CompareError("the runs share no game with a human reference score")
    notes = [f"{g} is not in every run (missing from {', '.join(dict.fromkeys(r.label for r in everyone if g not in r.hns))}): "
             "dropped from the comparison" for g in dict.fromkeys(g for r in everyone for g in r.hns) if g not in games]
    notes += setting_notes(labels, games)
    budgets = {l: frames_per_game(runs) for l, runs in labels.items()}
    # A run's budget is its least-trained game's frames: training stops once every game has its budget, and
    # a multi-game MinAtar run's other games pass it (a reset step counts no frame: docs/minatar.md).
    trained = [min(known) for r in everyone if (known := set(r.frames.values()) - {None})]
    if trained and max(trained) > (1 + BUDGET_SLACK) * min(trained):
        notes.append("the runs were trained for different frames per game ("
                     + "; ".join(f"{l} {b}" for l, b in budgets.items()) + "): their scores are not at one budget")
    matrices = {l: matrix(runs, games) for l, runs in labels.items()}
    others = [l for l in labels if l != ref]
    rows = [game_row(g, k, labels, matrices, ref) for k, g in enumerate(games)]
    improvement = {l: probability_of_improvement(matrices[l], matrices[ref]) for l in others}
    run_means = {l: m.mean(axis=1) for l, m in matrices.items()}
    mean_difference = {l: run_mean_difference(run_means[ref], run_means[l]) for l in others}
    names = list(labels)
    pairs = {f"{a} > {b}": probability_of_improvement(matrices[a], matrices[b])
             for i, a in enumerate(names) for b in names[i + 1:]}
    taus = profile_taus(matrices)
    profiles = {l: {"value": v.tolist(), "interval": None if ci is None else ci.tolist()}
                for l, (v, ci) in performance_profiles(matrices, taus).items()}
    aggregate = {l: aggregates(m) for l, m in matrices.items()}
    curves = {l: iqm_curve(runs, games) for l, runs in labels.items()}
    target = aggregate[ref]["iqm"]["value"]
    # time to score: the first periodic evaluation at which a label's IQM over runs matched the reference's
    matched = {l: next((p["frames"] for p in curves[l] if p["value"] >= target), None) for l in others if curves[l]}
    timed = {l: [r.seconds / 3600 for r in runs if r.seconds is not None] for l, runs in labels.items()}
    machines = {l: list(dict.fromkeys(m for r in runs if r.seconds is not None for m in r.machines or ["not recorded"]))
                for l, runs in labels.items()}
    hours = {l: {"runs": len(h), "mean": float(np.mean(h)), "std": float(np.std(h, ddof=1)) if len(h) > 1 else None,
                 "machines": machines[l]} for l, h in timed.items() if h}
    every = list(dict.fromkeys(m for l in hours for m in machines[l]))
    known = [m for m in every if m != "not recorded"]
    if len(every) > 1:
        notes.append(f"the training times come from {len(known)} machine{'s' * (len(known) != 1)} "
                     f"({'; '.join(known)})" + (" and runs whose machine is not recorded" if len(known) < len(every)
                                               else "") + ": a time is a cost beside another only where both ran "
                     "on one machine (per label in the training time table)")
    return {"reference": ref, "labels": {l: {"runs": len(runs), "sources": [r.source for r in runs]}
                                         for l, runs in labels.items()},
            "games": rows, "frames_per_game": budgets, "aggregates": aggregate,
            "probability_of_improvement": improvement, "pairs": pairs, "mean_difference": mean_difference,
            "profiles": {"taus": taus.tolist(), **profiles}, "curves": curves,
            "frames_to_reference_iqm": matched, "training_hours": hours, "warnings": notes}


def run_mean_difference(reference: np.ndarray, other: np.ndarray) -> dict:
    """Each run's mean score over the games, one number per run, and the difference of those means to the
    reference's with Welch's 95% interval and p over runs: the comparison of two configurations whose interval
    holds its level at 3-5 runs a side (the bootstrap's of P(A > B) or the IQM do not: docs/statistics.md)."""
    return {**difference_summary(reference, other), "runs": [len(other), len(reference)],
            "mean": float(other.mean()), "std": float(other.std(ddof=1)) if len(other) > 1 else None}


def setting_notes(labels: dict[str, list[Evaluated]], games: list[str]) -> list[str]:
    """A warning per evaluation setting the runs differ in (episode cap, episodes per game, epsilon, protocol),
    whose scores then measure different things, and one when every run's episodes were cut short."""
    described = {l: [r.settings | {"numbers of episodes per game": "/".join(dict.fromkeys(str(len(r.hns[g]))
                                                                                       for g in games))}
                     for r in runs] for l, runs in labels.items()}
    every = [d for ds in described.values() for d in ds]
    notes = []
    for what in dict.fromkeys(k for d in every for k in d):
        if len({d.get(what) for d in every}) > 1:
            values = "; ".join(f"{l} " + "/".join(dict.fromkeys(d.get(what, "?") for d in ds))
                               for l, ds in described.items())
            notes.append(f"the runs were evaluated with different {what} ({values}): their scores are not comparable")
    if all(r.capped for runs in labels.values() for r in runs) and len({d["episode caps"] for d in every}) == 1:
        notes.append(f"every run's episodes were cut at {every[0]['episode caps']}, below the protocol's cap: the "
                     "scores are those of cut-short episodes, not comparable with whole-episode ones")
    return notes


def profile_taus(matrices: dict[str, np.ndarray], points: int = 41) -> np.ndarray:
    """The score thresholds of the performance profiles: from 0 (or the lowest score, if below) to 1 (or the
    highest, if above), so that neither a field of sub-random agents nor one past the reference is cut off."""
    scores = np.concatenate([np.ravel(m) for m in matrices.values()])
    return np.linspace(min(0.0, float(scores.min())), max(1.0, float(scores.max())), points)


def game_row(game: str, k: int, labels: dict[str, list[Evaluated]], matrices: dict[str, np.ndarray], ref: str) -> dict:
    """One game: each label's mean and spread over runs, the ratio and the difference interval (over runs)
    to the reference, and which labels show negative transfer or cannot be decided (too few runs)."""
    scores = {l: m[:, k] for l, m in matrices.items()}
    row = {"game": game, "frames": {l: max((r.frames.get(game) or 0 for r in runs), default=0) or None
                                    for l, runs in labels.items()},
           "runs": {l: len(v) for l, v in scores.items()}, "hns": {l: float(v.mean()) for l, v in scores.items()},
           "std": {l: float(v.std(ddof=1)) if len(v) > 1 else None for l, v in scores.items()},
           "ratio": {}, "difference_ci": {}, "negative_transfer": [], "undecided": []}
    base = row["hns"][ref]
    for l in scores:
        if l == ref:
            continue
        row["ratio"][l] = row["hns"][l] / base if base > 0.01 else None
        interval = difference_interval(scores[ref], scores[l])
        row["difference_ci"][l] = None if interval is None else [interval.low, interval.high]
        if interval is None:
            row["undecided"].append(l)
        elif min(len(scores[ref]), len(scores[l])) < MIN_RUNS_TO_DECIDE:
            row["undecided"].append(l)
        elif interval[1] < -1e-9:  # not float noise between equal scores
            row["negative_transfer"].append(l)
    return row


def iqm_curve(runs: list[Evaluated], games: list[str]) -> list[dict]:
    """The label's IQM over runs at each periodic evaluation that all its runs have, with its 95% interval
    over runs (None for one run): a learning curve with a band. Runs evaluate a few frames apart (a
    multi-game run's games pass an interval in lockstep), so points within BUDGET_SLACK are one."""
    if not all(r.curves and all(g in r.curves for g in games) for r in runs):
        return []
    curve = []
    for anchor, _ in runs[0].curves[games[0]]:
        m = [[_near(r.curves[g], anchor) for g in games] for r in runs]
        if all(v is not None for row in m for v in row):
            curve.append({"frames": anchor, **aggregates(np.array(m, dtype=np.float64), reps=500)["iqm"]})
    return curve


def _near(points: list[tuple[int, float]], frames: int) -> float | None:
    """The value of the point within BUDGET_SLACK of `frames`, None if there is none."""
    close = [(abs(f - frames), v) for f, v in points if abs(f - frames) <= BUDGET_SLACK * frames]
    return min(close)[1] if close else None


def frames_per_game(runs: list[Evaluated]) -> str:
    """The frames per game some runs were trained for (each run's least-trained game, compared or not), as
    text: '400,000', or '100,000-400,000' if they differ, '?' if their reports do not say."""
    known = sorted({min(f) for r in runs if (f := set(r.frames.values()) - {None})})
    if not known:
        return "?"
    return f"{known[0]:,}" if len(known) == 1 else f"{known[0]:,}-{known[-1]:,}"
