"""Training progress in frames per game: an ETA from the recent rate (warm-up left out), a bar of frames
per game against the budget, and a last line with the run's wall time and throughput."""

import io
from types import SimpleNamespace

import numpy as np
import pytest

from mtdqn.agents.training.progress import FrameBar, Progress, summary_line

BUDGET, WARM_UP = 10_000, 2_000


class Run:
    """What Progress reads of a Trainer, for 2 games, with a clock the test moves."""

    def __init__(self):
        self.now = 0.0
        self.trainer = SimpleNamespace(games=["pong", "breakout"], frames=np.zeros(2, dtype=np.int64),
                                       learning_starts=WARM_UP, cfg=SimpleNamespace(frames_per_game=BUDGET),
                                       protocol=SimpleNamespace(frameskip=4), learner=SimpleNamespace(updates=0))

    def progress(self, interval: float | None = 10.0, window: int = 10) -> Progress:
        return Progress(self.trainer, interval, clock=lambda: self.now, window=window)

    def play(self, progress: Progress, seconds: float, frames_per_s: float, force: bool = False) -> None:
        """`seconds` of steps of one second each at `frames_per_s` frames per game, calling maybe_print after
        every step as the runner does."""
        for _ in range(int(seconds)):
            self.now += 1.0
            self.trainer.frames += int(frames_per_s)
            progress.maybe_print([float("nan")] * 2, np.array([1.0, 1.0]))
        if force:
            progress.maybe_print([float("nan")] * 2, np.array([1.0, 1.0]), force=True)


def etas(err: str) -> list[str]:
    return [line.split(", ETA ")[1] for line in err.splitlines() if line.startswith("progress: ")]


def test_the_eta_comes_from_the_rate_since_warm_up(capsys):
    """Warm-up at 1,000 frames per game/s for 2 s, then learning at 100/s, a line a second: the ETA is the
    learning rate's, right to the second (the whole-run average, 4,000 in 22 s, would say 0:00:33 at the end).
    At the first learning step no rate is known yet."""
    run = Run()
    progress = run.progress(interval=1.0)
    run.play(progress, 2, 1000)
    run.play(progress, 20, 100)
    learning = [f"0:01:{20 - k:02d}" for k in range(1, 21)]  # 8,000 frames left at 100/s less k s: 79 s to 60 s
    assert etas(capsys.readouterr().err) == ["? (warm-up)", "?"] + learning


def test_the_eta_follows_a_slower_rate_within_its_window(capsys):
    """Learning from the start at 100/s, then 50/s: once the window (3 lines, 30 s) holds only the slow
    part, the ETA is the slow rate's."""
    run = Run()
    run.trainer.learning_starts = 0
    progress = run.progress(window=3)
    run.play(progress, 40, 100)  # 4,000 frames per game
    run.play(progress, 30, 50)  # 5,500: lines at 50, 60, 70 s
    assert etas(capsys.readouterr().err)[-1] == "0:01:30"  # 4,500 left at 50/s


def test_the_last_call_prints_wall_time_and_throughput_even_without_progress_lines(capsys):
    """A terminal run (no progress lines) still ends with the line: 2 s warm-up + 20 s learning."""
    run = Run()
    progress = run.progress(interval=None)
    run.play(progress, 2, 1000)
    run.play(progress, 20, 100, force=True)
    assert capsys.readouterr().err.splitlines() == [
        "trained 4,000 frames per game in 0:00:22 wall time (22.0 s): 182 frames per game/s, 91 agent steps/s"]


def test_an_evaluation_is_left_out_of_the_next_lines_rate(capsys):
    """100 frames per game/s on 2 games is 50 agent steps/s, before and after a 5-minute evaluation (which once
    made the next line say 0 agent steps/s: 50 steps in 301 s)."""
    run = Run()
    progress = run.progress(interval=1.0)
    run.play(progress, 2, 100)
    with progress.paused():
        run.now += 300.0
    run.play(progress, 2, 100)
    rates = [line.split(", ")[1] for line in capsys.readouterr().err.splitlines() if line.startswith("progress: ")]
    assert rates == ["50 agent steps/s"] * 4


def test_the_last_call_repeats_no_line_and_a_session_that_trained_nothing_says_nothing(capsys):
    run = Run()
    progress = run.progress(interval=1.0)
    run.play(progress, 3, 100, force=True)  # the line at 3 s said it all: the last call adds the summary only
    lines = capsys.readouterr().err.splitlines()
    assert [line[:30] for line in lines] == ["progress: 100/10,000 frames pe", "progress: 200/10,000 frames pe",
                                             "progress: 300/10,000 frames pe", "trained 300 frames per game in"]
    idle = run.progress(interval=1.0)  # a resume that only owed its final evaluation
    run.now += 30.0
    idle.maybe_print([float("nan")] * 2, np.array([1.0, 1.0]), force=True)
    assert capsys.readouterr().err == ""


def test_summary_line_exact():
    assert summary_line(100_000, 50_000, 3725.0) == (
        "trained 100,000 frames per game in 1:02:05 wall time (3725.0 s): 27 frames per game/s, 13 agent steps/s")
    assert summary_line(0, 0, 0.0).startswith("trained 0 frames per game in 0:00:00 wall time (0.0 s): 0 ")


@pytest.mark.parametrize("frames, shown", [([400, 404], 400), ([1_200, 1_196], 1_196)])
def test_the_bar_counts_frames_per_game_against_the_budget(frames, shown):
    out = io.StringIO()
    bar = FrameBar(np.array([0, 0]), 2_000, file=out, disable=False, mininterval=0)
    bar.advance_to(np.array(frames))
    assert (bar.total, bar.n) == (2_000, shown)
    bar.refresh()
    assert f"frames per game (2 games): {100 * shown / 2000:3.0f}%|" in out.getvalue()
    bar.close()
