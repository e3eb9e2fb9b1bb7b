"""`mtdqn study STUDY.yaml`: a grid of training runs (suites x variants x seeds, optional single-game baseline)
as one command, N at a time, resumable, then one report over the runs (docs/studies.md).

Every run's options are checked by train's own parser before anything starts or is written."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from mtdqn.scripts.cli import UsageError, exit_interrupted, parse_options


@dataclass
class StudyArgs:
    study: tyro.conf.Positional[str]
    """The study file (YAML): name, suite, seeds, common, variants, baseline, out, track (docs/studies.md)."""
    jobs: int = 0
    """Runs at once. 0: one per 2 cores (each run has 1 torch thread and a core for its emulators; a torch
    thread sharing its core slows updates 10-70x), with --backend ray one per 2 CPUs of the cluster."""
    backend: Literal["local", "ray"] = "local"
    """local: each run is a process here; ray: each run is a Ray task (2 CPUs) on --ray-address or a local
    instance. The task runs `mtdqn train` on its node, so the study folder must be on a filesystem every node sees."""
    ray_address: str | None = None
    """Ray cluster to join (--backend ray): host:port of `ray start --head`, or auto; unset: a local instance."""
    out: str | None = None
    """Study folder, instead of the file's `out` (default runs/studies/NAME)."""
    track: bool = False
    """Log every run to W&B in one group named after the study (as `track: true` in the file)."""
    max_runs: int = 0
    """Start at most this many runs (new or resumed) now, then stop: a study in slices, e.g. for machines
    lent for a while (0: all). A later `mtdqn study` carries on."""
    dry_run: bool = False
    """Check the file, list every run with its status and command, start nothing, write nothing."""
    seeds: str | None = None
    """Run only these of the file's seeds, comma-separated (e.g. 0 to try a study before all its seeds)."""
    budget_scale: float = 1.0
    """Run the same study at a fraction of its budget: every count of frames, steps, updates or episodes
    (frames-per-game, learning-starts, epsilon decay, replay size, target period, evaluation and checkpoint
    intervals, evaluation episodes, ...) times this, in (0, 1]; for a quick check of a study file end to end.
    A scaled study goes to OUT-x<scale> (unless --out) and neither reads nor writes the file's kept results."""


def resolve(flags: list[str], where: str):
    """A run's options as `mtdqn train` would take them (its parser and checks, games included), or a StudyError
    saying which variant and what is wrong."""
    from mtdqn.agents.studies.study import StudyError
    from mtdqn.envs import resolve_games
    from mtdqn.envs.games import GameError
    from mtdqn.scripts.train import parse

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = parse(flags)
        resolve_games(args.suite)
    except (UsageError, GameError) as e:
        raise StudyError(f"{where}: {e}") from None
    except SystemExit:  # the option parser's own one-line error
        lines = captured.getvalue().strip().splitlines() or ["bad option"]
        raise StudyError(f"{where}: {lines[-1].removeprefix('mtdqn: error: ')}") from None
    return args


