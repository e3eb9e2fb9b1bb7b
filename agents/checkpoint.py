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

import torch

FORMAT = "mtdqn-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """The file is missing, unreadable, unsafe, or not a checkpoint of ours."""


def save(state: dict, path: Path) -> Path:
    """Write `state` to `path` via a temp file, fsync and rename: a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
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
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable: not a torch checkpoint, or corrupt") from None
    except Exception as e:  # truncated zip, random bytes, ...
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable ({type(e).__name__}): "
                              "truncated or corrupt; use another checkpoint from the run") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an mtdqn checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {state.get('version')}, "
                              f"this mtdqn reads version {VERSION}")
    return state


def latest(run_dir: Path) -> Path | None:
    """The newest checkpoint in `run_dir/checkpoints`, by the frame count in its name."""
    files = sorted((run_dir / "checkpoints").glob("frames_*.pt"))
    return files[-1] if files else None
