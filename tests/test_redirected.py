"""Runs that go to a file: progress lines at a wall-clock interval, a line per evaluated game,
a warning for a budget that cannot learn, learning-curve figures without matplotlib warnings."""

import re
import warnings

import numpy as np
import pytest

from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.core.evaluation import game_done_line, learning_curve_figure, plot_learning_curves
from mtdqn.agents.training.progress import progress_line
from mtdqn.scripts.train import warn_if_cannot_learn
from test_cli import mtdqn

PROGRESS = re.compile(r"progress: [\d,]+/1,600 frames per game \(\d+%\), [\d,]+ agent steps/s, [\d,]+ updates?, "
                      r"epsilon [\d.e-]+, return pong \S+ breakout \S+, ETA (\d+:\d\d:\d\d|\? \(warm-up\)|\?)")
SUMMARY = re.compile(r"trained 1,600 frames per game in 0:\d\d:\d\d wall time \(\d+\.\d s\): [\d,]+ frames per game/s, "
                     r"[\d,]+ agent steps/s")


@pytest.fixture(scope="module")
def redirected(tmp_path_factory):
    """A 2-game run whose stderr is a pipe, as under nohup or a cluster job."""
    root = tmp_path_factory.mktemp("redirected")
    proc = mtdqn("train", "--suite", "pong,breakout", "--frames-per-game", "1600", "--learning-starts", "400",
                 "--envs-per-game", "1", "--eval-interval", "800", "--eval-episodes", "1", "--max-episode-frames",
                 "400", "--replay-size", "2000", "--log-interval", "400", "--target-update-period", "50",
                 "--conflict-interval", "0", "--progress-interval", "0.5", "--out", root / "run", cwd=root)
    return proc.stderr.splitlines()


def test_a_redirected_run_prints_progress_lines_until_the_budget(redirected):
    lines = [l for l in redirected if l.startswith("progress: ")]
    assert len(lines) >= 2 and all(PROGRESS.fullmatch(l) for l in lines), lines
    assert lines[-1].startswith("progress: 1,600/1,600 frames per game (100%), ")
    assert lines[-1].endswith(", ETA 0:00:00")
    updates = [int(re.search(r"([\d,]+) updates?", l).group(1).replace(",", "")) for l in lines]
    assert updates == sorted(updates) and updates[-1] > 0


def test_a_run_ends_with_its_wall_time_and_throughput(redirected):
    """After the last progress line, before the final checkpoint and evaluation: nothing else keeps them."""
    (summary,) = [line for line in redirected if line.startswith("trained ")]
    assert SUMMARY.fullmatch(summary), summary
    at = redirected.index(summary)
    assert redirected[at - 1].startswith("progress: 1,600/1,600 ") and redirected[at + 1].startswith("checkpoint: ")


def test_every_evaluation_prints_a_line_per_game_as_it_finishes(redirected):
    done = [l for l in redirected if re.match(r"evaluate: \S+ done, ", l)]
    # at 800 frames per game and at the end; within one evaluation, in the order the games finish
    assert sorted(l.split(" done")[0] for l in done) == ["evaluate: breakout"] * 2 + ["evaluate: pong"] * 2
    assert redirected.index(done[1]) < redirected.index(next(l for l in redirected if l.startswith("progress: 1,600")))
    assert all(", 1 episode, mean return " in l for l in done)
    episodes = [l for l in redirected if re.match(r"evaluate: \S+ episode ", l)]
    line = re.compile(r"evaluate: (pong|breakout) episode 1/1: return -?\d+, [\d,]+ frames, "
                      r"(game over|episode cap reached at 400 frames), \d+\.\d s")
    assert len(episodes) == 4 and all(line.fullmatch(l) for l in episodes), episodes


def test_progress_line_exact():
    line = progress_line(["pong", "breakout"], np.array([1200, 1204]), 2000, 95.4, 150, np.array([0.52, 0.52]),
                         [-21.0, float("nan")], 100.0)
    assert line == ("progress: 1,200/2,000 frames per game (60%), 95 agent steps/s, 150 updates, epsilon 0.52, "
                    "return pong -21 breakout -, ETA 0:00:08")
    assert progress_line(["pong"], np.array([0]), 7200, 0.0, 0, np.array([1.0]), [float("nan")], 0.0).endswith("ETA ?")
    assert progress_line(["pong"], np.array([3600]), 7200000, 0.0, 0, np.array([1.0]), [1.0], 1.0).endswith(
        "ETA 1999:00:00")


def test_game_done_line_exact():
    assert game_done_line("pong", np.array([-21.0, -19.0]), 12.34) == \
        "evaluate: pong done, 2 episodes, mean return -20 (std 1), 12.3 s"


@pytest.mark.parametrize("frames, warned", [(400, True), (399, True), (401, False)])
def test_a_budget_at_or_below_learning_starts_warns_once(capsys, frames, warned):
    warn_if_cannot_learn(TrainConfig(frames_per_game=frames, learning_starts=400))
    err = capsys.readouterr().err
    if warned:
        assert err == (f"mtdqn: warning: --frames-per-game {frames:,} <= --learning-starts 400: no gradient update "
                       "will happen; lower --learning-starts or raise --frames-per-game\n")
    else:
        assert err == ""


def test_the_warning_comes_before_training(tmp_path):
    proc = mtdqn("train", "--suite", "pong", "--frames-per-game", "400", "--learning-starts", "400",
                 "--envs-per-game", "1", "--eval-episodes", "1", "--max-episode-frames", "400",
                 "--replay-size", "1000", "--log-interval", "400", "--out", tmp_path / "run", cwd=tmp_path)
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("mtdqn: warning: --frames-per-game 400 <= --learning-starts 400: no gradient update")
    assert sum(l.startswith("mtdqn: warning:") for l in lines) == 1


@pytest.mark.parametrize("curves, text", [
    ({"pong": [(800, 0.1)], "iqm": [(800, 0.1)]}, "one evaluation so far"),
    ({}, "no evaluation of a game with a human reference yet"),
])
def test_a_learning_curve_with_one_point_says_so_without_warnings(tmp_path, curves, text):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = learning_curve_figure(curves)
        plot_learning_curves(curves, tmp_path / "curves.png")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == [text]
    assert (ax.get_legend() is not None) == bool(curves)
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_a_learning_curve_with_two_points_has_no_note():
    fig = learning_curve_figure({"pong": [(800, 0.1), (1600, 0.2)]})
    assert len(fig.axes[0].texts) == 0 and fig.axes[0].get_legend() is not None


def test_a_minatar_runs_learning_curves_are_dqn_normalized():
    """MinAtar has no human scores: its curves are in DQN-normalized score, as its tables and bar charts are."""
    ax = learning_curve_figure({"minatar/breakout": [(800, 0.1), (1600, 0.3)], "iqm": [(800, 0.1), (1600, 0.3)]}).axes[0]
    assert (ax.get_ylabel(), ax.get_title()) == ("DQN-normalized score (random 0, DQN 1)",
                                                 "evaluation DQN-normalized during training")
    empty = learning_curve_figure({}, ["minatar/breakout"]).axes[0]  # before the first evaluation: the run's games
    assert empty.get_ylabel().startswith("DQN-normalized") and [t.get_text() for t in empty.texts] == [
        "no evaluation of a game with a DQN reference yet"]
    ale = learning_curve_figure({"pong": [(800, 0.1), (1600, 0.2)]}, ["pong"]).axes[0]
    assert (ale.get_ylabel(), ale.get_title()) == ("human-normalized score", "evaluation HNS during training")