def main(argv: list[str]) -> None:
    args = parse_options(StudyArgs, argv, "mtdqn study",
                         "Run a grid of training runs from a study file, resumably, and report over them.")
    if args.jobs < 0 or args.max_runs < 0:
        raise UsageError("--jobs and --max-runs must be >= 0")
    if not 0 < args.budget_scale <= 1:
        raise UsageError(f"--budget-scale must be in (0, 1], got {args.budget_scale:g}")
    from mtdqn.agents.studies import launch, results
    from mtdqn.agents.studies.launch import State
    from mtdqn.agents.studies.study import StudyError, check_folder, plan, read, status

    scaled = args.budget_scale != 1
    try:
        study = read(args.study)
        study.out = Path(args.out) if args.out else Path(f"{study.out}-x{args.budget_scale:g}") if scaled else study.out
        study.results = None if scaled else study.results
        study.seeds = _only_seeds(args.seeds, study.seeds) if args.seeds is not None else study.seeds
        study.track = study.track or args.track
        if args.backend == "ray":
            from mtdqn.agents.training.validate import check_ray

            check_ray(args.ray_address)
        jobs = args.jobs or (launch.default_jobs() if args.backend == "local" else 1)
        host = launch.host_options(jobs) if args.backend == "local" else {"threads": 1, "env_threads": 1}
        runs = plan(study, resolve, host, args.budget_scale)
        adoptable = [r for r in runs if status(r) == "new" and results.kept_finished(study, r)]
        for run in runs:
            check_folder(dataclasses.replace(run, folder=results.kept_folder(study, run)) if run in adoptable else run)
    except StudyError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:  # check_ray's ConfigError
        raise UsageError(str(e)) from None
    if study.out.exists() and not study.out.is_dir():
        raise UsageError(f"out {str(study.out)!r} is a file, not a folder")
    states = {run.name: "kept" if run in adoptable else status(run) for run in runs}
    again = shlex.join(["mtdqn", "study", *_without(argv, "--max-runs", "--dry-run", "--no-dry-run")])
    if args.dry_run:
        for run in runs:
            command = shlex.join(launch.make_task(run, study.out).argv[3:])
            print(f"{states[run.name]:<11} {run.name:<40} mtdqn {command}")
        kept = sum(s == "kept" for s in states.values())
        print(f"study {study.name}: {len(runs)} run{'s' * (len(runs) != 1)}, "
              f"{sum(s == 'finished' for s in states.values())} finished"
              f"{f', {kept} finished in {study.results} (copied in when it runs)' if kept else ''}; "
              f"folder {study.out}")
        return
    _warn_if_cannot_learn(runs)
    study.out.mkdir(parents=True, exist_ok=True)
    with _lock(study.out):
        _keep_results(study, runs, adoptable)
        states = {run.name: status(run) for run in runs}
        finished = [r for r in runs if states[r.name] == "finished"]
        todo = [r for r in runs if states[r.name] != "finished"]
        count = {k: sum(s == k for s in states.values()) for k in ("unfinished", "new")}
        at_once = jobs if args.backend == "local" or args.jobs else "the Ray cluster's CPUs / 2"
        print(f"study {study.name}: {len(runs)} run{'s' * (len(runs) != 1)} in {study.out} ({len(finished)} finished, "
              f"{count['unfinished']} "
              f"to resume, {count['new']} new), {at_once} at once", flush=True)
        if finished:
            print(f"skipped {len(finished)} finished: {', '.join(r.name for r in finished)}", flush=True)
        every = [launch.make_task(r, study.out, resume=states[r.name] == "unfinished") for r in todo]
        tasks = every[:args.max_runs] if args.max_runs else every
        state = State(study.out)
        if args.backend == "ray":
            board, completed = _run_ray(tasks, every, study, len(runs), len(finished), state, args)
        else:
            board = launch.Board(study.name, len(runs), len(finished), jobs, state, every,
                                 on_finished=lambda run: results.keep(study, run))
            completed = launch.run_local(tasks, board)
    with contextlib.suppress(OSError):
        (study.out / "logs").rmdir()  # new runs' logs are in their folders now, unless one failed early
    if not completed:
        exit_interrupted(f"interrupted: {len(board.outcomes['stopped'])} run(s) stopped at a checkpoint, "
                         f"{board.done} of {len(runs)} finished; continue with: {again}")
    if board.outcomes["failed"]:
        print(f"mtdqn: error: {len(board.outcomes['failed'])} run(s) failed ({', '.join(board.outcomes['failed'])}):"
              f" their train.log says why; fix it and re-run: {again}", file=sys.stderr)
        sys.exit(1)
    left = [r for r in runs if status(r) != "finished"]
    if left:
        why = f" (--max-runs {args.max_runs})" if args.max_runs else ""
        print(f"study {study.name}: {len(left)} run(s) left{why}; continue with: {again}")
        return
    from mtdqn.agents.studies.study_report import write_report

    paths = write_report(study, runs, state.wall_s, again)
    print(Path(paths["study"]).read_text())
    print(f"report: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)


def _only_seeds(text: str, seeds: list[int]) -> list[int]:
    try:
        chosen = [int(s) for s in text.split(",")]
    except ValueError:
        chosen = None
    if not chosen or not set(chosen) <= set(seeds) or len(set(chosen)) != len(chosen):
        raise UsageError(f"--seeds {text!r} must list distinct seeds of the study file's, "
                         f"{','.join(map(str, seeds))}")
    return chosen


def _keep_results(study, runs, adoptable) -> None:
    """The file's kept results: runs finished there copied in (they count as done), runs finished here and not
    kept yet copied there (later runs are copied as each finishes)."""
    from mtdqn.agents.studies import results

    if study.results is None:
        return
    adopted = results.adopt(study, adoptable)
    copied = results.keep_finished(study, runs)
    for runs_, what in ((adopted, f"copied in from {study.results}"), (copied, f"kept in {study.results}")):
        if runs_:
            print(f"{len(runs_)} finished run{'s' * (len(runs_) != 1)} {what}: {', '.join(r.name for r in runs_)}",
                  flush=True)


def _without(argv: list[str], *options: str) -> list[str]:
    """argv less these options (and the value after one given without '=')."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a.split("=")[0] in options:
            skip = "=" not in a and a in ("--max-runs",)
        else:
            out.append(a)
    return out


def _warn_if_cannot_learn(runs) -> None:
    from mtdqn.scripts.train import warn_if_cannot_learn

    from types import SimpleNamespace

    for key in dict.fromkeys((r.config["frames_per_game"], r.config["learning_starts"]) for r in runs):
        warn_if_cannot_learn(SimpleNamespace(frames_per_game=key[0], learning_starts=key[1]))


@contextlib.contextmanager
def _lock(out: Path):
    """One `mtdqn study` per folder at a time: two would start the same runs."""
    import fcntl

    with (out / ".lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another mtdqn study is running on {out}: wait for it or stop it first") from None
        yield


def _run_ray(tasks, every, study, total: int, done: int, state, args):
    """The tasks as Ray tasks of 2 CPUs each (launch.run_blocking), at most --jobs (default: CPUs / 2) in flight;
    Ctrl-C asks every running one to stop at a checkpoint through a file beside the study's folder."""
    import os
    import signal
    import time

    import ray

    from mtdqn.agents.distributed.ray_trainer import connect
    from mtdqn.agents.studies import launch, results
    from mtdqn.agents.training.config import ConfigError

    try:
        connect(args.ray_address, launch.CPUS_PER_RUN)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    jobs = args.jobs or max(1, int(ray.cluster_resources().get("CPU", 0)) // launch.CPUS_PER_RUN)
    board = launch.Board(study.name, total, done, jobs, state, every, on_finished=lambda run: results.keep(study, run))
    remote = ray.remote(num_cpus=launch.CPUS_PER_RUN, max_retries=0)(launch.run_blocking)
    stop_file = study.out.resolve() / f".stop-{os.getpid()}"
    pending, refs = list(tasks), {}
    previous = signal.signal(signal.SIGTERM, launch.raise_interrupt)  # a scheduler's SIGTERM stops as Ctrl-C does
    try:
        while pending or refs:
            while pending and len(refs) < jobs:
                task = pending.pop(0)
                task.started = time.time()
                refs[remote.remote(task, str(stop_file))] = task
                board.started(task)
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=launch.POLL_S)
            for ref in ready:
                _ray_ended(board, refs.pop(ref), ref)
        return board, True
    except KeyboardInterrupt:
        board.stopping = True
        stop_file.touch()
        board.echo(f"study {study.name}: stopping {len(refs)} running run(s) at a checkpoint")
        try:
            for ref in list(refs):
                ray.wait([ref], timeout=None)
                _ray_ended(board, refs.pop(ref), ref)
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
        return board, False
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_file.unlink(missing_ok=True)
        ray.shutdown()


def _ray_ended(board, task, ref) -> None:
    import time

    import ray

    try:
        code, wall = ray.get(ref)
    except ray.exceptions.RayError as e:
        code, wall = -1, time.time() - task.started
        print(f"mtdqn: warning: Ray task of {task.run.name} failed: {str(e).splitlines()[0][:200]}", file=sys.stderr)
    board.ended(task, code, wall)
