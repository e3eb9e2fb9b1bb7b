"""A run folder has one writer and one current state.

Two processes appending to one metrics.jsonl, or a `--force` deleting checkpoints under a live run, leave
a folder whose files disagree; nothing downstream can tell. So a training process holds an exclusive
`flock` on RUN/.lock while it writes (the kernel releases it when the process dies, so a lock left by a
killed run is stale by construction and is taken over), `--force` empties the folder under that lock, and
what a resume discards (a corrupt checkpoint, evaluations of an attempt past the checkpoint it resumes
from) is moved where no reader looks, not deleted: it is evidence of what went wrong.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

LOCK = ".lock"
DISCARDED = "discarded"  # evals/discarded/ and checkpoints/corrupt/ are never read as the run's state
CORRUPT = "corrupt"


class RunLocked(Exception):
    """Another live process writes this run folder; the message names it."""


def holder(run_dir: Path) -> dict:
    """Who wrote the lock file last (pid, host, since, command); {} if it is empty or unreadable."""
    try:
        return json.loads((run_dir / LOCK).read_text() or "{}")
    except (OSError, ValueError):
        return {}


class RunLock:
    """An exclusive, non-blocking lock on a run folder for the life of this process (or until release)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.fd: int | None = None

    def acquire(self, what: str) -> RunLock:
        """Take the lock or raise RunLocked naming the live holder; `what` is this process's command line."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):  # a filesystem without flock (some NFS, Lustre)
                os.close(fd)
                print(f"mtdqn: warning: {self.run_dir} cannot be locked on this filesystem ({e.strerror}): one "
                      "writer per run folder is not enforced here", file=sys.stderr)
                return self
            os.close(fd)
            h = holder(self.run_dir)
            since = time.strftime("%Y-%m-%d %H:%M", time.localtime(h["since"])) if "since" in h else "?"
            raise RunLocked(f"{self.run_dir} is being written by process {h.get('pid', '?')} on "
                            f"{h.get('host', '?')} since {since} ({h.get('command', '?')}): a run folder has one "
                            "writer; wait for it to end or stop it (Ctrl-C checkpoints it), then try again") from None
        stale = holder(self.run_dir)
        if stale:  # a clean release empties the file: content here means its writer died holding it
            print(f"mtdqn: note: {self.run_dir} was locked by process {stale.get('pid', '?')} on "
                  f"{stale.get('host', '?')}, which ended without releasing it; taking it over", file=sys.stderr)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": what}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Empty the file while still holding it (an empty file is a clean end), then unlock."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (without taking it for longer than the test)."""
    if not (run_dir / LOCK).is_file():
        return False
    fd = os.open(run_dir / LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


def replace_contents(run_dir: Path) -> list[str]:
    """--force: everything of the old run goes (checkpoints, evaluations, metrics, conflict and affinity
    files, groups, figures, W&B segments), so no reader can mix it with the new run; the lock stays.
    Returns the names removed."""
    removed = []
    for item in sorted(run_dir.iterdir()):
        if item.name == LOCK:
            continue
        shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
        removed.append(item.name)
    return removed


def set_aside(path: Path, folder: Path) -> Path:
    """Move a file or folder into `folder` (created), with a numbered name if one is there already."""
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / path.name, 1
    while target.exists():
        target, n = folder / f"{path.name}.{n}", n + 1
    path.rename(target)
    return target


def set_aside_corrupt(ckpt: Path) -> Path:
    """A checkpoint that does not load goes to checkpoints/corrupt/ (with its replay), so no command
    picks it as the run's newest again."""
    replay = ckpt.with_name(f"{ckpt.stem}.replay.npz")
    if replay.is_file():
        set_aside(replay, ckpt.parent / CORRUPT)
    return set_aside(ckpt, ckpt.parent / CORRUPT)


def set_aside_later_evals(run_dir: Path, frames_per_game: int) -> list[Path]:
    """Evaluations past the checkpoint a run resumes from (periodic ones, and `mtdqn evaluate`'s of a later
    checkpoint) belong to an attempt that is being discarded: they go to evals/discarded/, where no reader
    looks."""
    moved = []
    for report in sorted((run_dir / "evals").glob("frames_*")):
        frames = report.name[len("frames_"):].removesuffix("-evaluate")
        if frames.isdigit() and int(frames) > frames_per_game:
            moved.append(set_aside(report, run_dir / "evals" / DISCARDED))
    return moved
