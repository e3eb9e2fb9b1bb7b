"""A study's runs as `mtdqn train` processes, N at a time, with one progress line per change.

Each run is its own process in its own session, its output in its run folder's train.log, so the terminal
shows only the study's lines. Ctrl-C (or SIGTERM) reaches the study alone; it sends each running train one
SIGINT, on which train finishes its step, writes a checkpoint and stops, and waits for them: every run is
then finished, resumable from a checkpoint, or (stopped before its first one) absent. A second Ctrl-C
kills them at once; they resume from their newest intact checkpoint. `run_blocking` runs one task to its
end for a Ray worker; the driver asks it to stop through a file (the run folders are on one filesystem).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtdqn.agents.studies.study import Run, status, train_command

CPUS_PER_RUN = 2  # one for the torch thread (--threads 1), one for the emulators' threads
POLL_S = 0.5


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs(cpus: int | None = None) -> int:
    """Runs at once: a run's update slows 10-70x when its torch threads share a core (docs: DESIGN), so each
    run gets one torch thread and a core beside it for its emulators: cores / 2, at least 1."""
    return max(1, (cores() if cpus is None else int(cpus)) // CPUS_PER_RUN)


def host_options(jobs: int, cpus: int | None = None) -> dict:
    """Options of a run's share of the machine: 1 torch thread; with several runs at once, as many env
    threads per game as leave each run its share of the cores (train's default takes them all)."""
    options = {"threads": 1}
    if jobs > 1:
        options["env_threads"] = max(1, (cores() if cpus is None else cpus) // jobs - 1)
    return options


class State:
    """OUT/study.json: per run, the wall time and segments (starts and resumes) the study spent on it."""

    def __init__(self, out: Path):
        self.path = out / "study.json"
        self.runs = {}
        if self.path.is_file():
            try:
                self.runs = json.loads(self.path.read_text()).get("runs", {})
            except (json.JSONDecodeError, AttributeError):
                self.runs = {}

    def add(self, run: Run, wall_s: float, outcome: str, work: int) -> None:
        entry = self.runs.setdefault(run.name, {"wall_s": 0.0, "segments": 0})
        entry.update(wall_s=round(entry["wall_s"] + wall_s, 1), segments=entry["segments"] + 1, last=outcome, work=work)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"runs": self.runs}, indent=1) + "\n")
        os.replace(tmp, self.path)

    def wall_s(self, run: Run) -> float | None:
        return self.runs.get(run.name, {}).get("wall_s")


@dataclass
class Task:
    run: Run
    resume: bool
    log: Path  # where its output goes now: OUT/logs/ until a new run's folder exists, then the folder's train.log
    argv: list[str]
    cwd: str
    work: int  # frames it trains at most: games x budget (ETAs)
    started: float = 0.0
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def __getstate__(self):  # sent to a Ray worker without its process
        return {**self.__dict__, "proc": None}


def make_task(run: Run, out: Path, resume: bool | None = None) -> Task:
    resume = status(run) == "unfinished" if resume is None else resume
    log = run.folder / "train.log" if resume else out / "logs" / (run.name.replace("/", ".") + ".log")
    from mtdqn.envs import resolve_games

    argv = [sys.executable, "-m", "mtdqn.scripts", *train_command(run, resume)]
    return Task(run, resume, log, argv, os.getcwd(), len(resolve_games(run.suite)) * run.budget)


def _die_with_parent() -> None:
    """In the child, before exec: SIGINT (checkpoint and stop) if the study dies (Linux), so no run trains on
    unwatched."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(task: Task, watched: bool = True) -> subprocess.Popen:
    task.log.parent.mkdir(parents=True, exist_ok=True)
    with task.log.open("a") as f:
        f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} mtdqn study runs: mtdqn {shlex.join(task.argv[3:])}\n")
        f.flush()
        task.proc = subprocess.Popen(task.argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=task.cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     start_new_session=True, preexec_fn=_die_with_parent if watched else None)
    task.started = time.time()
    return task.proc


def settle_log(task: Task) -> None:
    """A new run's log moves into its folder once train has made it (the open file moves with it)."""
    target = task.run.folder / "train.log"
    if task.log != target and (task.run.folder / "config.yaml").is_file():
        os.replace(task.log, target)
        task.log = target


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_blocking(task: Task, stop_file: str) -> tuple[int | None, float]:
    """One task from start to end (a Ray worker runs this): (exit code, None if it never started; wall s)."""
    if Path(stop_file).exists():
        return None, 0.0
    proc = spawn(task, watched=False)
    stopping = False
    try:
        while proc.poll() is None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            settle_log(task)
            if not stopping and Path(stop_file).exists():
                signal_group(proc, signal.SIGINT)
                stopping = True
    except BaseException:  # cancelled: the run still checkpoints
        signal_group(proc, signal.SIGINT)
        proc.wait()
        raise
    settle_log(task)
    return proc.returncode, time.time() - task.started


