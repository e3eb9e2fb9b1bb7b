"""A training loop's bookkeeping besides learning: when to log, evaluate and checkpoint next, the metrics since
the last log, the bar and progress lines, and the signals that stop it (runner.py and seed_runner.py share it)."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from mtdqn.agents.training.progress import MetricWindow, Progress


def catch_signals(stop: Callable[[str], None]) -> Callable[[], object]:
    """SIGINT/SIGTERM call `stop(name)`: the loop finishes its step, checkpoints and stops; a second Ctrl-C
    interrupts at once. Returns what restores the previous handlers (nothing to restore off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, _frame):
        stop(signal.Signals(signum).name)
        signal.signal(signum, previous[signum])

    # the old handlers are read before any is replaced: a Ctrl-C between the two installs must
    # find them (found by CI: a signal right after the first install met an unbound `previous`)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    return lambda: [signal.signal(sig, h) for sig, h in previous.items()]


@dataclass
class Loop:
    """A training loop's bookkeeping between steps: the next log, evaluation and checkpoint thresholds (in
    frames per game), the metrics since the last log, the latest return per game, clocks and outputs."""

    next_log: int
    next_eval: int
    next_ckpt: int
    window: MetricWindow
    recent_return: list[float]
    start: float
    last_time: float
    last_frames: int
    bar: tqdm
    progress: Progress
    restore_signals: Callable[[], object]

    def close(self) -> None:
        self.restore_signals()
        self.bar.close()


def next_multiple(frames: int, interval: int) -> int:
    """The first multiple of `interval` above `frames` (thresholds survive a resume)."""
    return (int(frames) // interval + 1) * interval
