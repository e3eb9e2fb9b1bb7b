"""A study: a grid of training runs (suites x variants x seeds, and optionally a single-game baseline per
game and seed) described by one YAML file, laid out in one folder, and read back run by run.

The file (docs/studies.md has every key):

    name: sharing-small
    suite: pong,breakout            # or a list of suites: each is an axis of the grid
    seeds: [0, 1]
    common: {frames-per-game: 2000}  # train options every run gets
    variants:                       # a name and the train options that define it
      shared: {sharing: shared}
      separate: {sharing: separate}
    baseline: {}                    # optional: one single-game run per game and seed (common + these options)
    out: runs/studies/sharing-small

Layout: OUT/<variant>/<suite>/seed<k>/ (a suite of listed games is named by its games joined with '+'),
OUT/baseline/<game>/seed<k>/, OUT/study.json (wall time and segments of every run the study ran),
OUT/logs/ (a new run's log until its folder exists; then it is the run folder's train.log), OUT/report/
(agents/studies/study_report.py: compare.py over the variants, and study.md listing every run).

A run is finished when its folder holds the final evaluation, evals/frames_N/eval.json with N at or past
the budget (what `mtdqn train` writes last), wherever the folder came from: checkpoints are not needed,
so committed results count as done. A folder with config.yaml and no final evaluation is resumed.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.training.run_folder import LOCK
from mtdqn.envs import PROTOCOLS, resolve_games

KEYS = ("name", "description", "suite", "seeds", "common", "variants", "baseline", "out", "results", "track")
RESERVED = ("baseline", "report", "logs")  # folders of OUT that a variant may not be named
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# train options the study sets itself, and where a study file sets them instead
OWNED = {"suite": "the top-level suite key", "seed": "the top-level seeds key", "out": "the top-level out key",
         "track": "the top-level track key or --track", "wandb_group": "the study's name",
         "config": "put its options in common", "resume": "a re-run of the study",
         "force": "a study never replaces a run", "progress_interval": "the study (every run logs to train.log)"}
# options a finished or resumed run may differ in from the study's: where and how it ran, not what it learned
# (the budget is checked on its own); scripts/train.py's RESUMABLE and tracking
UNCOMPARED = ("out", "frames_per_game", "threads", "env_threads", "device", "backend", "num_actors", "ray_address",
              "weight_publish_period", "chunk_steps", "track", "config", "preset", "progress_interval")


# counts that `--budget-scale` multiplies: every option measured in frames, agent steps, updates or episodes
SCALED = ("frames_per_game", "learning_starts", "epsilon_decay_frames", "replay_size", "target_update_period",
          "eval_interval", "eval_episodes", "max_episode_frames", "checkpoint_interval", "conflict_interval",
          "gate_freeze_frames", "reset_interval", "log_interval")


class StudyError(ValueError):
    """A study file that cannot run, or a study folder that holds something else: one line, before any run starts."""


@dataclass
class Run:
    variant: str  # a variant's name, or "baseline"
    suite: str  # as the study gives it (a baseline run: its game)
    seed: int
    folder: Path
    options: dict  # train options by field name (underscores), merged common < variant
    flags: list[str] = field(default_factory=list)  # `mtdqn train` arguments, without --out
    budget: int = 0  # frames per game, as train resolves it (preset and defaults included)
    config: dict = field(default_factory=dict)  # the resolved TrainConfig of the run

    @property
    def name(self) -> str:
        return f"{self.variant}/{slug(self.suite)}/seed{self.seed}"


@dataclass
class Study:
    name: str
    path: Path
    out: Path
    suites: list[str]
    seeds: list[int]
    variants: dict[str, dict]
    common: dict = field(default_factory=dict)
    baseline: dict | None = None
    track: bool = False
    description: str = ""
    results: Path | None = None  # kept results (agents/studies/results.py), resolved against the file's folder


class _Loader(yaml.SafeLoader):
    """safe_load, except that a key given twice in one mapping is an error (PyYAML keeps the last silently)."""


def _mapping(loader: _Loader, node, deep: bool = False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        mark = key_node.start_mark
        line = f"{mark.line + 1}:{mark.column + 1}"
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise StudyError(f"{loader.name}: a key at line:column {line} is a {type(key).__name__}, not a name")
        if key == "<<":
            continue
        if key in seen:
            raise StudyError(f"{loader.name}: {key!r} is given twice (line:column {seen[key]} and {line})")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read(path: str | Path) -> Study:
    """The study a file describes, its shape checked (option values are judged by `plan`'s resolver)."""
    path = Path(path)
    if path.is_dir():
        raise StudyError(f"study file {str(path)!r} is a folder: give a study's YAML file, "
                         "e.g. studies/minatar_dqn.yaml")
    if not path.is_file():
        raise StudyError(f"study file {str(path)!r} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=lambda text: _named_loader(text, str(path)))
    except yaml.YAMLError as e:
        raise StudyError(f"{path}: not valid YAML: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path}: a study file is a mapping of {', '.join(KEYS)}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), KEYS, n=1)
        raise StudyError(f"{path}: unknown key {unknown[0]!r}" + (f" (did you mean {close[0]}?)" if close else "")
                         + f"; a study has {', '.join(KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise StudyError(f"{path}: name {name!r} must be letters, digits, '_', '.' or '-' (it names the W&B group)")
    suites = data.get("suite")
    suites = [suites] if isinstance(suites, str) else suites
    if not suites or not isinstance(suites, list) or not all(isinstance(s, str) and s.strip() for s in suites):
        raise StudyError(f"{path}: suite must be a suite or games (pong,breakout), or a list of them")
    if len(set(suites)) != len(suites):
        raise StudyError(f"{path}: suite {max(suites, key=suites.count)!r} is listed twice")
    seeds = data.get("seeds")
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise StudyError(f"{path}: seeds must be a list of integers >= 0, e.g. [0, 1, 2], got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{path}: seed {max(seeds, key=seeds.count)} is listed twice")
    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise StudyError(f"{path}: variants must map each variant's name to its train options, "
                         "e.g. {shared: {sharing: shared}}")
    for v in variants:
        if not isinstance(v, str) or not NAME.fullmatch(v) or v in RESERVED:
            raise StudyError(f"{path}: variant name {v!r} must be letters, digits, '_', '.' or '-' (a folder name), "
                             f"and not {', '.join(RESERVED)}")
    variants = {v: _options(options, f"{path}: variant {v!r}", seeds) for v, options in variants.items()}
    baseline = data.get("baseline", False)  # `baseline:` or `baseline: {}`: one with the common options only
    baseline = None if baseline is False else _options(baseline, f"{path}: baseline", seeds)
    track = data.get("track", False)
    if not isinstance(track, bool):
        raise StudyError(f"{path}: track must be true or false, got {track!r}")
    out = data.get("out", f"runs/studies/{name}")
    if not isinstance(out, str) or not out.strip():
        raise StudyError(f"{path}: out must be a folder, got {out!r}")
    results = data.get("results")
    if results is not None and (not isinstance(results, str) or not results.strip()):
        raise StudyError(f"{path}: results must be a folder (relative to the study file), got {results!r}")
    return Study(name, path, Path(out), [s.strip() for s in suites], seeds, variants,
                 _options(data.get("common"), f"{path}: common", seeds), baseline, track,
                 str(data.get("description") or ""),
                 None if results is None else Path(os.path.normpath(path.parent / results)))


def _named_loader(text: str, name: str) -> _Loader:
    loader = _Loader(text)
    loader.name = name
    return loader


class PerSeed(dict):
    """An option given as a list in a study file: one value per seed, in the order of the file's seeds
    (e.g. each seed's own random grouping), kept by seed so that `--seeds` may run a subset."""


def _options(options, where: str, seeds: list[int] | None = None) -> dict:
    """Train options by field name from a mapping of option: value (dashes or underscores); unknown options
    get a suggestion, options the study sets itself say where they go. With `seeds`, a list is one value per
    seed (a PerSeed)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise StudyError(f"{where}: train options must be a mapping of option: value, got {options!r}")
    names = TrainConfig.field_names()
    out = {}
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name in OWNED:
            raise StudyError(f"{where}: {key!r} is set by the study ({OWNED[name]})")
        if name not in names:
            close = difflib.get_close_matches(name, [n for n in names if n not in OWNED], n=1)
            raise StudyError(f"{where}: unknown option {key!r}"
                             + (f" (did you mean {close[0].replace('_', '-')}?)" if close else ""))
        if isinstance(value, list) and seeds is not None:
            if len(value) != len(seeds) or any(isinstance(v, (list, dict)) for v in value):
                raise StudyError(f"{where}: option {key!r} lists {len(value)} value{'s' * (len(value) != 1)} for "
                                 f"{len(seeds)} seed{'s' * (len(seeds) != 1)}: a list gives one value per seed, in "
                                 f"the order of seeds")
            value = PerSeed(zip(seeds, value))
        elif isinstance(value, (list, dict)):
            raise StudyError(f"{where}: option {key!r} takes one value, got {value!r}")
        out[name] = value
    return out


def _for_seed(options: dict, seed: int) -> dict:
    return {k: v[seed] if isinstance(v, PerSeed) else v for k, v in options.items()}


def argv(options: dict) -> list[str]:
    """`mtdqn train` flags for options by field name: a boolean option as --name / --no-name, others --name=value."""
    hints = typing.get_type_hints(TrainConfig)
    out = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if hints.get(name) is bool and isinstance(value, bool):
            out.append(flag if value else f"--no-{flag[2:]}")
        else:
            out.append(f"{flag}={value}")
    return out


def slug(suite: str) -> str:
    """A suite as a folder name: a named suite as it is, listed games joined by '+' (a long list by its
    size and a hash); a MinAtar id's '/' becomes '-' (minatar-breakout), so a run is one folder deep."""
    games = [g.strip().replace("/", "-") for g in suite.split(",")]
    text = "+".join(games)
    if len(text) <= 60:
        return text
    return f"{len(games)}-games-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def plan(study: Study, resolve, host: dict | None = None, scale: float = 1.0) -> list[Run]:
    """Every run of the study, each resolved by `resolve(flags) -> config` (the train parser: it raises on an
    option value no run could use); `host`: options of the machine's share (threads), not of what is learned;
    `scale`: every count of frames, steps, updates or episodes (SCALED) times this, as resolved (presets
    included), for a tiny run of the same study. Variants first (suite by suite), then the baseline's runs."""
    runs = []
    for suite in study.suites:
        for variant, options in study.variants.items():
            runs += [Run(variant, suite, seed, study.out / variant / slug(suite) / f"seed{seed}",
                         _for_seed({**study.common, **options}, seed)) for seed in study.seeds]
    if study.baseline is not None:
        games = dict.fromkeys(g for suite in study.suites for g in resolve_games(suite))
        runs += [Run("baseline", game, seed, study.out / "baseline" / slug(game) / f"seed{seed}",
                     _for_seed({**study.common, **study.baseline}, seed)) for game in games for seed in study.seeds]
    for run in runs:
        options = {**(host or {}), **run.options}
        if study.track:
            own = options.pop("wandb-tags", None) or options.pop("wandb_tags", None)  # the file's, kept
            tags = f"study:{study.name},variant:{run.variant},seed:{run.seed}"
            options |= {"track": True, "wandb_group": study.name, "wandb_tags": f"{own},{tags}" if own else tags}
        run.flags = [*argv(options), f"--suite={run.suite}", f"--seed={run.seed}"]
        where = f"{study.path}: {'baseline' if run.variant == 'baseline' else f'variant {run.variant!r}'}"
        cfg = resolve(run.flags, where)
        if scale != 1.0:
            options |= {name: max(1, round(getattr(cfg, name) * scale)) for name in SCALED if getattr(cfg, name) > 0}
            run.flags = [*argv(options), f"--suite={run.suite}", f"--seed={run.seed}"]
            cfg = resolve(run.flags, f"{where} at --budget-scale {scale:g}")
        run.config = {name: getattr(cfg, name) for name in TrainConfig.field_names()}
        run.budget = cfg.frames_per_game
    return runs


def final_evaluation(folder: Path, budget: int) -> Path | None:
    """The run's final eval.json: its evaluation at or past `budget` frames per game (train evaluates past
    the budget only at the end), None while the run is unfinished."""
    found = [p for p in folder.glob("evals/frames_*/eval.json") if p.parent.name[7:].isdigit()
             and int(p.parent.name[7:]) >= budget]
    return min(found, key=lambda p: p.parent.name, default=None)


def status(run: Run) -> str:
    """finished; unfinished (a run folder without its final evaluation: interrupted, or its budget since raised),
    to be resumed; or new."""
    if final_evaluation(run.folder, run.budget):
        return "finished"
    if (run.folder / "config.yaml").is_file():
        return "unfinished"
    return "new"


def check_folder(run: Run) -> None:
    """A run folder must be empty, absent, or a run of this configuration (its budget may be lower)."""
    saved_path = run.folder / "config.yaml"
    if not saved_path.is_file():
        if run.folder.exists() and (not run.folder.is_dir() or any(p.name != LOCK for p in run.folder.iterdir())) \
                and not final_evaluation(run.folder, run.budget):
            raise StudyError(f"{run.folder} holds something that is not a run (no config.yaml): move it away, "
                             "the study trains its run there")
        return
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    except yaml.YAMLError:
        raise StudyError(f"{saved_path} cannot be read: move the run folder away to train it again") from None
    if saved.get("frames_per_game", 0) > run.budget:
        raise StudyError(f"{run.folder} was trained for {saved['frames_per_game']:,} frames per game, more than "
                         f"the study's {run.budget:,}: move it away or raise frames-per-game")
    as_recorded_now(saved, run.config)
    differ = [k for k in run.config if k in saved and k not in UNCOMPARED and not k.startswith("wandb_")
              and saved[k] != run.config[k]]
    if differ:
        k = differ[0]
        raise StudyError(f"{run.folder} holds a run of another configuration ({k} {saved[k]!r}, the study says "
                         f"{run.config[k]!r}{f' and {len(differ) - 1} more' if len(differ) > 1 else ''}): "
                         "move it away, or give the study another out")


def as_recorded_now(saved: dict, config: dict) -> None:
    """An older run's config.yaml as train records it since: a protocol's life-loss terminals as
    life_loss_terminal: true, and groups as themselves rather than a file's path (when they are the same)."""
    from mtdqn.agents.multitask.sharing import GroupsError, parse_groups

    if (PROTOCOLS.get(saved.get("protocol")) or PROTOCOLS["machado"]).life_loss_terminal:
        saved["life_loss_terminal"] = True
    if saved.get("groups") and config.get("groups") and saved["groups"] != config["groups"]:
        games = resolve_games(config["suite"])
        try:
            if parse_groups(saved["groups"], games) == parse_groups(config["groups"], games):
                saved["groups"] = config["groups"]
        except GroupsError:
            pass  # a file gone since: reported as a difference


def train_command(run: Run, resume: bool, progress_interval: float = 30.0) -> list[str]:
    """`mtdqn train` arguments that start the run, or continue it from its newest intact checkpoint (the budget
    and the host options may have changed since)."""
    if not resume:
        return ["train", *run.flags, f"--out={run.folder}", f"--progress-interval={progress_interval:g}"]
    host = [f for f in run.flags if f.split("=")[0] in ("--threads", "--env-threads")]
    return ["train", "--resume", str(run.folder), f"--frames-per-game={run.budget}", *host,
            f"--progress-interval={progress_interval:g}"]


def frames_done(run: Run) -> int | None:
    """Frames per game the run has reached: its final evaluation, else its newest checkpoint."""
    names = [p.parent.name for p in run.folder.glob("evals/frames_*/eval.json")]
    names += [p.stem for p in run.folder.glob("checkpoints/frames_*.pt")]
    numbers = [int(n[7:]) for n in names if n[7:].isdigit()]
    return max(numbers, default=None)