class Board:
    """Counts of the study's runs and one line per change: `study NAME: 3 done, 1 running, 4 left, ETA 12 min`."""

    def __init__(self, name: str, total: int, done: int, jobs: int, state: State, tasks: list[Task], echo=None,
                 on_finished=None):
        self.name, self.total, self.done, self.jobs, self.state = name, total, done, jobs, state
        self.on_finished = on_finished  # called with each run that finishes (e.g. to keep its small files)
        self.waiting, self.running = list(tasks), []
        self.outcomes: dict[str, list[str]] = {"finished": [], "stopped": [], "failed": []}
        self.echo = echo or (lambda line: print(line, flush=True))
        self.stopping = False

    def line(self, event: str) -> None:
        left = self.total - self.done - len(self.running)
        self.echo(f"study {self.name}: {self.done} done, {len(self.running)} running, {left} left, "
                  f"ETA {self.eta()}  ({event})")

    def eta(self) -> str:
        """The waiting and running runs' frames (games x budget) at the seconds per frame of the runs finished in
        one go so far, spread over the jobs."""
        done = [r for r in self.state.runs.values()
                if r.get("last") == "finished" and r["segments"] == 1 and r.get("work")]
        if not self.waiting and not self.running:
            return "0 min"
        if not done:
            return "? (after the first run)"
        per = sum(r["wall_s"] for r in done) / sum(r["work"] for r in done)
        now = time.time()
        work = sum(max(per * t.work - (now - t.started), 0.0) for t in self.running)
        return _duration((work + per * sum(t.work for t in self.waiting)) / self.jobs)

    def started(self, task: Task) -> None:
        self.waiting.remove(task)
        self.running.append(task)
        self.line(f"{'resumed' if task.resume else 'started'} {task.run.name}")

    def ended(self, task: Task, code: int | None, wall_s: float) -> None:
        """Judged by the run folder, not the exit code: train exits 0 when a signal stopped it too."""
        self.running.remove(task)
        if code is None:  # a Ray task told to stop before it began
            return
        if status(task.run) == "finished":
            outcome, event = "finished", f"finished {task.run.name} in {_duration(wall_s)}"
            self.done += 1
            if self.on_finished:
                self.on_finished(task.run)
        elif self.stopping:
            outcome, event = "stopped", f"stopped {task.run.name}: resumable"
        else:
            outcome, event = "failed", f"FAILED {task.run.name} (exit {code}): see {self.log_of(task)}"
        self.state.add(task.run, wall_s, outcome, task.work)
        self.outcomes[outcome].append(task.run.name)
        self.line(event)

    @staticmethod
    def log_of(task: Task) -> Path:
        inside = task.run.folder / "train.log"
        return inside if inside.is_file() else task.log


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_local(tasks: list[Task], board: Board) -> bool:
    """Run the tasks as processes, board.jobs at once; False when interrupted (every run then stopped)."""
    pending = list(tasks)
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        while pending or board.running:
            while pending and len(board.running) < board.jobs:
                task = pending.pop(0)
                spawn(task)
                board.started(task)
            try:
                board.running[0].proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            for task in list(board.running):
                settle_log(task)
                if task.proc.poll() is not None:
                    settle_log(task)
                    board.ended(task, task.proc.returncode, time.time() - task.started)
        return True
    except KeyboardInterrupt:
        _stop(board)
        return False
    finally:
        signal.signal(signal.SIGTERM, previous)


def raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(board: Board) -> None:
    """One SIGINT to each running train (it checkpoints and stops), then wait; a second Ctrl-C kills them."""
    board.stopping = True
    board.echo(f"study {board.name}: stopping {len(board.running)} running run(s) at a checkpoint "
               "(Ctrl-C again to kill them)")
    for task in board.running:
        signal_group(task.proc, signal.SIGINT)
    try:
        for task in list(board.running):
            task.proc.wait()
    except KeyboardInterrupt:
        for task in board.running:
            signal_group(task.proc, signal.SIGKILL)
        for task in board.running:
            task.proc.wait()
    for task in list(board.running):
        settle_log(task)
        board.ended(task, task.proc.returncode, time.time() - task.started)
