"""Checkpoints: atomic writes, safe loads.

A checkpoint is a plain dict of tensors, numbers and strings, so it loads with
`torch.load(weights_only=True)` and a file crafted to run code on load is refused.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "mtdqn-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """The file is missing, unreadable, unsafe, or not a checkpoint of ours."""


class CorruptCheckpoint(CheckpointError):
    """The file cannot be read back at all (truncated, garbled): unlike one of another version or program,
    it can never be used, so a run's writer may set it aside."""


def atomic_write(path: Path, write) -> Path:
    """Call `write(file)` on a temp file beside `path`, fsync, rename: a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def save(state: dict, path: Path) -> Path:
    return atomic_write(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state}, f))


def save_arrays(arrays: dict[str, np.ndarray], path: Path) -> Path:
    """Replay contents as an uncompressed .npz (no pickles inside: loads with allow_pickle=False)."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as e:
        raise CheckpointError(f"replay file {str(path)!r} is unreadable ({type(e).__name__})") from None


def load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist: give a .pt file from a run's checkpoints/ folder")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = re.search(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)", str(e))
        if blocked:
            raise CheckpointError(f"checkpoint {str(path)!r} was refused: it would import "
                                  f"{blocked.group(1) or blocked.group(2)} on load (not plain data; it could run code)") from None
        raise CorruptCheckpoint(f"checkpoint {str(path)!r} is unreadable: not a torch checkpoint, or corrupt") from None
    except Exception as e:  # truncated zip, random bytes, ...
        raise CorruptCheckpoint(f"checkpoint {str(path)!r} is unreadable ({type(e).__name__}): "
                              "truncated or corrupt; use another checkpoint from the run") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an mtdqn checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {state.get('version')}, "
                              f"this mtdqn reads version {VERSION}")
    return state


def all_checkpoints(run_dir: Path) -> list[Path]:
    """`run_dir/checkpoints/frames_*.pt`, oldest first (names carry zero-padded frame counts)."""
    return sorted((run_dir / "checkpoints").glob("frames_*.pt"))


def latest(run_dir: Path) -> Path | None:
    files = all_checkpoints(run_dir)
    return files[-1] if files else None


def newest_intact(run_dir: Path, warn=print, on_corrupt=None) -> tuple[Path, dict] | tuple[None, None]:
    """The newest checkpoint that loads; broken newer ones are reported and skipped, never deleted.
    `on_corrupt(path)` (the run's writer) moves a corrupt one aside and returns where it went, so it stops
    being the run's newest for every later command; a writer raises on any other CheckpointError (another
    mtdqn version's file is not to be trained past)."""
    for path in reversed(all_checkpoints(run_dir)):
        try:
            return path, load(path)
        except CheckpointError as e:
            if on_corrupt and not isinstance(e, CorruptCheckpoint):
                raise
            where = on_corrupt(path) if on_corrupt else None
            warn(f"skipping {e}" + (f"; moved to {where}" if where else ""))
    return None, None


def prune(run_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints (0: all) and only the newest one's replay; drop stale temp files."""
    folder = run_dir / "checkpoints"
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    files = all_checkpoints(run_dir)
    for path in files[:-keep] if keep else []:
        path.unlink(missing_ok=True)
    newest = latest(run_dir)
    for replay in folder.glob("frames_*.replay.npz"):  # replay is large: only the newest checkpoint's
        if newest is None or replay.name != f"{newest.stem}.replay.npz":
            replay.unlink(missing_ok=True)
